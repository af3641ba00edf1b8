#include "fstore/retrieval/point_in_time_join.h"

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>

#include <arrow/api.h>
#include <arrow/compute/api.h>

#include "fstore/core/columns.h"
#include "fstore/core/compute_init.h"
#include "fstore/core/duration.h"
#include "fstore/materialize/feature_validation.h"
#include "fstore/materialize/source_reader.h"

namespace fstore {
namespace cp = arrow::compute;

namespace {

constexpr std::string_view kClockInputPrefix = "__src__";
const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

// The entity key of a row as bytes: equal keys give equal bytes. Columns are
// int64 or utf8 (callers cast them first).
void EncodeKey(const std::vector<std::shared_ptr<arrow::Array>>& keys, int64_t row,
               std::string* out) {
  out->clear();
  for (const auto& col : keys) {
    if (col->type_id() == arrow::Type::INT64) {
      int64_t v = static_cast<const arrow::Int64Array&>(*col).Value(row);
      out->append(reinterpret_cast<const char*>(&v), sizeof v);
    } else {
      std::string_view s = static_cast<const arrow::StringArray&>(*col).GetView(row);
      uint64_t size = s.size();
      out->append(reinterpret_cast<const char*>(&size), sizeof size);
      out->append(s);
    }
  }
}

bool SameKey(const std::vector<std::shared_ptr<arrow::Array>>& keys, int64_t a, int64_t b) {
  for (const auto& col : keys) {
    if (col->type_id() == arrow::Type::INT64) {
      const auto& c = static_cast<const arrow::Int64Array&>(*col);
      if (c.Value(a) != c.Value(b)) return false;
    } else {
      const auto& c = static_cast<const arrow::StringArray&>(*col);
      if (c.GetView(a) != c.GetView(b)) return false;
    }
  }
  return true;
}

Result<std::shared_ptr<arrow::Array>> CastTo(const std::shared_ptr<arrow::Array>& values,
                                             const std::shared_ptr<arrow::DataType>& type,
                                             const std::string& column) {
  if (values->type()->Equals(*type)) return values;
  auto cast = cp::Cast(*values, type);
  if (!cast.ok()) {
    return Unprocessable(column, "join key column '" + column + "' of type " +
                                     values->type()->ToString() + " cannot be read as " +
                                     type->ToString() + ": " + cast.status().message());
  }
  return *cast;
}

Result<std::shared_ptr<arrow::Int64Array>> Micros(const std::shared_ptr<arrow::Array>& ts) {
  auto data = ts->data()->Copy();
  data->type = arrow::int64();
  return std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
}

Result<std::shared_ptr<arrow::Int64Array>> IndexArray(const std::vector<int64_t>& indices) {
  arrow::Int64Builder b;
  if (!indices.empty()) ARROW_RETURN_NOT_OK(b.AppendValues(indices));
  std::shared_ptr<arrow::Int64Array> out;
  ARROW_RETURN_NOT_OK(b.Finish(&out));
  return out;
}

// Indices with -1 as null: Take gives null there.
Result<std::shared_ptr<arrow::Int64Array>> OptionalIndexArray(const std::vector<int64_t>& indices) {
  arrow::Int64Builder b;
  ARROW_RETURN_NOT_OK(b.Reserve(static_cast<int64_t>(indices.size())));
  for (int64_t i : indices) {
    if (i < 0) {
      b.UnsafeAppendNull();
    } else {
      b.UnsafeAppend(i);
    }
  }
  std::shared_ptr<arrow::Int64Array> out;
  ARROW_RETURN_NOT_OK(b.Finish(&out));
  return out;
}

// The entity rows grouped by key: group ids in first-appearance order, and
// the rows sorted by (group, time), ties in input order.
struct EntityGroups {
  std::vector<std::shared_ptr<arrow::Array>> keys;  // plan.key_columns order
  std::unordered_map<std::string, int64_t> group_of_key;
  std::vector<int64_t> group_of_row;
  std::vector<int64_t> order;        // entity rows by (group, time)
  std::vector<int64_t> group_begin;  // group g's rows: order[group_begin[g] .. group_begin[g+1])
  int64_t num_groups() const { return static_cast<int64_t>(group_begin.size()) - 1; }
};

Result<EntityGroups> GroupEntityRows(const PointInTimeQuery& q) {
  EntityGroups g;
  const int64_t n = q.times->length();
  for (const auto& k : q.plan->key_columns) {
    auto col = q.entity_keys->GetColumnByName(k);
    if (!col) return InvalidArgument("entity_df.columns", "missing join key column '" + k + "'");
    if (col->type_id() != arrow::Type::INT64 && col->type_id() != arrow::Type::STRING) {
      return arrow::Status::Invalid("join key column '", k, "' must be int64 or utf8");
    }
    if (col->null_count() > 0) {
      return InvalidArgument("entity_df.data", "join key column '" + k + "' holds nulls");
    }
    g.keys.push_back(col);
  }
  g.group_of_row.resize(static_cast<size_t>(n));
  std::string key;
  for (int64_t i = 0; i < n; ++i) {
    EncodeKey(g.keys, i, &key);
    auto [it, inserted] =
        g.group_of_key.emplace(key, static_cast<int64_t>(g.group_of_key.size()));
    g.group_of_row[i] = it->second;
  }
  const int64_t groups = static_cast<int64_t>(g.group_of_key.size());
  g.group_begin.assign(static_cast<size_t>(groups) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++g.group_begin[g.group_of_row[i] + 1];
  for (size_t i = 1; i < g.group_begin.size(); ++i) g.group_begin[i] += g.group_begin[i - 1];
  g.order.resize(static_cast<size_t>(n));
  std::vector<int64_t> next(g.group_begin.begin(), g.group_begin.end() - 1);
  for (int64_t i = 0; i < n; ++i) g.order[next[g.group_of_row[i]]++] = i;
  const int64_t* t = q.times->raw_values();
  for (int64_t k = 0; k < groups; ++k) {
    std::stable_sort(g.order.begin() + g.group_begin[k], g.order.begin() + g.group_begin[k + 1],
                     [t](int64_t a, int64_t b) { return t[a] < t[b]; });
  }
  return g;
}

// The as-of join's result: the matched offline rows (one per matched entity
// row, at most), and for each entity row its row there or -1.
struct AsOfMatches {
  std::shared_ptr<arrow::RecordBatch> rows;  // event_timestamp + `columns`
  std::vector<int64_t> row_of_entity;
};

Result<AsOfMatches> AsOfJoin(OfflineStore* offline, const PointInTimeQuery& q,
                             const EntityGroups& g, const std::vector<std::string>& columns,
                             std::vector<std::shared_ptr<arrow::DataType>> column_types,
                             std::optional<int64_t> ttl_micros) {
  const FeaturePlan& plan = *q.plan;
  const std::string& fs = plan.feature_set.name;
  const int64_t n = q.times->length();
  AsOfMatches out;
  out.row_of_entity.assign(static_cast<size_t>(n), -1);
  // A null type is "as stored": taken from the first partition read.
  auto make_schema = [&]() {
    std::vector<std::shared_ptr<arrow::Field>> fields{
        arrow::field(kEventTimestampColumn, kTimestampUtc)};
    for (size_t c = 0; c < columns.size(); ++c) {
      fields.push_back(arrow::field(columns[c], column_types[c] ? column_types[c] : arrow::null()));
    }
    return arrow::schema(fields);
  };
  std::shared_ptr<arrow::Schema> out_schema;
  std::vector<std::shared_ptr<arrow::RecordBatch>> chunks;
  int64_t matched_rows = 0;
  if (n > 0) {
    const int64_t* t = q.times->raw_values();
    const int64_t max_t = *std::max_element(t, t + n);
    const int64_t min_t = *std::min_element(t, t + n);
    const int64_t lo = ttl_micros ? min_t - *ttl_micros : std::numeric_limits<int64_t>::min();
    // Per group, its rows order[begin, begin + unresolved) are still
    // unmatched: always a prefix in time order, as partitions are read from
    // the latest backwards (a match for a row is one for every later row).
    std::vector<int64_t> unresolved(static_cast<size_t>(g.num_groups()));
    int64_t total_unresolved = n;
    for (int64_t k = 0; k < g.num_groups(); ++k) {
      unresolved[k] = g.group_begin[k + 1] - g.group_begin[k];
    }
    ARROW_ASSIGN_OR_RAISE(auto dates, offline->Partitions(fs, kOfflineSchemaVersion));
    for (auto d = dates.rbegin(); d != dates.rend() && total_unresolved > 0; ++d) {
      ARROW_ASSIGN_OR_RAISE(TimestampMicros day, ParseTimestamp(*d));
      if (day > max_t) continue;
      if (day + kMicrosPerDay <= lo) break;
      ARROW_ASSIGN_OR_RAISE(auto table, offline->Read(fs, kOfflineSchemaVersion, day,
                                                      std::min(day + kMicrosPerDay, max_t + 1)));
      if (table->num_rows() == 0) continue;
      if (!out_schema) {
        for (size_t c = 0; c < columns.size(); ++c) {
          auto field = table->schema()->GetFieldByName(columns[c]);
          if (!column_types[c] && field) column_types[c] = field->type();
        }
        out_schema = make_schema();
      }
      ARROW_ASSIGN_OR_RAISE(auto batch, table->CombineChunksToBatch());
      std::vector<std::shared_ptr<arrow::Array>> keys;
      for (size_t c = 0; c < plan.key_columns.size(); ++c) {
        auto col = batch->GetColumnByName(plan.key_columns[c]);
        if (!col) {
          return Unprocessable("feature_sets", "the offline data of feature set '" + fs +
                                                   "' lacks join key column '" +
                                                   plan.key_columns[c] + "'");
        }
        ARROW_ASSIGN_OR_RAISE(col, CastTo(col, g.keys[c]->type(), plan.key_columns[c]));
        keys.push_back(col);
      }
      ARROW_ASSIGN_OR_RAISE(auto events, Micros(batch->GetColumnByName(kEventTimestampColumn)));
      ARROW_ASSIGN_OR_RAISE(auto created, Micros(batch->GetColumnByName(kCreatedTimestampColumn)));
      const int64_t* e = events->raw_values();
      const int64_t* cr = created->raw_values();
      std::vector<int64_t> take;
      std::string key;
      const int64_t rows = batch->num_rows();
      for (int64_t i = 0; i < rows;) {
        int64_t j = i + 1;
        while (j < rows && SameKey(keys, i, j)) ++j;
        EncodeKey(keys, i, &key);
        auto it = g.group_of_key.find(key);
        if (it != g.group_of_key.end() && unresolved[it->second] > 0) {
          const int64_t k = it->second;
          const int64_t begin = g.group_begin[k];
          int64_t p = i, last = -1, first_matched = unresolved[k];
          for (int64_t r = 0; r < unresolved[k]; ++r) {
            const int64_t row = g.order[begin + r];
            while (p < j && e[p] <= t[row]) {
              if (!q.as_of || cr[p] <= *q.as_of) last = p;
              ++p;
            }
            if (last < 0) continue;
            if (first_matched == unresolved[k]) first_matched = r;
            if (take.empty() || take.back() != last) take.push_back(last);
            out.row_of_entity[row] = matched_rows + static_cast<int64_t>(take.size()) - 1;
          }
          total_unresolved -= unresolved[k] - first_matched;
          unresolved[k] = first_matched;
        }
        i = j;
      }
      if (take.empty()) continue;
      ARROW_ASSIGN_OR_RAISE(auto index, IndexArray(take));
      std::vector<std::shared_ptr<arrow::Array>> arrays;
      ARROW_ASSIGN_OR_RAISE(auto ev, cp::Take(*batch->GetColumnByName(kEventTimestampColumn), *index));
      ARROW_ASSIGN_OR_RAISE(ev, CastTo(ev, kTimestampUtc, kEventTimestampColumn));
      arrays.push_back(ev);
      for (size_t c = 0; c < columns.size(); ++c) {
        const auto& type = out_schema->field(static_cast<int>(c) + 1)->type();
        auto col = batch->GetColumnByName(columns[c]);
        std::shared_ptr<arrow::Array> taken;
        if (!col) {
          // A feature added after these rows were materialized.
          ARROW_ASSIGN_OR_RAISE(taken, arrow::MakeArrayOfNull(type, index->length()));
        } else {
          ARROW_ASSIGN_OR_RAISE(taken, cp::Take(*col, *index));
          auto cast = CastTo(taken, type, columns[c]);
          if (!cast.ok()) {
            return Unprocessable("features", "offline column '" + columns[c] + "' of '" + fs +
                                                 "' has type " + taken->type()->ToString() +
                                                 ", not " + type->ToString());
          }
          taken = *cast;
        }
        arrays.push_back(taken);
      }
      chunks.push_back(arrow::RecordBatch::Make(out_schema, index->length(), arrays));
      matched_rows += index->length();
    }
    if (ttl_micros && out_schema) {
      ARROW_ASSIGN_OR_RAISE(auto all, arrow::Table::FromRecordBatches(out_schema, chunks));
      ARROW_ASSIGN_OR_RAISE(auto combined, all->CombineChunksToBatch());
      chunks = {combined};
      ARROW_ASSIGN_OR_RAISE(auto ev, Micros(combined->column(0)));
      for (int64_t i = 0; i < n; ++i) {
        int64_t r = out.row_of_entity[i];
        if (r >= 0 && ev->Value(r) < t[i] - *ttl_micros) out.row_of_entity[i] = -1;
      }
    }
  }
  if (!out_schema) out_schema = make_schema();
  ARROW_ASSIGN_OR_RAISE(auto all, arrow::Table::FromRecordBatches(out_schema, chunks));
  ARROW_ASSIGN_OR_RAISE(out.rows, all->CombineChunksToBatch());
  return out;
}

// The feature's default_value as a scalar of `type` (null when absent or not
// representable).
std::shared_ptr<arrow::Scalar> DefaultScalar(const Feature& f,
                                             const std::shared_ptr<arrow::DataType>& type) {
  auto null = arrow::MakeNullScalar(type);
  if (!f.default_value || f.default_value->is_null()) return null;
  const boost::json::value& v = *f.default_value;
  switch (type->id()) {
    case arrow::Type::INT64:
      if (v.is_int64()) return std::make_shared<arrow::Int64Scalar>(v.as_int64());
      if (v.is_uint64()) return std::make_shared<arrow::Int64Scalar>(static_cast<int64_t>(v.as_uint64()));
      if (v.is_double()) return std::make_shared<arrow::Int64Scalar>(static_cast<int64_t>(v.as_double()));
      return null;
    case arrow::Type::DOUBLE:
      if (v.is_number()) return std::make_shared<arrow::DoubleScalar>(v.to_number<double>());
      return null;
    case arrow::Type::BOOL:
      if (v.is_bool()) return std::make_shared<arrow::BooleanScalar>(v.as_bool());
      return null;
    case arrow::Type::STRING:
      if (v.is_string()) return std::make_shared<arrow::StringScalar>(std::string(v.as_string()));
      return null;
    case arrow::Type::TIMESTAMP:
      if (v.is_string()) {
        auto t = ParseTimestamp(v.as_string());
        if (t.ok()) return std::make_shared<arrow::TimestampScalar>(*t, type);
      }
      return null;
    default:
      return null;  // lists: not representable as a default here
  }
}

Result<std::shared_ptr<arrow::Array>> WithDefault(const std::shared_ptr<arrow::Array>& values,
                                                  const std::vector<int64_t>& row_of_entity,
                                                  const Feature& f) {
  auto scalar = DefaultScalar(f, values->type());
  if (!scalar->is_valid) return values;
  arrow::BooleanBuilder matched;
  ARROW_RETURN_NOT_OK(matched.Reserve(values->length()));
  for (int64_t r : row_of_entity) matched.UnsafeAppend(r >= 0);
  ARROW_ASSIGN_OR_RAISE(auto mask, matched.Finish());
  ARROW_ASSIGN_OR_RAISE(auto out, cp::IfElse(mask, values, scalar));
  return out.make_array();
}

// Puts values given in `order` (value j belongs to row order[j]) back in row order.
Result<std::shared_ptr<arrow::Array>> Unpermute(const std::shared_ptr<arrow::Array>& values,
                                                const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t j = 0; j < order.size(); ++j) inverse[order[j]] = static_cast<int64_t>(j);
  ARROW_ASSIGN_OR_RAISE(auto index, IndexArray(inverse));
  ARROW_ASSIGN_OR_RAISE(auto out, cp::Take(*values, *index));
  return out;
}

// Windowed features at the entity rows' times, from the source.
Result<std::map<std::string, std::shared_ptr<arrow::Array>>> WindowsAtRows(
    const PointInTimeQuery& q, const EntityGroups& g,
    const std::vector<const PlannedFeature*>& windows) {
  std::map<std::string, std::shared_ptr<arrow::Array>> out;
  if (windows.empty()) return out;
  const FeaturePlan& plan = *q.plan;
  const FeatureSet& fs = plan.feature_set;
  const int64_t n = q.times->length();
  std::vector<int64_t> query_groups(static_cast<size_t>(n)), query_times(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    query_groups[j] = g.group_of_row[g.order[j]];
    query_times[j] = q.times->Value(g.order[j]);
  }
  int64_t range = 0;
  std::vector<std::string> columns = plan.key_columns;
  auto add = [&](const std::string& c) {
    if (std::find(columns.begin(), columns.end(), c) == columns.end()) columns.push_back(c);
  };
  add(fs.timestamp_field);
  if (!fs.created_timestamp_field.empty()) add(fs.created_timestamp_field);
  for (const PlannedFeature* p : windows) {
    range = std::max(range, p->window->range_micros);
    if (p->expression) {
      for (const auto& c : p->expression->input_columns()) add(c);
    }
  }
  std::shared_ptr<arrow::RecordBatch> events;
  std::vector<int64_t> event_groups, event_times;
  if (n > 0) {
    const int64_t* t = q.times->raw_values();
    const int64_t min_t = *std::min_element(t, t + n), max_t = *std::max_element(t, t + n);
    SourceReadStats stats;
    auto source = ReadSourceRange(fs, columns, min_t - range, max_t + 1, &stats);
    if (!source.ok()) {
      return Unprocessable("feature_sets", "the windowed features of feature set '" + fs.name +
                                               "' are computed from its source, which cannot "
                                               "be read: " + ErrorMessageOf(source.status()));
    }
    ARROW_ASSIGN_OR_RAISE(auto batch, (*source)->CombineChunksToBatch());
    std::vector<std::shared_ptr<arrow::Array>> keys;
    for (size_t c = 0; c < plan.key_columns.size(); ++c) {
      ARROW_ASSIGN_OR_RAISE(auto col, CastTo(batch->GetColumnByName(plan.key_columns[c]),
                                             g.keys[c]->type(), plan.key_columns[c]));
      keys.push_back(col);
    }
    ARROW_ASSIGN_OR_RAISE(auto times, Micros(batch->GetColumnByName(fs.timestamp_field)));
    std::shared_ptr<arrow::Int64Array> created;
    if (!fs.created_timestamp_field.empty()) {
      ARROW_ASSIGN_OR_RAISE(created, Micros(batch->GetColumnByName(fs.created_timestamp_field)));
    }
    // Source rows of the entities asked about (null keys or times are no
    // entity's), by (group, event time, created time, input order) -- the
    // materialization's order, which decides first_value/last_value among peers.
    std::vector<int64_t> rows, group(static_cast<size_t>(batch->num_rows()), -1);
    std::string key;
    for (int64_t i = 0; i < batch->num_rows(); ++i) {
      if (times->IsNull(i)) continue;
      if (created && created->IsNull(i)) continue;
      if (created && q.as_of && created->Value(i) > *q.as_of) continue;
      bool null_key = false;
      for (const auto& k : keys) null_key = null_key || k->IsNull(i);
      if (null_key) continue;
      EncodeKey(keys, i, &key);
      auto it = g.group_of_key.find(key);
      if (it == g.group_of_key.end()) continue;
      group[i] = it->second;
      rows.push_back(i);
    }
    std::stable_sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
      if (group[a] != group[b]) return group[a] < group[b];
      if (times->Value(a) != times->Value(b)) return times->Value(a) < times->Value(b);
      if (created) return created->Value(a) < created->Value(b);
      return false;
    });
    ARROW_ASSIGN_OR_RAISE(auto index, IndexArray(rows));
    ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(batch, index));
    events = taken.record_batch();
    for (int64_t r : rows) {
      event_groups.push_back(group[r]);
      event_times.push_back(times->Value(r));
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto ev_groups, IndexArray(event_groups));
  ARROW_ASSIGN_OR_RAISE(auto ev_times, IndexArray(event_times));
  ARROW_ASSIGN_OR_RAISE(auto qg, IndexArray(query_groups));
  ARROW_ASSIGN_OR_RAISE(auto qt, IndexArray(query_times));
  for (const PlannedFeature* p : windows) {
    std::shared_ptr<arrow::Array> argument;
    const int64_t rows = ev_times->length();
    if (p->expression && events) {
      EvalContext ctx;
      auto r = p->expression->Evaluate(*events, ctx);
      if (!r.ok()) {
        return MakeError(ErrorCodeOf(r.status()),
                         "feature '" + p->feature.name + "': " + ErrorMessageOf(r.status()),
                         "features");
      }
      argument = *r;
    } else {
      ARROW_ASSIGN_OR_RAISE(argument, arrow::MakeArrayOfNull(arrow::null(), rows));
    }
    ARROW_ASSIGN_OR_RAISE(auto values,
                          WindowAtTimes(*p->window, *ev_groups, *ev_times, argument, *qg, *qt));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p->feature, values));
    ARROW_ASSIGN_OR_RAISE(out[p->feature.name], Unpermute(col.values, g.order));
  }
  return out;
}

// A clock-reading feature re-evaluated with the clock at each entity row's
// time, from its stored inputs (`matched`: the matched offline rows in entity
// row order, nulls where unmatched).
Result<std::shared_ptr<arrow::Array>> ClockFeatureAtRows(const PointInTimeQuery& q,
                                                         const PlannedFeature& p,
                                                         const arrow::RecordBatch& matched) {
  const FeaturePlan& plan = *q.plan;
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& k : plan.key_columns) {
    auto col = matched.GetColumnByName(k);
    if (col) {
      fields.push_back(arrow::field(k, col->type()));
      arrays.push_back(col);
    }
  }
  fields.push_back(arrow::field(plan.feature_set.timestamp_field, kTimestampUtc));
  arrays.push_back(matched.GetColumnByName(kEventTimestampColumn));
  for (const auto& c : plan.clock_inputs) {
    auto col = matched.GetColumnByName(std::string(kClockInputPrefix) + c);
    if (!col) {
      return Unprocessable("features", "feature '" + p.feature.name +
                                           "' reads the clock but its stored input '" + c +
                                           "' is not in the offline store: re-materialize");
    }
    fields.push_back(arrow::field(c, col->type()));
    arrays.push_back(col);
  }
  auto batch = arrow::RecordBatch::Make(arrow::schema(fields), matched.num_rows(), arrays);
  // One evaluation per distinct time: rows sorted by time, evaluated in runs.
  const int64_t n = matched.num_rows();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return q.times->Value(a) < q.times->Value(b); });
  arrow::ArrayVector pieces;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && q.times->Value(order[j]) == q.times->Value(order[i])) ++j;
    std::vector<int64_t> slice(order.begin() + i, order.begin() + j);
    ARROW_ASSIGN_OR_RAISE(auto index, IndexArray(slice));
    ARROW_ASSIGN_OR_RAISE(auto sub, cp::Take(batch, index));
    EvalContext ctx;
    ctx.clock = q.times->Value(order[i]);
    auto r = p.expression->Evaluate(*sub.record_batch(), ctx);
    if (!r.ok()) {
      return MakeError(ErrorCodeOf(r.status()),
                       "feature '" + p.feature.name + "': " + ErrorMessageOf(r.status()),
                       "features");
    }
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p.feature, *r));
    pieces.push_back(col.values);
    i = j;
  }
  ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p.feature.data_type));
  if (pieces.empty()) return arrow::MakeArrayOfNull(type, 0);
  ARROW_ASSIGN_OR_RAISE(auto all, arrow::Concatenate(pieces));
  return Unpermute(all, order);
}

}  // namespace

Result<std::vector<std::shared_ptr<arrow::Array>>> RetrievePointInTime(
    OfflineStore* offline, const PointInTimeQuery& q) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  const FeaturePlan& plan = *q.plan;
  if (!q.entity_keys || !q.times || q.entity_keys->num_rows() != q.times->length()) {
    return arrow::Status::Invalid("entity keys and times differ in length");
  }
  if (q.times->null_count() > 0) {
    return InvalidArgument("entity_df.data", "entity row times must not be null");
  }
  std::optional<int64_t> ttl;
  if (!plan.feature_set.ttl.empty()) {
    auto parsed = ParseDuration(plan.feature_set.ttl);
    if (!parsed.ok()) {
      return Unprocessable("ttl", "feature set '" + plan.feature_set.name + "' has an invalid ttl '" +
                                      plan.feature_set.ttl + "'");
    }
    ttl = *parsed;
  }
  // Which features come from where.
  std::vector<const PlannedFeature*> wanted, windows, clocked;
  std::vector<std::string> columns;  // offline columns to fetch
  std::vector<std::shared_ptr<arrow::DataType>> column_types;
  auto fetch = [&](const std::string& c, std::shared_ptr<arrow::DataType> type) {
    if (std::find(columns.begin(), columns.end(), c) != columns.end()) return;
    columns.push_back(c);
    column_types.push_back(std::move(type));
  };
  for (const auto& name : q.features) {
    if (std::find(plan.read_time_features.begin(), plan.read_time_features.end(), name) !=
        plan.read_time_features.end()) {
      return MakeError(ErrorCode::kNotImplemented,
                       "feature '" + plan.feature_set.name + ":" + name +
                           "' is derived from features of other feature sets; historical "
                           "retrieval of such features is not built yet",
                       "features");
    }
    auto it = std::find_if(plan.features.begin(), plan.features.end(),
                           [&](const PlannedFeature& p) { return p.feature.name == name; });
    if (it == plan.features.end()) {
      return InvalidArgument("features", "feature '" + name + "' is not in feature set '" +
                                             plan.feature_set.name + "'");
    }
    const PlannedFeature* p = &*it;
    wanted.push_back(p);
    if (p->kind == PlannedFeature::Kind::kWindow) {
      if (p->reads_clock) {
        return MakeError(ErrorCode::kNotImplemented,
                         "feature '" + name + "': a windowed feature that reads the clock cannot "
                         "be retrieved historically yet", "features");
      }
      windows.push_back(p);
    } else if (p->reads_clock && p->kind == PlannedFeature::Kind::kScalar) {
      clocked.push_back(p);
    } else {
      ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p->feature.data_type));
      fetch(p->feature.name, type);
    }
  }
  ARROW_ASSIGN_OR_RAISE(EntityGroups groups, GroupEntityRows(q));
  if (!clocked.empty()) {
    for (size_t c = 0; c < plan.key_columns.size(); ++c) {
      fetch(plan.key_columns[c], groups.keys[c]->type());
    }
    // The stored inputs, read with the type they are stored with (null type).
    for (const auto& c : plan.clock_inputs) fetch(std::string(kClockInputPrefix) + c, nullptr);
  }

  ARROW_ASSIGN_OR_RAISE(AsOfMatches matches, AsOfJoin(offline, q, groups, columns, column_types, ttl));
  ARROW_ASSIGN_OR_RAISE(auto index, OptionalIndexArray(matches.row_of_entity));
  ARROW_ASSIGN_OR_RAISE(auto matched_datum, cp::Take(matches.rows, index));
  auto matched = matched_datum.record_batch();
  ARROW_ASSIGN_OR_RAISE(auto window_values, WindowsAtRows(q, groups, windows));

  std::vector<std::shared_ptr<arrow::Array>> out;
  for (const PlannedFeature* p : wanted) {
    std::shared_ptr<arrow::Array> values;
    if (p->kind == PlannedFeature::Kind::kWindow) {
      out.push_back(window_values.at(p->feature.name));
      continue;
    }
    if (std::find(clocked.begin(), clocked.end(), p) != clocked.end()) {
      ARROW_ASSIGN_OR_RAISE(values, ClockFeatureAtRows(q, *p, *matched));
    } else {
      values = matched->GetColumnByName(p->feature.name);
    }
    ARROW_ASSIGN_OR_RAISE(values, WithDefault(values, matches.row_of_entity, p->feature));
    out.push_back(values);
  }
  return out;
}

}  // namespace fstore
