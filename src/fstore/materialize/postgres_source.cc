#include "fstore/materialize/postgres_source.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/util/key_value_metadata.h>
#include <spdlog/spdlog.h>

#include "fstore/compute/postgres_client.h"

namespace fstore {
namespace cp = arrow::compute;

namespace {

// PostgreSQL's epoch (2000-01-01) in Unix microseconds and days.
constexpr int64_t kPgEpochMicros = 946'684'800'000'000;
constexpr int32_t kPgEpochDays = 10'957;
// PostgreSQL's timestamp range in its own epoch's microseconds
// (MIN_TIMESTAMP, END_TIMESTAMP in datatype/timestamp.h).
constexpr int64_t kPgMinTimestamp = -211'813'488'000'000'000;
constexpr int64_t kPgEndTimestamp = 9'223'371'331'200'000'000;

constexpr uint32_t kBool = 16, kInt2 = 21, kInt4 = 23, kInt8 = 20, kFloat4 = 700,
                   kFloat8 = 701, kNumeric = 1700, kText = 25, kVarchar = 1043,
                   kBpchar = 1042, kName = 19, kTimestamp = 1114, kTimestampTz = 1184,
                   kDate = 1082;

uint16_t Be16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}
uint32_t Be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
uint64_t Be64(const char* p) { return (uint64_t{Be32(p)} << 32) | Be32(p + 4); }

std::string BinaryInt64(int64_t v) {
  std::string out(8, '\0');
  auto u = static_cast<uint64_t>(v);
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return out;
}

// A Unix-microsecond bound as a PostgreSQL timestamp, clamped to its range.
PostgresParam TimeParam(TimestampMicros micros, uint32_t type_oid) {
  __int128 pg = static_cast<__int128>(micros) - kPgEpochMicros;
  pg = std::clamp<__int128>(pg, kPgMinTimestamp, kPgEndTimestamp - 1);
  return PostgresParam{type_oid, BinaryInt64(static_cast<int64_t>(pg))};
}

// numeric's binary form -> the nearest double: digits in base 10000, the
// first one weighted 10000^weight.
Result<double> NumericToDouble(const char* p, int len) {
  if (len < 8) return Status::Invalid("short numeric value");
  const int ndigits = static_cast<int16_t>(Be16(p));
  const int weight = static_cast<int16_t>(Be16(p + 2));
  const uint16_t sign = Be16(p + 4);
  if (sign == 0xC000) return std::nan("");
  if (sign == 0xD000) return HUGE_VAL;
  if (sign == 0xF000) return -HUGE_VAL;
  if (len < 8 + 2 * ndigits) return Status::Invalid("short numeric value");
  if (ndigits == 0) return 0.0;
  std::string text = sign == 0x4000 ? "-0." : "0.";
  char group[8];
  for (int i = 0; i < ndigits; ++i) {
    std::snprintf(group, sizeof group, "%04u", static_cast<unsigned>(Be16(p + 8 + 2 * i)));
    text += group;
  }
  text += "e" + std::to_string(4 * (weight + 1));
  return std::strtod(text.c_str(), nullptr);  // correctly rounded
}

Status BadValue(const std::string& column, const std::string& what) {
  return Unprocessable("source", "column '" + column + "': " + what);
}

// Appends one non-null binary value of type `oid` to `builder`.
Status AppendValue(uint32_t oid, const char* p, int len, arrow::ArrayBuilder* builder,
                   const std::string& column) {
  auto need = [&](int n) -> Status {
    if (len != n) return BadValue(column, "unexpected binary value length");
    return Status::OK();
  };
  switch (oid) {
    case kBool:
      ARROW_RETURN_NOT_OK(need(1));
      return static_cast<arrow::BooleanBuilder*>(builder)->Append(p[0] != 0);
    case kInt2:
      ARROW_RETURN_NOT_OK(need(2));
      return static_cast<arrow::Int16Builder*>(builder)->Append(static_cast<int16_t>(Be16(p)));
    case kInt4:
      ARROW_RETURN_NOT_OK(need(4));
      return static_cast<arrow::Int32Builder*>(builder)->Append(static_cast<int32_t>(Be32(p)));
    case kInt8:
      ARROW_RETURN_NOT_OK(need(8));
      return static_cast<arrow::Int64Builder*>(builder)->Append(static_cast<int64_t>(Be64(p)));
    case kFloat4: {
      ARROW_RETURN_NOT_OK(need(4));
      uint32_t bits = Be32(p);
      float f;
      std::memcpy(&f, &bits, sizeof f);
      return static_cast<arrow::FloatBuilder*>(builder)->Append(f);
    }
    case kFloat8: {
      ARROW_RETURN_NOT_OK(need(8));
      uint64_t bits = Be64(p);
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return static_cast<arrow::DoubleBuilder*>(builder)->Append(d);
    }
    case kNumeric: {
      auto d = NumericToDouble(p, len);
      if (!d.ok()) return BadValue(column, d.status().message());
      return static_cast<arrow::DoubleBuilder*>(builder)->Append(*d);
    }
    case kTimestamp:
    case kTimestampTz: {
      ARROW_RETURN_NOT_OK(need(8));
      auto v = static_cast<int64_t>(Be64(p));
      if (v == INT64_MAX || v == INT64_MIN) {
        return BadValue(column, "infinite timestamps are not supported");
      }
      return static_cast<arrow::TimestampBuilder*>(builder)->Append(v + kPgEpochMicros);
    }
    case kDate: {
      ARROW_RETURN_NOT_OK(need(4));
      auto v = static_cast<int32_t>(Be32(p));
      if (v == INT32_MAX || v == INT32_MIN) {
        return BadValue(column, "infinite dates are not supported");
      }
      return static_cast<arrow::Date32Builder*>(builder)->Append(v + kPgEpochDays);
    }
    case kText:
    case kVarchar:
    case kBpchar:
    case kName:
      return static_cast<arrow::StringBuilder*>(builder)->Append(p, len);
    default:
      break;
  }
  if (builder->type()->id() == arrow::Type::LIST) {
    // ndim, has-nulls flag, element oid, per dimension (size, lower bound),
    // then (length, bytes) per element, length -1 for NULL.
    auto* list = static_cast<arrow::ListBuilder*>(builder);
    if (len < 12) return BadValue(column, "short array value");
    const int32_t ndim = static_cast<int32_t>(Be32(p));
    const uint32_t element_oid = Be32(p + 8);
    ARROW_RETURN_NOT_OK(list->Append());
    if (ndim == 0) return Status::OK();
    if (ndim != 1) {
      return BadValue(column, "arrays of " + std::to_string(ndim) +
                                  " dimensions are not supported (one dimension only)");
    }
    if (len < 20) return BadValue(column, "short array value");
    const int32_t count = static_cast<int32_t>(Be32(p + 12));
    int offset = 20;
    for (int32_t i = 0; i < count; ++i) {
      if (offset + 4 > len) return BadValue(column, "short array value");
      const int32_t element_len = static_cast<int32_t>(Be32(p + offset));
      offset += 4;
      if (element_len < 0) {
        ARROW_RETURN_NOT_OK(list->value_builder()->AppendNull());
        continue;
      }
      if (offset + element_len > len) return BadValue(column, "short array value");
      ARROW_RETURN_NOT_OK(
          AppendValue(element_oid, p + offset, element_len, list->value_builder(), column));
      offset += element_len;
    }
    return Status::OK();
  }
  return BadValue(column, "PostgreSQL type oid " + std::to_string(oid) + " is not supported");
}

// One FETCH result as a record batch of `schema` (PostgresResultSchema's).
Result<std::shared_ptr<arrow::RecordBatch>> DecodeResult(const PGresult* result,
                                                         const std::shared_ptr<arrow::Schema>& schema) {
  const int rows = PQntuples(result);
  std::vector<std::shared_ptr<arrow::Array>> columns;
  for (int c = 0; c < schema->num_fields(); ++c) {
    const std::string& name = schema->field(c)->name();
    const uint32_t oid = PQftype(result, c);
    std::unique_ptr<arrow::ArrayBuilder> builder;
    ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(),
                                           schema->field(c)->type(), &builder));
    ARROW_RETURN_NOT_OK(builder->Reserve(rows));
    for (int r = 0; r < rows; ++r) {
      if (PQgetisnull(result, r, c)) {
        ARROW_RETURN_NOT_OK(builder->AppendNull());
        continue;
      }
      ARROW_RETURN_NOT_OK(
          AppendValue(oid, PQgetvalue(result, r, c), PQgetlength(result, r, c), builder.get(), name));
    }
    std::shared_ptr<arrow::Array> array;
    ARROW_RETURN_NOT_OK(builder->Finish(&array));
    columns.push_back(std::move(array));
  }
  return arrow::RecordBatch::Make(schema, rows, std::move(columns));
}

std::string PostgresTypeName(const arrow::Field& field) {
  if (field.metadata() == nullptr) return {};
  auto value = field.metadata()->Get(kPostgresTypeKey);
  return value.ok() ? *value : std::string();
}

bool IsTimeType(const std::string& pg_type) {
  return pg_type == "timestamp" || pg_type == "timestamptz" || pg_type == "date";
}

// The source's columns with their PostgreSQL types (a LIMIT 0 query).
Result<std::shared_ptr<arrow::Schema>> Describe(PostgresConnection* conn, const std::string& from,
                                                const std::string& field) {
  ARROW_ASSIGN_OR_RAISE(auto result,
                        conn->Execute("SELECT * FROM " + from + " AS q LIMIT 0", {}, true, field));
  return PostgresResultSchema(result.get(), field);
}

std::string ColumnList(const arrow::Schema& schema) {
  std::string out;
  for (const auto& f : schema.fields()) {
    if (!out.empty()) out += ", ";
    out += f->name();
  }
  return out;
}

}  // namespace

bool PostgresFiltersRange(const arrow::Schema& schema, const std::string& time_column) {
  auto field = schema.GetFieldByName(time_column);
  return field != nullptr && IsTimeType(PostgresTypeName(*field));
}

Status ScanPostgresSource(
    const SourceDefinition& source, const PostgresScan& scan,
    const std::function<Status(const std::shared_ptr<arrow::RecordBatch>&)>& consume) {
  const std::string field = PostgresRelationField(source);
  ARROW_ASSIGN_OR_RAISE(PostgresRelation relation, ParsePostgresRelation(source));
  ARROW_ASSIGN_OR_RAISE(auto conn, PostgresConnection::Open(source.connection));
  ARROW_ASSIGN_OR_RAISE(std::string from, conn->FromItem(relation));
  ARROW_ASSIGN_OR_RAISE(auto schema, Describe(conn.get(), from, field));

  std::string select;
  auto add = [&](const std::string& item) {
    select += select.empty() ? "SELECT " : ", ";
    select += item;
  };
  for (const auto& c : scan.columns) {
    auto f = schema->GetFieldByName(c);
    if (f == nullptr) {
      return Unprocessable("source", "column '" + c + "' is not in the source (it has: " +
                                         ColumnList(*schema) + ")");
    }
    ARROW_ASSIGN_OR_RAISE(std::string quoted, conn->QuoteIdentifier(c));
    // Types without an Arrow mapping come as their text form.
    bool as_text = PostgresTypeName(*f).rfind("oid:", 0) == 0;
    add(as_text ? "q." + quoted + "::text AS " + quoted : "q." + quoted);
  }
  for (const auto& e : scan.computed) {
    ARROW_ASSIGN_OR_RAISE(std::string quoted, conn->QuoteIdentifier(e.column));
    add("(\n" + e.sql + "\n) AS " + quoted);
  }
  if (select.empty()) add("1");
  std::string sql = select + " FROM " + from + " AS q";
  std::vector<PostgresParam> params;
  if (!scan.time_column.empty() && PostgresFiltersRange(*schema, scan.time_column)) {
    ARROW_ASSIGN_OR_RAISE(std::string ts, conn->QuoteIdentifier(scan.time_column));
    const uint32_t type =
        PostgresTypeName(*schema->GetFieldByName(scan.time_column)) == "timestamptz" ? kTimestampTz
                                                                                      : kTimestamp;
    sql += " WHERE q." + ts + " >= $1 AND q." + ts + " < $2";
    params = {TimeParam(scan.start, type), TimeParam(scan.end, type)};
  }

  ARROW_RETURN_NOT_OK(conn->Execute("BEGIN READ ONLY", field));
  ARROW_RETURN_NOT_OK(
      conn->Execute("DECLARE fstore_rows NO SCROLL CURSOR FOR " + sql, params, false, field)
          .status());
  const std::string fetch =
      "FETCH FORWARD " + std::to_string(std::max<int64_t>(1, scan.fetch_rows)) + " FROM fstore_rows";
  std::shared_ptr<arrow::Schema> batch_schema;
  int64_t consumed = 0;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(auto result, conn->Execute(fetch, {}, true, field));
    if (batch_schema == nullptr) {
      ARROW_ASSIGN_OR_RAISE(batch_schema, PostgresResultSchema(result.get(), field));
    }
    const int rows = PQntuples(result.get());
    if (rows == 0 && consumed > 0) break;
    ARROW_ASSIGN_OR_RAISE(auto batch, DecodeResult(result.get(), batch_schema));
    result.reset();  // the rows are Arrow's now: one fetch in memory at a time
    ARROW_RETURN_NOT_OK(consume(batch));
    ++consumed;
    if (rows < scan.fetch_rows) break;
  }
  return conn->Execute("CLOSE fstore_rows; COMMIT", field);
}

Result<std::shared_ptr<arrow::Table>> ReadPostgresSource(const SourceDefinition& source,
                                                         const PostgresScan& scan) {
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  ARROW_RETURN_NOT_OK(ScanPostgresSource(
      source, scan, [&](const std::shared_ptr<arrow::RecordBatch>& batch) {
        batches.push_back(batch);
        return Status::OK();
      }));
  return arrow::Table::FromRecordBatches(batches.front()->schema(), batches);
}

Result<std::optional<TimestampMicros>> EarliestPostgresEvent(const FeatureSet& fs) {
  const SourceDefinition& source = *fs.source;
  const std::string field = PostgresRelationField(source);
  ARROW_ASSIGN_OR_RAISE(PostgresRelation relation, ParsePostgresRelation(source));
  ARROW_ASSIGN_OR_RAISE(auto conn, PostgresConnection::Open(source.connection));
  ARROW_ASSIGN_OR_RAISE(std::string from, conn->FromItem(relation));
  ARROW_ASSIGN_OR_RAISE(auto schema, Describe(conn.get(), from, field));
  if (schema->GetFieldIndex(fs.timestamp_field) < 0) {
    return Unprocessable("timestamp_field", "column '" + fs.timestamp_field +
                                                "' is not in the source (it has: " +
                                                ColumnList(*schema) + ")");
  }
  ARROW_ASSIGN_OR_RAISE(std::string ts, conn->QuoteIdentifier(fs.timestamp_field));
  std::shared_ptr<arrow::Array> values;
  if (PostgresFiltersRange(*schema, fs.timestamp_field)) {
    ARROW_ASSIGN_OR_RAISE(auto result,
                          conn->Execute("SELECT min(q." + ts + ") AS " + ts + " FROM " + from +
                                            " AS q",
                                        {}, true, field));
    ARROW_ASSIGN_OR_RAISE(auto result_schema, PostgresResultSchema(result.get(), field));
    ARROW_ASSIGN_OR_RAISE(auto batch, DecodeResult(result.get(), result_schema));
    values = batch->column(0);
  } else {
    conn.reset();
    PostgresScan scan;
    scan.columns = {fs.timestamp_field};
    ARROW_ASSIGN_OR_RAISE(auto table, ReadPostgresSource(source, scan));
    ARROW_ASSIGN_OR_RAISE(values, arrow::Concatenate(table->column(0)->chunks()));
  }
  if (values->length() == 0) return std::optional<TimestampMicros>();
  ARROW_ASSIGN_OR_RAISE(auto micros, NormaliseTimestamps(values, fs.timestamp_field));
  ARROW_ASSIGN_OR_RAISE(auto min_max, cp::MinMax(micros));
  const auto& st = min_max.scalar_as<arrow::StructScalar>();
  const auto& min = static_cast<const arrow::TimestampScalar&>(*st.value[0]);
  if (!min.is_valid) return std::optional<TimestampMicros>();
  return std::optional<TimestampMicros>(min.value);
}

namespace {

// Input column types PostgreSQL and the engine evaluate alike (the engine
// reads time fields as timestamptz, so a timestamp time field is not one).
bool SameInputSemantics(const arrow::Field& field, const FeatureSet& fs) {
  static const std::set<std::string> kSame = {"bool", "int4",    "int8",       "float8",
                                              "text", "varchar", "date",       "timestamptz",
                                              "timestamp"};
  const std::string type = PostgresTypeName(field);
  if (!kSame.count(type)) return false;
  if (type == "timestamp" &&
      (field.name() == fs.timestamp_field || field.name() == fs.created_timestamp_field)) {
    return false;
  }
  return true;
}

// Whether PostgreSQL's result type is the engine's (up to width: int4 and
// int8 are both the engine's int64).
bool SameResultType(const std::string& pg_type, const arrow::DataType& engine) {
  switch (engine.id()) {
    case arrow::Type::INT64: return pg_type == "int4" || pg_type == "int8" || pg_type == "int2";
    case arrow::Type::DOUBLE:
      return pg_type == "float8" || pg_type == "numeric" || pg_type == "float4";
    case arrow::Type::STRING: return pg_type == "text" || pg_type == "varchar";
    case arrow::Type::BOOL: return pg_type == "bool";
    case arrow::Type::TIMESTAMP: return pg_type == "timestamptz" || pg_type == "timestamp";
    case arrow::Type::DATE32: return pg_type == "date";
    default: return false;
  }
}

}  // namespace

Status PlanPostgresPushdown(FeaturePlan* plan, const std::shared_ptr<arrow::Schema>& schema) {
  const FeatureSet& fs = plan->feature_set;
  if (!fs.source || fs.source->type != "postgres" || !fs.source->pushdown) return Status::OK();
  std::vector<PlannedFeature*> candidates;
  for (PlannedFeature& p : plan->features) {
    if (p.kind != PlannedFeature::Kind::kScalar || p.reads_clock || !p.expression) continue;
    bool same = true;
    for (const auto& c : p.expression->input_columns()) {
      auto f = schema->GetFieldByName(c);
      same = same && f != nullptr && SameInputSemantics(*f, fs);
    }
    if (same) candidates.push_back(&p);
  }
  if (candidates.empty()) return Status::OK();
  const std::string field = PostgresRelationField(*fs.source);
  ARROW_ASSIGN_OR_RAISE(PostgresRelation relation, ParsePostgresRelation(*fs.source));
  ARROW_ASSIGN_OR_RAISE(auto conn, PostgresConnection::Open(fs.source->connection));
  ARROW_ASSIGN_OR_RAISE(std::string from, conn->FromItem(relation));
  for (PlannedFeature* p : candidates) {
    auto result = conn->Execute("SELECT (\n" + p->feature.transformation + "\n) AS x FROM " +
                                    from + " AS q LIMIT 0",
                                {}, true, "transformation");
    if (!result.ok()) {
      if (ErrorCodeOf(result.status()) == ErrorCode::kUnavailable) return result.status();
      spdlog::info("feature '{}' is computed by fstore, not pushed down: {}", p->feature.name,
                   ErrorMessageOf(result.status()));
      continue;
    }
    const std::string type = PostgresTypeOf(PQftype(result->get(), 0)).name;
    if (!SameResultType(type, *p->expression->type())) {
      spdlog::info("feature '{}' is computed by fstore, not pushed down: PostgreSQL gives {}, "
                   "fstore {}",
                   p->feature.name, type, p->expression->type()->ToString());
      continue;
    }
    p->source_column = "__fstore_" + p->feature.name;
  }
  return Status::OK();
}

std::vector<SourceExpression> PushedDownExpressions(const FeaturePlan& plan) {
  std::vector<SourceExpression> out;
  for (const PlannedFeature& p : plan.features) {
    if (!p.source_column.empty()) out.push_back({p.source_column, p.feature.transformation});
  }
  return out;
}

}  // namespace fstore
