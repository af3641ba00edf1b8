#include "fstore/materialize/feature_pipeline.h"

#include <algorithm>
#include <map>
#include <set>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <boost/json/value_from.hpp>

#include "fstore/core/compute_init.h"
#include "fstore/core/entity_time_order.h"
#include "fstore/materialize/feature_validation.h"

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
  auto schema = NormalisedSchema(fs, source_schema);
  auto require_column = [&](const std::string& column, const std::string& field) -> Status {
    if (schema->GetFieldIndex(column) < 0) {
      return Unprocessable(field, "column '" + column + "' is not in the source");
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

Result<std::shared_ptr<arrow::Int64Array>> AsMicros(const std::shared_ptr<arrow::Array>& ts) {
  auto data = ts->data()->Copy();
  data->type = arrow::int64();
  return std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
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

}  // namespace

Result<ComputedFeatures> ComputeFeatures(const FeaturePlan& plan,
                                         const std::shared_ptr<arrow::Table>& source,
                                         TimestampMicros start, TimestampMicros end,
                                         TimestampMicros clock, TimestampMicros created_time) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  const FeatureSet& fs = plan.feature_set;
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
  ARROW_ASSIGN_OR_RAISE(auto full_times, AsMicros(full->GetColumnByName(fs.timestamp_field)));

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
    ARROW_ASSIGN_OR_RAISE(times, AsMicros(batch->GetColumnByName(fs.timestamp_field)));
  }
  const int64_t n = batch->num_rows();

  // 2. Features, in plan order.
  EvalContext ctx;
  ctx.clock = clock;
  std::map<std::string, std::shared_ptr<arrow::Array>> computed;
  // Window arguments over all rows, kept for the online values at `end`.
  std::map<std::string, std::shared_ptr<arrow::Array>> window_arguments;
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
        window_arguments[p.feature.name] = argument;
        auto r = WindowAtEvents(*p.window, *full_groups, *full_times, argument);
        if (!r.ok()) return FeatureError(p.feature, r.status());
        values = *r;
        if (subset) {
          ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(*values, *needed));
          values = taken;
        }
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

  // Offline: the run's range, minus dropped rows.
  arrow::BooleanBuilder keep_builder;
  ARROW_RETURN_NOT_OK(keep_builder.Reserve(n));
  for (int64_t i = 0; i < n; ++i) keep_builder.UnsafeAppend(in_range[i] && !drop[i]);
  ARROW_ASSIGN_OR_RAISE(auto keep, keep_builder.Finish());
  ARROW_ASSIGN_OR_RAISE(auto offline, cp::Filter(all, keep));
  ARROW_ASSIGN_OR_RAISE(out.offline, arrow::Table::FromRecordBatches({offline.record_batch()}));

  // Online: the last kept row of each entity (event time < end), with the
  // windowed features evaluated at `end`.
  std::vector<int64_t> last_rows;
  std::vector<int64_t> last_groups;
  for (int64_t i = 0; i < n; ++i) {
    if (drop[i] || times->Value(i) >= end) continue;
    if (!last_groups.empty() && last_groups.back() == groups->Value(i)) {
      last_rows.back() = i;
    } else {
      last_rows.push_back(i);
      last_groups.push_back(groups->Value(i));
    }
  }
  arrow::Int64Builder take_builder;
  // (An empty vector's data() may be null, and memcpy(null, 0) is UB.)
  if (!last_rows.empty()) ARROW_RETURN_NOT_OK(take_builder.AppendValues(last_rows));
  ARROW_ASSIGN_OR_RAISE(auto take, take_builder.Finish());
  ARROW_ASSIGN_OR_RAISE(auto online_datum, cp::Take(all, take));
  auto online = online_datum.record_batch();
  arrow::Int64Builder qg, qt;
  if (!last_groups.empty()) ARROW_RETURN_NOT_OK(qg.AppendValues(last_groups));
  for (size_t i = 0; i < last_groups.size(); ++i) ARROW_RETURN_NOT_OK(qt.Append(end));
  ARROW_ASSIGN_OR_RAISE(auto query_groups, qg.Finish());
  ARROW_ASSIGN_OR_RAISE(auto query_times, qt.Finish());
  for (const PlannedFeature& p : plan.features) {
    if (p.kind != PlannedFeature::Kind::kWindow) continue;
    ARROW_ASSIGN_OR_RAISE(
        auto at_end,
        WindowAtTimes(*p.window, *full_groups, *full_times, window_arguments[p.feature.name],
                      static_cast<const arrow::Int64Array&>(*query_groups),
                      static_cast<const arrow::Int64Array&>(*query_times)));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p.feature, at_end));
    int index = online->schema()->GetFieldIndex(p.feature.name);
    ARROW_ASSIGN_OR_RAISE(online, online->SetColumn(index, online->schema()->field(index), col.values));
  }
  ARROW_ASSIGN_OR_RAISE(out.online, arrow::Table::FromRecordBatches({online}));
  return out;
}

}  // namespace fstore
