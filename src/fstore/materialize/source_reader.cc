#include "fstore/materialize/source_reader.h"

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/dataset/api.h>
#include <parquet/properties.h>

#include "fstore/core/compute_init.h"
#include "fstore/compute/source_schema.h"
#include "fstore/materialize/postgres_source.h"

namespace fstore {
namespace ds = arrow::dataset;
namespace cp = arrow::compute;

namespace {

const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

Result<std::shared_ptr<ds::Dataset>> OpenDataset(const FeatureSet& fs) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  if (!fs.source || fs.source->type != "file") {
    return Unprocessable("source", "feature set '" + fs.name +
                                       "' has no file or postgres source to read from (a push "
                                       "source's rows come from the API)");
  }
  ARROW_ASSIGN_OR_RAISE(auto dataset, OpenSourceDataset(*fs.source));
  if (!dataset) {
    return Unprocessable("source.path", "no file matches '" + fs.source->path + "'");
  }
  return dataset;
}

// A literal of the column's own type for `micros`, so the comparison can be
// pushed into the reader; nullopt when the type has no such literal.
std::optional<cp::Expression> TimeLiteral(const arrow::DataType& type, TimestampMicros micros) {
  if (type.id() == arrow::Type::TIMESTAMP) {
    const auto& ts = static_cast<const arrow::TimestampType&>(type);
    int64_t per_unit = 1;
    switch (ts.unit()) {
      case arrow::TimeUnit::SECOND: per_unit = 1'000'000; break;
      case arrow::TimeUnit::MILLI: per_unit = 1'000; break;
      case arrow::TimeUnit::MICRO: per_unit = 1; break;
      case arrow::TimeUnit::NANO: {
        // micros * 1000 may overflow far from 1970; clamp.
        __int128 nanos = static_cast<__int128>(micros) * 1000;
        if (nanos > INT64_MAX) nanos = INT64_MAX;
        if (nanos < INT64_MIN) nanos = INT64_MIN;
        return cp::literal(std::make_shared<arrow::TimestampScalar>(static_cast<int64_t>(nanos),
                                                                    type.GetSharedPtr()));
      }
    }
    // Round toward -inf so that >= start keeps every row at or after start.
    int64_t v = micros / per_unit - ((micros % per_unit) < 0 ? 1 : 0);
    return cp::literal(std::make_shared<arrow::TimestampScalar>(v, type.GetSharedPtr()));
  }
  if (type.id() == arrow::Type::DATE32) {
    int64_t days = micros / kMicrosPerDay - ((micros % kMicrosPerDay) < 0 ? 1 : 0);
    return cp::literal(std::make_shared<arrow::Date32Scalar>(static_cast<int32_t>(days)));
  }
  return std::nullopt;
}

}  // namespace

Result<std::shared_ptr<arrow::Array>> NormaliseTimestamps(
    const std::shared_ptr<arrow::Array>& values, const std::string& column) {
  const auto& type = *values->type();
  std::shared_ptr<arrow::Array> micros;
  switch (type.id()) {
    case arrow::Type::TIMESTAMP: {
      // fstore keeps microseconds: nanoseconds are truncated.
      cp::CastOptions options = cp::CastOptions::Safe(arrow::timestamp(arrow::TimeUnit::MICRO));
      options.allow_time_truncate = true;
      ARROW_ASSIGN_OR_RAISE(auto cast, cp::Cast(arrow::Datum(values), options));
      micros = cast.make_array();
      break;
    }
    case arrow::Type::DATE32:
    case arrow::Type::DATE64: {
      ARROW_ASSIGN_OR_RAISE(micros, cp::Cast(*values, arrow::timestamp(arrow::TimeUnit::MICRO)));
      break;
    }
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING: {
      auto strings = std::static_pointer_cast<arrow::StringArray>(
          values->type_id() == arrow::Type::STRING ? values
                                                   : *cp::Cast(*values, arrow::utf8()));
      arrow::TimestampBuilder builder(arrow::timestamp(arrow::TimeUnit::MICRO),
                                      arrow::default_memory_pool());
      ARROW_RETURN_NOT_OK(builder.Reserve(strings->length()));
      for (int64_t i = 0; i < strings->length(); ++i) {
        if (strings->IsNull(i)) {
          builder.UnsafeAppendNull();
          continue;
        }
        auto parsed = ParseTimestamp(strings->GetView(i));
        if (!parsed.ok()) {
          return Unprocessable(column, "row " + std::to_string(i) + ": '" +
                                           std::string(strings->GetView(i)) +
                                           "' is not a timestamp: " + parsed.status().message());
        }
        builder.UnsafeAppend(*parsed);
      }
      ARROW_ASSIGN_OR_RAISE(micros, builder.Finish());
      break;
    }
    default:
      return Unprocessable(column, "column '" + column + "' has type " + type.ToString() +
                                       ": expected a timestamp, a date or ISO 8601 strings");
  }
  // Same micros, labelled UTC (a timezone-less timestamp is taken as UTC).
  auto data = micros->data()->Copy();
  data->type = kTimestampUtc;
  return arrow::MakeArray(data);
}

namespace {

Result<std::shared_ptr<arrow::Table>> ReadFileRange(const FeatureSet& fs,
                                                    const std::vector<std::string>& columns,
                                                    TimestampMicros start, TimestampMicros end) {
  ARROW_ASSIGN_OR_RAISE(auto dataset, OpenDataset(fs));
  const auto& schema = dataset->schema();
  for (const auto& c : columns) {
    if (schema->GetFieldIndex(c) < 0) {
      return Unprocessable("source", "column '" + c + "' is not in the source '" +
                                         fs.source->path + "' (it has: " +
                                         schema->ToString() + ")");
    }
  }
  const auto& ts_type = *schema->GetFieldByName(fs.timestamp_field)->type();

  ARROW_ASSIGN_OR_RAISE(auto builder, dataset->NewScan());
  ARROW_RETURN_NOT_OK(builder->Project(columns));
  auto lo = TimeLiteral(ts_type, start);
  auto hi = TimeLiteral(ts_type, end);
  if (lo && hi) {
    ARROW_RETURN_NOT_OK(builder->Filter(cp::and_(
        cp::greater_equal(cp::field_ref(fs.timestamp_field), *lo),
        cp::less_equal(cp::field_ref(fs.timestamp_field), *hi))));
  }
  ARROW_RETURN_NOT_OK(builder->UseThreads(true));
  // Arrow's defaults (16 batches, 4 files ahead) hold hundreds of MB of
  // decoded rows that the range filter mostly drops; a chunk's memory should
  // be its own rows.
  ARROW_RETURN_NOT_OK(builder->BatchReadahead(2));
  ARROW_RETURN_NOT_OK(builder->FragmentReadahead(2));
  if (fs.source->format != "csv") {
    // Nor does Arrow's Parquet reader pre-buffer (its default): that reads
    // the projected columns of every row group the scan will visit up
    // front, to coalesce requests to object stores. File sources are local,
    // and one not ordered by time has every row group in every range: each
    // read (a materialization chunk, a window's chunk in historical
    // retrieval) held the whole file's columns at once.
    auto parquet = std::make_shared<ds::ParquetFragmentScanOptions>();
    parquet->arrow_reader_properties->set_pre_buffer(false);
    ARROW_RETURN_NOT_OK(builder->FragmentScanOptions(std::move(parquet)));
  }
  ARROW_ASSIGN_OR_RAISE(auto scanner, builder->Finish());
  auto scanned = scanner->ToTable();
  if (!scanned.ok()) {
    return Unprocessable("source.path", "reading '" + fs.source->path + "' failed: " +
                                            scanned.status().message());
  }
  return (*scanned)->CombineChunks();
}

}  // namespace

Result<std::shared_ptr<arrow::Table>> ReadSourceRange(const FeatureSet& fs,
                                                      const std::vector<std::string>& columns,
                                                      TimestampMicros start, TimestampMicros end,
                                                      SourceReadStats* stats,
                                                      const std::vector<SourceExpression>& computed) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  std::shared_ptr<arrow::Table> table;
  if (fs.source && fs.source->type == "postgres") {
    PostgresScan scan;
    scan.columns = columns;
    scan.computed = computed;
    scan.time_column = fs.timestamp_field;
    scan.start = start;
    scan.end = end;
    ARROW_ASSIGN_OR_RAISE(table, ReadPostgresSource(*fs.source, scan));
  } else {
    if (!computed.empty()) {
      return Internal("only a postgres source computes expressions (pushdown)");
    }
    ARROW_ASSIGN_OR_RAISE(table, ReadFileRange(fs, columns, start, end));
  }

  // Normalise the time columns, then keep exactly [start, end) in micros (the
  // pushed-down filter was in the column's unit, inclusive on both sides).
  std::vector<std::shared_ptr<arrow::ChunkedArray>> cols = table->columns();
  std::vector<std::shared_ptr<arrow::Field>> fields = table->schema()->fields();
  for (int i = 0; i < table->num_columns(); ++i) {
    const std::string& name = fields[i]->name();
    if (name != fs.timestamp_field && name != fs.created_timestamp_field) continue;
    auto chunk = cols[i]->num_chunks() == 1 ? cols[i]->chunk(0)
                                            : *arrow::Concatenate(cols[i]->chunks());
    if (cols[i]->num_chunks() == 0) {
      ARROW_ASSIGN_OR_RAISE(chunk, arrow::MakeArrayOfNull(fields[i]->type(), 0));
    }
    ARROW_ASSIGN_OR_RAISE(auto normalised, NormaliseTimestamps(chunk, name));
    cols[i] = std::make_shared<arrow::ChunkedArray>(normalised);
    fields[i] = arrow::field(name, kTimestampUtc);
  }
  table = arrow::Table::Make(arrow::schema(fields), cols, table->num_rows());
  auto ts = table->GetColumnByName(fs.timestamp_field);
  auto start_scalar = std::make_shared<arrow::TimestampScalar>(start, kTimestampUtc);
  auto end_scalar = std::make_shared<arrow::TimestampScalar>(end, kTimestampUtc);
  ARROW_ASSIGN_OR_RAISE(auto ge, cp::CallFunction("greater_equal", {ts, start_scalar}));
  ARROW_ASSIGN_OR_RAISE(auto lt, cp::CallFunction("less", {ts, end_scalar}));
  ARROW_ASSIGN_OR_RAISE(auto keep, cp::And(ge, lt));
  ARROW_ASSIGN_OR_RAISE(auto filtered, cp::Filter(table, keep));
  table = filtered.table();
  ARROW_ASSIGN_OR_RAISE(table, table->CombineChunks());

  if (stats) {
    stats->rows += table->num_rows();
    for (const auto& col : table->columns()) {
      for (const auto& chunk : col->chunks()) {
        for (const auto& buf : chunk->data()->buffers) {
          if (buf) stats->bytes += buf->size();
        }
      }
    }
  }
  return table;
}

Result<std::optional<TimestampMicros>> EarliestSourceEvent(const FeatureSet& fs) {
  if (fs.source && fs.source->type == "postgres") return EarliestPostgresEvent(fs);
  ARROW_ASSIGN_OR_RAISE(auto dataset, OpenDataset(fs));
  ARROW_ASSIGN_OR_RAISE(auto builder, dataset->NewScan());
  ARROW_RETURN_NOT_OK(builder->Project({fs.timestamp_field}));
  ARROW_ASSIGN_OR_RAISE(auto scanner, builder->Finish());
  ARROW_ASSIGN_OR_RAISE(auto table, scanner->ToTable());
  if (table->num_rows() == 0) return std::optional<TimestampMicros>();
  auto column = table->column(0);
  ARROW_ASSIGN_OR_RAISE(auto chunk, arrow::Concatenate(column->chunks()));
  ARROW_ASSIGN_OR_RAISE(auto micros, NormaliseTimestamps(chunk, fs.timestamp_field));
  ARROW_ASSIGN_OR_RAISE(auto min_max, cp::MinMax(micros));
  const auto& st = min_max.scalar_as<arrow::StructScalar>();
  const auto& min = static_cast<const arrow::TimestampScalar&>(*st.value[0]);
  if (!min.is_valid) return std::optional<TimestampMicros>();
  return std::optional<TimestampMicros>(min.value);
}

}  // namespace fstore
