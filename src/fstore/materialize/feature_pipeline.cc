#include "fstore/materialize/feature_pipeline.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <boost/json/value_from.hpp>

#include "fstore/core/arrays.h"
#include "fstore/core/compute_init.h"
#include "fstore/core/entity_time_order.h"
#include "fstore/materialize/feature_validation.h"
#include "fstore/materialize/python_step.h"

namespace fstore {
namespace cp = arrow::compute;
namespace json = boost::json;

namespace {

const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
constexpr int kSamplesPerRule = 3;
constexpr std::string_view kClockInputPrefix = "__src__";

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

void AddUnique(std::vector<std::string>* v, const std::string& x) {
  if (!Contains(*v, x)) v->push_back(x);
}

Status FeatureError(const Feature& f, const Status& st) {
  if (st.ok()) return st;
  return MakeError(ErrorCodeOf(st), "feature '" + f.name + "': " + st.message(),
                   ErrorOf(st) ? ErrorOf(st)->field() : "", ErrorOf(st) ? ErrorOf(st)->position()
                                                                        : std::nullopt);
}

// The source schema as expressions see it: time columns as timestamp[us, UTC].
std::shared_ptr<arrow::Schema> NormalisedSchema(const FeatureSet& fs,
                                                const std::shared_ptr<arrow::Schema>& schema) {
  std::vector<std::shared_ptr<arrow::Field>> fields;
  for (const auto& f : schema->fields()) {
    if (f->name() == fs.timestamp_field || f->name() == fs.created_timestamp_field) {
      fields.push_back(arrow::field(f->name(), kTimestampUtc));
    } else {
      fields.push_back(f);
    }
  }
  return arrow::schema(fields);
}

}  // namespace

Result<FeaturePlan> PlanMaterialization(const FeatureSet& fs, const std::vector<Feature>& features,
                                        const std::vector<Entity>& entities,
                                        const std::shared_ptr<arrow::Schema>& source_schema) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  FeaturePlan plan;
  plan.feature_set = fs;
  for (const auto& name : fs.entities) {
    auto it = std::find_if(entities.begin(), entities.end(),
                           [&](const Entity& e) { return e.name == name; });
    if (it == entities.end()) return Unprocessable("entities", "entity '" + name + "' not found");
    for (const auto& key : it->join_keys) AddUnique(&plan.key_columns, key);
  }
  // Features of a set with a Python transformation read its output columns
  // as well as the source's (python_step.h).
  ARROW_ASSIGN_OR_RAISE(auto visible_schema, SchemaAfterPython(fs, source_schema));
  auto schema = NormalisedSchema(fs, visible_schema);
  auto require_column = [&](const std::string& column, const std::string& field) -> Status {
    if (schema->GetFieldIndex(column) < 0) {
      return Unprocessable(field, "column '" + column + "' is not in the source" +
                                      (fs.python_transformation
                                           ? " nor among python_transformation.output_columns"
                                           : ""));
    }
    return Status::OK();
  };
  for (const auto& key : plan.key_columns) {
    ARROW_RETURN_NOT_OK(require_column(key, "entities"));
    AddUnique(&plan.source_columns, key);
  }
  ARROW_RETURN_NOT_OK(require_column(fs.timestamp_field, "timestamp_field"));
  AddUnique(&plan.source_columns, fs.timestamp_field);
  if (!fs.created_timestamp_field.empty()) {
    ARROW_RETURN_NOT_OK(require_column(fs.created_timestamp_field, "created_timestamp_field"));
    AddUnique(&plan.source_columns, fs.created_timestamp_field);
  }

  std::vector<PlannedFeature> scalars, windows, derived;
  for (const Feature& f : features) {
    PlannedFeature p;
    p.feature = f;
    bool other_set_input = std::any_of(
        f.source_features.begin(), f.source_features.end(), [&](const std::string& s) {
          size_t colon = s.find(':');
          return colon != std::string::npos && s.substr(0, colon) != fs.name;
        });
    if (other_set_input) {
      plan.read_time_features.push_back(f.name);
      continue;
    }
    if (f.transformation.empty()) {
      ARROW_RETURN_NOT_OK(FeatureError(f, require_column(f.name, "name")));
      AddUnique(&plan.source_columns, f.name);
      p.kind = PlannedFeature::Kind::kColumn;
      scalars.push_back(std::move(p));
      continue;
    }
    auto parsed_result = ParseTransformation(f.transformation);
    if (!parsed_result.ok()) return FeatureError(f, parsed_result.status());
    ParsedTransformation parsed = std::move(*parsed_result);
    p.reads_clock = parsed.reads_clock;
    if (!f.source_features.empty()) {
      p.kind = PlannedFeature::Kind::kDerived;
      derived.push_back(std::move(p));
      continue;
    }
    auto spec_result = ParseWindowSpec(parsed, f.window_size);
    if (!spec_result.ok()) return FeatureError(f, spec_result.status());
    if (spec_result->has_value()) {
      WindowSpec spec = **spec_result;
      if (spec.partition_by.empty()) spec.partition_by = plan.key_columns;
      if (spec.order_by.empty()) spec.order_by = fs.timestamp_field;
      std::vector<std::string> a = spec.partition_by, b = plan.key_columns;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a != b) {
        return Unprocessable("transformation", "feature '" + f.name +
                                                   "': PARTITION BY must be the entity's join "
                                                   "keys of the feature set");
      }
      if (spec.order_by != fs.timestamp_field) {
        return Unprocessable("transformation",
                             "feature '" + f.name + "': ORDER BY must be the feature set's "
                             "timestamp_field '" + fs.timestamp_field + "', not '" +
                                 spec.order_by + "'");
      }
      if (!spec.argument.is_null()) {
        ParsedTransformation argument;
        argument.expression = spec.argument;
        auto compiled = CompiledExpression::Compile(argument, schema);
        if (!compiled.ok()) return FeatureError(f, compiled.status());
        for (const auto& c : compiled->input_columns()) AddUnique(&plan.source_columns, c);
        p.expression = std::move(*compiled);
      }
      plan.max_window_micros = std::max(plan.max_window_micros, spec.range_micros);
      p.window = std::move(spec);
      p.kind = PlannedFeature::Kind::kWindow;
      windows.push_back(std::move(p));
      continue;
    }
    auto compiled = CompiledExpression::Compile(parsed, schema);
    if (!compiled.ok()) return FeatureError(f, compiled.status());
    for (const auto& c : compiled->input_columns()) {
      AddUnique(&plan.source_columns, c);
      if (p.reads_clock && !Contains(plan.key_columns, c) && c != fs.timestamp_field) {
        AddUnique(&plan.clock_inputs, c);
      }
    }
    p.expression = std::move(*compiled);
    p.kind = PlannedFeature::Kind::kScalar;
    scalars.push_back(std::move(p));
  }

  // Derived features see the source columns and every feature computed before
  // them, by name (a feature shadows a source column of the same name).
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::set<std::string> feature_names;
  for (const auto* group : {&scalars, &windows}) {
    for (const auto& p : *group) {
      ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p.feature.data_type));
      fields.push_back(arrow::field(p.feature.name, type));
      feature_names.insert(p.feature.name);
    }
  }
  std::vector<PlannedFeature> ordered_derived;
  while (!derived.empty()) {
    auto ready = std::find_if(derived.begin(), derived.end(), [&](const PlannedFeature& p) {
      return std::all_of(p.feature.source_features.begin(), p.feature.source_features.end(),
                         [&](const std::string& s) { return feature_names.count(std::string(FeatureNameOf(s))) > 0; });
    });
    if (ready == derived.end()) {
      return Unprocessable("source_features",
                           "feature '" + derived.front().feature.name +
                               "' depends on features that are not materialized with it");
    }
    PlannedFeature p = std::move(*ready);
    derived.erase(ready);
    std::vector<std::shared_ptr<arrow::Field>> visible = fields;
    for (const auto& f : schema->fields()) {
      if (!feature_names.count(f->name())) visible.push_back(f);
    }
    auto parsed = ParseTransformation(p.feature.transformation);
    if (!parsed.ok()) return FeatureError(p.feature, parsed.status());
    auto compiled = CompiledExpression::Compile(*parsed, arrow::schema(visible));
    if (!compiled.ok()) return FeatureError(p.feature, compiled.status());
    for (const auto& c : compiled->input_columns()) {
      if (!feature_names.count(c)) AddUnique(&plan.source_columns, c);
    }
    p.expression = std::move(*compiled);
    ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p.feature.data_type));
    fields.push_back(arrow::field(p.feature.name, type));
    feature_names.insert(p.feature.name);
    ordered_derived.push_back(std::move(p));
  }
  for (auto* group : {&scalars, &windows, &ordered_derived}) {
    for (auto& p : *group) plan.features.push_back(std::move(p));
  }
  return plan;
}

namespace {

// Consecutive rows with equal keys share a group id (the input is sorted).
Result<std::shared_ptr<arrow::Int64Array>> GroupIds(const arrow::RecordBatch& batch,
                                                    const std::vector<std::string>& keys) {
  std::vector<std::shared_ptr<arrow::Array>> columns;
  for (const auto& k : keys) columns.push_back(batch.GetColumnByName(k));
  arrow::Int64Builder builder;
  ARROW_RETURN_NOT_OK(builder.Reserve(batch.num_rows()));
  int64_t group = -1;
  for (int64_t i = 0; i < batch.num_rows(); ++i) {
    bool same = i > 0;
    for (size_t c = 0; same && c < columns.size(); ++c) {
      const auto& col = *columns[c];
      if (col.IsNull(i) != col.IsNull(i - 1)) {
        same = false;
      } else if (col.IsValid(i)) {
        if (col.type_id() == arrow::Type::STRING) {
          const auto& s = static_cast<const arrow::StringArray&>(col);
          same = s.GetView(i) == s.GetView(i - 1);
        } else if (col.type_id() == arrow::Type::INT64) {
          const auto& s = static_cast<const arrow::Int64Array&>(col);
          same = s.Value(i) == s.Value(i - 1);
        } else {
          ARROW_ASSIGN_OR_RAISE(auto a, col.GetScalar(i));
          ARROW_ASSIGN_OR_RAISE(auto b, col.GetScalar(i - 1));
          same = a->Equals(*b);
        }
      }
    }
    if (!same) ++group;
    builder.UnsafeAppend(group);
  }
  std::shared_ptr<arrow::Int64Array> out;
  ARROW_RETURN_NOT_OK(builder.Finish(&out));
  return out;
}

json::value ScalarToJson(const std::shared_ptr<arrow::Array>& array, int64_t row) {
  if (array->IsNull(row)) return nullptr;
  auto scalar = array->GetScalar(row);
  if (!scalar.ok()) return nullptr;
  const auto& s = **scalar;
  switch (s.type->id()) {
    case arrow::Type::INT64: return static_cast<const arrow::Int64Scalar&>(s).value;
    case arrow::Type::INT32: return static_cast<const arrow::Int32Scalar&>(s).value;
    case arrow::Type::DOUBLE: return static_cast<const arrow::DoubleScalar&>(s).value;
    case arrow::Type::BOOL: return static_cast<const arrow::BooleanScalar&>(s).value;
    case arrow::Type::STRING: return json::value(static_cast<const arrow::StringScalar&>(s).ToString());
    case arrow::Type::TIMESTAMP:
      return json::value(FormatTimestamp(static_cast<const arrow::TimestampScalar&>(s).value));
    default: return json::value(s.ToString());
  }
}

// Nulls the given rows of an array.
Result<std::shared_ptr<arrow::Array>> NullRows(const std::shared_ptr<arrow::Array>& values,
                                               const std::vector<bool>& null_rows) {
  arrow::BooleanBuilder mask;
  ARROW_RETURN_NOT_OK(mask.Reserve(values->length()));
  for (int64_t i = 0; i < values->length(); ++i) mask.UnsafeAppend(!null_rows[i]);
  ARROW_ASSIGN_OR_RAISE(auto keep, mask.Finish());
  auto null_scalar = arrow::MakeNullScalar(values->type());
  ARROW_ASSIGN_OR_RAISE(auto out, cp::IfElse(keep, values, null_scalar));
  return out.make_array();
}

// The entity key of a row as bytes, equal for equal keys (nulls equal, as
// GroupIds has them): to match a carried entity with this chunk's.
void EncodeKeyAt(const std::vector<std::shared_ptr<arrow::Array>>& keys, int64_t row,
                 std::string* out) {
  out->clear();
  auto append_bytes = [out](std::string_view bytes) {
    uint64_t size = bytes.size();
    out->append(reinterpret_cast<const char*>(&size), sizeof size);
    out->append(bytes);
  };
  for (const auto& col : keys) {
    if (col->IsNull(row)) {
      out->push_back('\0');
      continue;
    }
    out->push_back('\1');
    switch (col->type_id()) {
      case arrow::Type::INT64: {
        int64_t v = static_cast<const arrow::Int64Array&>(*col).Value(row);
        out->append(reinterpret_cast<const char*>(&v), sizeof v);
        break;
      }
      case arrow::Type::INT32: {
        int32_t v = static_cast<const arrow::Int32Array&>(*col).Value(row);
        out->append(reinterpret_cast<const char*>(&v), sizeof v);
        break;
      }
      case arrow::Type::STRING:
        append_bytes(static_cast<const arrow::StringArray&>(*col).GetView(row));
        break;
      case arrow::Type::LARGE_STRING:
        append_bytes(static_cast<const arrow::LargeStringArray&>(*col).GetView(row));
        break;
      default: {
        // Rare key types: their text form, unambiguous within one type.
        auto scalar = col->GetScalar(row);
        append_bytes(scalar.ok() ? (*scalar)->ToString() : std::string());
        break;
      }
    }
  }
}

// The events the windows slide over: the carried look-back's and this
// chunk's, grouped by one id per entity (this chunk's group ids, then new ids
// for entities seen only in the carry), each entity's events in time order.
struct WindowEvents {
  std::shared_ptr<arrow::Int64Array> ids;
  std::shared_ptr<arrow::Int64Array> times;
  /// Position j of the events -> row in [carry rows..., chunk rows...]; empty
  /// when there is no carry (the events are the chunk's rows, in order).
  std::vector<int64_t> order;
  int64_t num_ids = 0;
  std::vector<int64_t> carry_group_id;  ///< carry group k -> its id
};

Result<WindowEvents> MakeWindowEvents(const FeaturePlan& plan, const WindowCarry* carry,
                                      const arrow::RecordBatch& full,
                                      const std::shared_ptr<arrow::Int64Array>& full_groups,
                                      const std::shared_ptr<arrow::Int64Array>& full_times) {
  WindowEvents ev;
  const int64_t full_rows = full.num_rows();
  const int64_t full_group_count = full_rows > 0 ? full_groups->Value(full_rows - 1) + 1 : 0;
  const int64_t n_carry = carry ? carry->num_rows() : 0;
  if (n_carry == 0) {
    ev.ids = full_groups;
    ev.times = full_times;
    ev.num_ids = full_group_count;
    return ev;
  }
  std::vector<std::shared_ptr<arrow::Array>> full_keys;
  for (const auto& k : plan.key_columns) full_keys.push_back(full.GetColumnByName(k));
  std::unordered_map<std::string, int64_t> id_of;
  id_of.reserve(static_cast<size_t>(full_group_count));
  std::string key;
  for (int64_t i = 0; i < full_rows; ++i) {
    if (i > 0 && full_groups->Value(i) == full_groups->Value(i - 1)) continue;
    EncodeKeyAt(full_keys, i, &key);
    id_of.emplace(key, full_groups->Value(i));
  }
  const int64_t carry_groups = carry->groups->Value(n_carry - 1) + 1;
  ev.carry_group_id.resize(static_cast<size_t>(carry_groups));
  int64_t next_id = full_group_count;
  for (int64_t i = 0; i < n_carry; ++i) {
    if (i > 0 && carry->groups->Value(i) == carry->groups->Value(i - 1)) continue;
    EncodeKeyAt(carry->keys, i, &key);
    auto it = id_of.find(key);
    ev.carry_group_id[carry->groups->Value(i)] = it != id_of.end() ? it->second : next_id++;
  }
  ev.num_ids = next_id;
  // A counting sort by id; within an id the carried rows (all before the
  // chunk's start) come first, then the chunk's, each already in time order.
  std::vector<int64_t> offset(static_cast<size_t>(ev.num_ids) + 1, 0);
  for (int64_t i = 0; i < n_carry; ++i) ++offset[ev.carry_group_id[carry->groups->Value(i)] + 1];
  for (int64_t i = 0; i < full_rows; ++i) ++offset[full_groups->Value(i) + 1];
  for (size_t i = 1; i < offset.size(); ++i) offset[i] += offset[i - 1];
  ev.order.resize(static_cast<size_t>(n_carry + full_rows));
  std::vector<int64_t> ids(ev.order.size()), times(ev.order.size());
  for (int64_t i = 0; i < n_carry; ++i) {
    int64_t id = ev.carry_group_id[carry->groups->Value(i)];
    int64_t j = offset[id]++;
    ev.order[j] = i;
    ids[j] = id;
    times[j] = carry->times->Value(i);
  }
  for (int64_t i = 0; i < full_rows; ++i) {
    int64_t id = full_groups->Value(i);
    int64_t j = offset[id]++;
    ev.order[j] = n_carry + i;
    ids[j] = id;
    times[j] = full_times->Value(i);
  }
  arrow::Int64Builder ib, tb;
  ARROW_RETURN_NOT_OK(ib.AppendValues(ids));
  ARROW_RETURN_NOT_OK(tb.AppendValues(times));
  ARROW_RETURN_NOT_OK(ib.Finish(&ev.ids));
  ARROW_RETURN_NOT_OK(tb.Finish(&ev.times));
  return ev;
}

// `carried` followed by `chunk`, in the events' order.
Result<std::shared_ptr<arrow::Array>> InEventOrder(const WindowEvents& ev,
                                                   const std::shared_ptr<arrow::Array>& carried,
                                                   const std::shared_ptr<arrow::Array>& chunk) {
  if (ev.order.empty()) return chunk;
  if (!carried->type()->Equals(*chunk->type())) {
    return arrow::Status::Invalid("the source's column types changed between chunks: ",
                                  carried->type()->ToString(), " then ",
                                  chunk->type()->ToString());
  }
  ARROW_ASSIGN_OR_RAISE(auto both, arrow::Concatenate({carried, chunk}));
  ARROW_ASSIGN_OR_RAISE(auto order, Int64ArrayOf(ev.order));
  ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(*both, *order));
  return taken;
}

// A pushed-down feature's column, as the engine's type (PostgreSQL's int4 is
// the engine's int64, its timestamp a timestamp[us, UTC]).
Result<std::shared_ptr<arrow::Array>> PushedDownValues(const arrow::RecordBatch& batch,
                                                       const PlannedFeature& p) {
  auto values = batch.GetColumnByName(p.source_column);
  if (values == nullptr) {
    return Internal("the source did not compute column '" + p.source_column + "'");
  }
  const auto& type = p.expression->type();
  if (values->type()->Equals(*type)) return values;
  if (values->type_id() == arrow::Type::TIMESTAMP && type->id() == arrow::Type::TIMESTAMP) {
    auto data = values->data()->Copy();
    data->type = type;
    return arrow::MakeArray(data);
  }
  ARROW_ASSIGN_OR_RAISE(auto cast, cp::Cast(*values, type));
  return cast;
}

}  // namespace

int64_t WindowCarry::num_rows() const { return times ? times->length() : 0; }

Result<ComputedFeatures> ComputeFeatures(const FeaturePlan& plan,
                                         const std::shared_ptr<arrow::Table>& source,
                                         TimestampMicros start, TimestampMicros end,
                                         TimestampMicros clock, TimestampMicros created_time,
                                         WindowCarry* carry) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  const FeatureSet& fs = plan.feature_set;
  const WindowCarry* carried = carry && carry->until == start && carry->num_rows() > 0 ? carry
                                                                                      : nullptr;
  // 1. Sort by entity key, then event time (then created time): windows and
  //    the offline layout rely on it.
  std::vector<std::string> time_columns{fs.timestamp_field};
  if (!fs.created_timestamp_field.empty()) time_columns.push_back(fs.created_timestamp_field);
  ARROW_ASSIGN_OR_RAISE(auto combined, source->CombineChunksToBatch());
  ARROW_ASSIGN_OR_RAISE(auto indices,
                        EntityTimeOrder(*combined, plan.key_columns, time_columns));
  ARROW_ASSIGN_OR_RAISE(auto sorted_datum, cp::Take(combined, indices));
  auto full = sorted_datum.record_batch();
  const int64_t full_rows = full->num_rows();

  ARROW_ASSIGN_OR_RAISE(auto full_groups, GroupIds(*full, plan.key_columns));
  auto full_times = TimestampsAsInt64(full->GetColumnByName(fs.timestamp_field));

  // Rows whose features are computed: those of the range, and, for entities
  // seen only in the look-back, their last row (the online store gets it).
  // The other look-back rows only feed the windows, which read the full
  // arrays; skipping them halves the row work of a chunk with a look-back.
  arrow::Int64Builder needed_builder;
  ARROW_RETURN_NOT_OK(needed_builder.Reserve(full_rows));
  for (int64_t i = 0; i < full_rows; ++i) {
    TimestampMicros t = full_times->Value(i);
    bool last_of_group = i + 1 == full_rows || full_groups->Value(i + 1) != full_groups->Value(i);
    if ((t >= start && t < end) || (t < start && last_of_group)) needed_builder.UnsafeAppend(i);
  }
  ARROW_ASSIGN_OR_RAISE(auto needed, needed_builder.Finish());
  std::shared_ptr<arrow::RecordBatch> batch = full;
  std::shared_ptr<arrow::Int64Array> groups = full_groups, times = full_times;
  const bool subset = needed->length() < full_rows;
  if (subset) {
    ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(full, needed));
    batch = taken.record_batch();
    ARROW_ASSIGN_OR_RAISE(auto g, cp::Take(*full_groups, *needed));
    groups = std::static_pointer_cast<arrow::Int64Array>(g);
    times = TimestampsAsInt64(batch->GetColumnByName(fs.timestamp_field));
  }
  const int64_t n = batch->num_rows();
  if (carried && full_rows > 0) {
    auto [min_time, max_time] = std::minmax_element(full_times->raw_values(),
                                                    full_times->raw_values() + full_rows);
    (void)max_time;
    if (*min_time < start) {
      return arrow::Status::Invalid("source rows before the chunk's start given with a carry");
    }
  }
  ARROW_ASSIGN_OR_RAISE(WindowEvents events,
                        MakeWindowEvents(plan, carried, *full, full_groups, full_times));

  // 2. Features, in plan order.
  EvalContext ctx;
  ctx.clock = clock;
  std::map<std::string, std::shared_ptr<arrow::Array>> computed;
  // Window arguments over all events, kept for the online values at `end`
  // and the carry.
  std::map<std::string, std::shared_ptr<arrow::Array>> window_arguments;
  size_t window_index = 0;
  auto visible_batch = [&]() {
    std::vector<std::shared_ptr<arrow::Field>> fields;
    std::vector<std::shared_ptr<arrow::Array>> arrays;
    for (const auto& [name, array] : computed) {
      fields.push_back(arrow::field(name, array->type()));
      arrays.push_back(array);
    }
    for (int i = 0; i < batch->num_columns(); ++i) {
      if (computed.count(batch->schema()->field(i)->name())) continue;
      fields.push_back(batch->schema()->field(i));
      arrays.push_back(batch->column(i));
    }
    return arrow::RecordBatch::Make(arrow::schema(fields), n, arrays);
  };
  for (const PlannedFeature& p : plan.features) {
    std::shared_ptr<arrow::Array> values;
    switch (p.kind) {
      case PlannedFeature::Kind::kColumn:
        values = batch->GetColumnByName(p.feature.name);
        break;
      case PlannedFeature::Kind::kScalar: {
        if (!p.source_column.empty()) {
          // Computed by the source (pushdown): the engine's type, same values.
          auto r = PushedDownValues(*batch, p);
          if (!r.ok()) return FeatureError(p.feature, r.status());
          values = *r;
          break;
        }
        auto r = p.expression->Evaluate(*batch, ctx);
        if (!r.ok()) return FeatureError(p.feature, r.status());
        values = *r;
        break;
      }
      case PlannedFeature::Kind::kWindow: {
        std::shared_ptr<arrow::Array> argument;
        if (p.expression) {
          auto r = p.expression->Evaluate(*full, ctx);
          if (!r.ok()) return FeatureError(p.feature, r.status());
          argument = *r;
        } else {
          ARROW_ASSIGN_OR_RAISE(argument, arrow::MakeArrayOfNull(arrow::null(), full_rows));
        }
        if (carried) {
          auto in_order = InEventOrder(events, carried->arguments.at(window_index), argument);
          if (!in_order.ok()) return FeatureError(p.feature, in_order.status());
          argument = *in_order;
        }
        ++window_index;
        window_arguments[p.feature.name] = argument;
        // The value at each row's own time: its frame holds all its peers,
        // as WindowAtEvents has it, over the carried events too.
        auto r = WindowAtTimes(*p.window, *events.ids, *events.times, argument, *groups, *times);
        if (!r.ok()) return FeatureError(p.feature, r.status());
        values = *r;
        break;
      }
      case PlannedFeature::Kind::kDerived: {
        auto r = p.expression->Evaluate(*visible_batch(), ctx);
        if (!r.ok()) return FeatureError(p.feature, r.status());
        values = *r;
        break;
      }
    }
    computed[p.feature.name] = values;
  }

  // 3. Validation and the on_invalid policy. Only rows of this run's range
  //    count in the report and can fail the run; the look-back rows were
  //    checked by the runs that wrote them.
  ComputedFeatures out;
  std::vector<bool> in_range(n), drop(n, false), nulled(n, false);
  for (int64_t i = 0; i < n; ++i) in_range[i] = times->Value(i) >= start && times->Value(i) < end;
  std::map<std::string, std::shared_ptr<arrow::Array>> checked;
  for (const PlannedFeature& p : plan.features) {
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p.feature, computed[p.feature.name]));
    std::vector<bool> null_rows(n, false);
    bool any_null = false;
    for (const RuleViolations& v : col.violations) {
      QualityCounter counter;
      for (int64_t row : v.rows) {
        // A value that must not be null cannot be nulled: its row goes.
        bool not_null = p.feature.validation_rules.not_null.value_or(false);
        if (fs.on_invalid == "drop" || v.rule == "not_null" ||
            (fs.on_invalid == "null" && not_null)) {
          drop[row] = true;
        } else if (fs.on_invalid == "null") {
          null_rows[row] = any_null = true;
          nulled[row] = true;
        }
        if (!in_range[row]) continue;
        ++counter.count;
        if (counter.samples.size() < kSamplesPerRule) {
          json::object sample;
          for (const auto& k : plan.key_columns) {
            sample[k] = ScalarToJson(batch->GetColumnByName(k), row);
          }
          sample["event_timestamp"] = FormatTimestamp(times->Value(row));
          sample["value"] = ScalarToJson(computed[p.feature.name], row);
          counter.samples.emplace_back(std::move(sample));
        }
      }
      if (counter.count == 0) continue;
      json::value& slot = out.quality_report[p.feature.name];
      if (!slot.is_object()) slot.emplace_object();
      slot.as_object()[v.rule] = json::object{{"count", counter.count},
                                            {"samples", std::move(counter.samples)}};
      if (fs.on_invalid == "fail") out.failed_validation = true;
    }
    if (any_null) {
      ARROW_ASSIGN_OR_RAISE(col.values, NullRows(col.values, null_rows));
    }
    checked[p.feature.name] = col.values;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (in_range[i] && (drop[i] || nulled[i])) ++out.rows_rejected;
  }

  // 4. Output columns: keys, event_timestamp, created_timestamp, features,
  //    clock inputs.
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& k : plan.key_columns) {
    fields.push_back(arrow::field(k, batch->GetColumnByName(k)->type()));
    arrays.push_back(batch->GetColumnByName(k));
  }
  fields.push_back(arrow::field("event_timestamp", kTimestampUtc));
  arrays.push_back(batch->GetColumnByName(fs.timestamp_field));
  fields.push_back(arrow::field("created_timestamp", kTimestampUtc));
  if (!fs.created_timestamp_field.empty()) {
    arrays.push_back(batch->GetColumnByName(fs.created_timestamp_field));
  } else {
    auto created = std::make_shared<arrow::TimestampScalar>(created_time, kTimestampUtc);
    ARROW_ASSIGN_OR_RAISE(auto filled, arrow::MakeArrayFromScalar(*created, n));
    arrays.push_back(filled);
  }
  for (const PlannedFeature& p : plan.features) {
    fields.push_back(arrow::field(p.feature.name, checked[p.feature.name]->type()));
    arrays.push_back(checked[p.feature.name]);
  }
  for (const auto& c : plan.clock_inputs) {
    fields.push_back(arrow::field(std::string(kClockInputPrefix) + c, batch->GetColumnByName(c)->type()));
    arrays.push_back(batch->GetColumnByName(c));
  }
  auto all = arrow::RecordBatch::Make(arrow::schema(fields), n, arrays);

  // Offline: the run's range, minus dropped rows (no copy when that is all
  // of them, the usual case for a chunk after the first).
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += in_range[i] && !drop[i];
  if (kept == n) {
    ARROW_ASSIGN_OR_RAISE(out.offline, arrow::Table::FromRecordBatches({all}));
  } else {
    arrow::BooleanBuilder keep_builder;
    ARROW_RETURN_NOT_OK(keep_builder.Reserve(n));
    for (int64_t i = 0; i < n; ++i) keep_builder.UnsafeAppend(in_range[i] && !drop[i]);
    ARROW_ASSIGN_OR_RAISE(auto keep, keep_builder.Finish());
    ARROW_ASSIGN_OR_RAISE(auto offline, cp::Filter(all, keep));
    ARROW_ASSIGN_OR_RAISE(out.offline, arrow::Table::FromRecordBatches({offline.record_batch()}));
  }

  // Online: the last kept row of each entity (event time < end) -- of this
  // chunk, else the carried one of an entity still in the look-back -- with
  // the windowed features evaluated at `end`. Rows in event id order.
  std::vector<int64_t> chunk_pick(static_cast<size_t>(events.num_ids), -1);
  for (int64_t i = 0; i < n; ++i) {
    if (!drop[i] && times->Value(i) < end) chunk_pick[groups->Value(i)] = i;
  }
  std::vector<int64_t> carry_pick(static_cast<size_t>(events.num_ids), -1);
  if (carried) {
    // Before the run's last chunk, an entity without events of its own here
    // is rewritten only when its windows empty (its last event leaves the
    // longest window): the values in between are superseded anyway, and the
    // last chunk rewrites every entity still in the look-back.
    const bool last_chunk = end >= carried->run_end;
    const int64_t n_carry = carried->num_rows();
    for (int64_t i = 0; i < n_carry; ++i) {
      const int64_t k = carried->groups->Value(i);
      if (i + 1 < n_carry && carried->groups->Value(i + 1) == k) continue;  // not its last event
      if (last_chunk || carried->times->Value(i) < end - plan.max_window_micros) {
        carry_pick[events.carry_group_id[k]] = carried->last_row_of_group[k];
      }
    }
  }
  std::vector<int64_t> from_chunk, from_carry, online_ids, online_order;
  for (int64_t id = 0; id < events.num_ids; ++id) {
    if (chunk_pick[id] >= 0) {
      online_order.push_back(static_cast<int64_t>(from_chunk.size()));
      from_chunk.push_back(chunk_pick[id]);
    } else if (carry_pick[id] >= 0) {
      online_order.push_back(-1 - static_cast<int64_t>(from_carry.size()));
      from_carry.push_back(carry_pick[id]);
    } else {
      continue;
    }
    online_ids.push_back(id);
  }
  ARROW_ASSIGN_OR_RAISE(auto chunk_take, Int64ArrayOf(from_chunk));
  ARROW_ASSIGN_OR_RAISE(auto online_datum, cp::Take(all, chunk_take));
  auto online = online_datum.record_batch();
  if (!from_carry.empty()) {
    ARROW_ASSIGN_OR_RAISE(auto carry_take, Int64ArrayOf(from_carry));
    ARROW_ASSIGN_OR_RAISE(auto carried_datum, cp::Take(carried->last_rows, carry_take));
    auto carried_rows = carried_datum.record_batch();
    if (!carried_rows->schema()->Equals(*online->schema())) {
      return arrow::Status::Invalid("the source's column types changed between chunks");
    }
    ARROW_ASSIGN_OR_RAISE(auto both, arrow::Table::FromRecordBatches({online, carried_rows}));
    ARROW_ASSIGN_OR_RAISE(auto combined_rows, both->CombineChunksToBatch());
    const int64_t n_chunk = static_cast<int64_t>(from_chunk.size());
    for (auto& o : online_order) o = o >= 0 ? o : n_chunk + (-1 - o);
    ARROW_ASSIGN_OR_RAISE(auto order, Int64ArrayOf(online_order));
    ARROW_ASSIGN_OR_RAISE(auto ordered, cp::Take(combined_rows, order));
    online = ordered.record_batch();
  }
  ARROW_ASSIGN_OR_RAISE(auto query_groups, Int64ArrayOf(online_ids));
  ARROW_ASSIGN_OR_RAISE(auto query_times,
                        Int64ArrayOf(std::vector<int64_t>(online_ids.size(), end)));
  for (const PlannedFeature& p : plan.features) {
    if (p.kind != PlannedFeature::Kind::kWindow) continue;
    ARROW_ASSIGN_OR_RAISE(
        auto at_end, WindowAtTimes(*p.window, *events.ids, *events.times,
                                   window_arguments[p.feature.name], *query_groups, *query_times));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p.feature, at_end));
    int index = online->schema()->GetFieldIndex(p.feature.name);
    ARROW_ASSIGN_OR_RAISE(online, online->SetColumn(index, online->schema()->field(index), col.values));
  }

  // The carry for the chunk starting at `end`: events in [end - W, end) and
  // those entities' latest kept rows.
  if (carry) {
    WindowCarry next;
    next.until = end;
    next.run_end = carry->run_end;
    if (plan.max_window_micros > 0) {
      const TimestampMicros lo = end - plan.max_window_micros;
      std::vector<int64_t> kept, kept_rows, group_of_kept, kept_group_ids;
      const int64_t n_events = events.times->length();
      for (int64_t j = 0; j < n_events; ++j) {
        TimestampMicros t = events.times->Value(j);
        if (t < lo || t >= end) continue;
        int64_t id = events.ids->Value(j);
        if (kept_group_ids.empty() || kept_group_ids.back() != id) kept_group_ids.push_back(id);
        kept.push_back(j);
        kept_rows.push_back(events.order.empty() ? j : events.order[j]);
        group_of_kept.push_back(static_cast<int64_t>(kept_group_ids.size()) - 1);
      }
      ARROW_ASSIGN_OR_RAISE(auto kept_index, Int64ArrayOf(kept));
      ARROW_ASSIGN_OR_RAISE(auto row_index, Int64ArrayOf(kept_rows));
      for (size_t c = 0; c < plan.key_columns.size(); ++c) {
        std::shared_ptr<arrow::Array> keys = full->GetColumnByName(plan.key_columns[c]);
        if (carried) {
          if (!carried->keys[c]->type()->Equals(*keys->type())) {
            return arrow::Status::Invalid("the type of key column '", plan.key_columns[c],
                                          "' changed between chunks");
          }
          ARROW_ASSIGN_OR_RAISE(keys, arrow::Concatenate({carried->keys[c], keys}));
        }
        ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(*keys, *row_index));
        next.keys.push_back(taken);
      }
      ARROW_ASSIGN_OR_RAISE(auto kept_times, cp::Take(*events.times, *kept_index));
      next.times = std::static_pointer_cast<arrow::Int64Array>(kept_times);
      ARROW_ASSIGN_OR_RAISE(next.groups, Int64ArrayOf(group_of_kept));
      for (const PlannedFeature& p : plan.features) {
        if (p.kind != PlannedFeature::Kind::kWindow) continue;
        ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(*window_arguments[p.feature.name], *kept_index));
        next.arguments.push_back(taken);
      }
      // Both lists are in id order: match them with two pointers.
      std::vector<int64_t> last_take;
      next.last_row_of_group.assign(kept_group_ids.size(), -1);
      size_t o = 0;
      for (size_t k = 0; k < kept_group_ids.size(); ++k) {
        while (o < online_ids.size() && online_ids[o] < kept_group_ids[k]) ++o;
        if (o < online_ids.size() && online_ids[o] == kept_group_ids[k]) {
          next.last_row_of_group[k] = static_cast<int64_t>(last_take.size());
          last_take.push_back(static_cast<int64_t>(o));
        }
      }
      ARROW_ASSIGN_OR_RAISE(auto last_index, Int64ArrayOf(last_take));
      ARROW_ASSIGN_OR_RAISE(auto last_rows, cp::Take(online, last_index));
      next.last_rows = last_rows.record_batch();
    }
    *carry = std::move(next);
  }
  ARROW_ASSIGN_OR_RAISE(out.online, arrow::Table::FromRecordBatches({online}));
  return out;
}

}  // namespace fstore
