#include "fstore/service/historical_serving.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/compute/api.h>
#include <arrow/ipc/reader.h>
#include <arrow/ipc/writer.h>
#include <parquet/arrow/reader.h>

#include "fstore/compute/source_schema.h"
#include "fstore/core/columns.h"
#include "fstore/core/json_text.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/materialize/feature_validation.h"
#include "fstore/materialize/source_reader.h"
#include "fstore/retrieval/point_in_time_join.h"
#include "fstore/service/feature_store.h"

namespace fstore {
namespace json = boost::json;
namespace cp = arrow::compute;

namespace {

const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

using RequestedSet = FeatureSelection::Set;

Result<std::vector<std::string>> StringList(const json::object& body, const char* field) {
  const json::value* v = body.if_contains(field);
  if (!v) return InvalidArgument(field, "is required");
  if (!v->is_array()) return InvalidArgument(field, "must be an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < v->as_array().size(); ++i) {
    const json::value& item = v->as_array()[i];
    if (!item.is_string() || item.as_string().empty()) {
      return InvalidArgument(std::string(field) + "[" + std::to_string(i) + "]",
                             "must be a non-empty string");
    }
    out.emplace_back(item.as_string());
  }
  if (out.empty()) return InvalidArgument(field, "must name at least one");
  return out;
}

// `field`: where the request named it. An unknown set listed in
// feature_sets is a resource not found (404); one in a feature's name
// ("set:feature") makes that name unknown (400).
Result<RequestedSet> LoadSet(FeatureStore* store, const std::string& ref,
                             const std::string& field) {
  ARROW_ASSIGN_OR_RAISE(auto fs, store->registry()->FindFeatureSet(ref, false));
  if (!fs && field.starts_with("features")) {
    return InvalidArgument(field, "unknown feature: feature set '" + ref + "' not found");
  }
  if (!fs) return MakeError(ErrorCode::kNotFound, "feature set '" + ref + "' not found", field);
  if (!fs->offline_enabled) {
    return Unprocessable("feature_sets", "feature set '" + fs->name +
                                             "' has offline_enabled false: it keeps no history "
                                             "to retrieve");
  }
  if (!fs->source || (fs->source->type != "file" && fs->source->type != "postgres")) {
    return Unprocessable("feature_sets", "feature set '" + fs->name +
                                             "' has no file or postgres source (push sources "
                                             "come with a later issue)");
  }
  RequestedSet set;
  set.feature_set = *fs;
  ARROW_ASSIGN_OR_RAISE(set.features, store->FeaturesOf(*fs));
  if (set.features.empty()) {
    return Unprocessable("feature_sets", "feature set '" + fs->name + "' has no features");
  }
  auto schema = RequireSourceSchema(*fs->source);
  if (!schema.ok()) {
    return Unprocessable("feature_sets", "the source of feature set '" + fs->name +
                                             "' cannot be read (" +
                                             ErrorMessageOf(schema.status()) + ")");
  }
  ARROW_ASSIGN_OR_RAISE(auto entities, store->registry()->ListEntities());
  auto plan = PlanMaterialization(*fs, set.features, entities, *schema);
  if (!plan.ok()) {
    return Unprocessable("feature_sets", "feature set '" + fs->name +
                                             "' cannot be planned: " + ErrorMessageOf(plan.status()));
  }
  set.plan = std::move(*plan);
  for (const auto& name : fs->entities) {
    for (const auto& e : entities) {
      if (e.name != name) continue;
      for (const auto& k : e.join_keys) set.key_types.emplace(k, e.value_type);
    }
  }
  return set;
}

// The entity_df as JSON: its columns and rows, checked for shape.
struct EntityFrame {
  std::vector<std::string> columns;
  const json::array* data = nullptr;
  int time_column = -1;
};

Result<EntityFrame> ParseEntityFrame(const json::object& body) {
  const json::value* v = body.if_contains("entity_df");
  if (!v) return InvalidArgument("entity_df", "is required");
  if (!v->is_object()) {
    return InvalidArgument("entity_df", "must be an object {\"columns\": [...], \"data\": [[...]]}");
  }
  const json::object& df = v->as_object();
  EntityFrame frame;
  const json::value* cols = df.if_contains("columns");
  if (!cols || !cols->is_array() || cols->as_array().empty()) {
    return InvalidArgument("entity_df.columns", "must be a non-empty array of column names");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < cols->as_array().size(); ++i) {
    const auto& c = cols->as_array()[i];
    if (!c.is_string() || c.as_string().empty()) {
      return InvalidArgument("entity_df.columns[" + std::to_string(i) + "]",
                             "must be a non-empty string");
    }
    std::string name(c.as_string());
    if (!seen.insert(name).second) {
      return InvalidArgument("entity_df.columns", "column '" + name + "' appears twice");
    }
    frame.columns.push_back(name);
  }
  const json::value* data = df.if_contains("data");
  if (!data || !data->is_array()) {
    return InvalidArgument("entity_df.data", "must be an array of rows (arrays)");
  }
  frame.data = &data->as_array();
  for (size_t r = 0; r < frame.data->size(); ++r) {
    const auto& row = (*frame.data)[r];
    if (!row.is_array()) {
      return InvalidArgument("entity_df.data[" + std::to_string(r) + "]", "must be an array");
    }
    if (row.as_array().size() != frame.columns.size()) {
      return InvalidArgument("entity_df.data[" + std::to_string(r) + "]",
                             "has " + std::to_string(row.as_array().size()) + " values for " +
                                 std::to_string(frame.columns.size()) + " columns");
    }
  }
  for (const char* name : {kEventTimestampColumn, "timestamp"}) {
    auto it = std::find(frame.columns.begin(), frame.columns.end(), name);
    if (it != frame.columns.end()) {
      frame.time_column = static_cast<int>(it - frame.columns.begin());
      break;
    }
  }
  if (frame.time_column < 0) {
    return InvalidArgument("entity_df.columns",
                           "an 'event_timestamp' column (or 'timestamp') with each row's time "
                           "is required");
  }
  return frame;
}

std::string CellField(size_t row, size_t column, const std::string& name) {
  return "entity_df.data[" + std::to_string(row) + "][" + std::to_string(column) + "] (" + name +
         ")";
}

Result<std::shared_ptr<arrow::Array>> KeyColumn(const EntityFrame& frame, size_t c,
                                                const std::string& type) {
  const std::string& name = frame.columns[c];
  if (type == "int") {
    arrow::Int64Builder b;
    for (size_t r = 0; r < frame.data->size(); ++r) {
      const json::value& v = (*frame.data)[r].as_array()[c];
      int64_t x = 0;
      if (v.is_int64()) {
        x = v.as_int64();
      } else if (v.is_uint64() && v.as_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
        x = static_cast<int64_t>(v.as_uint64());
      } else if (v.is_string()) {
        std::string_view s = v.as_string();
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
        if (ec != std::errc() || p != s.data() + s.size() || s.empty()) {
          return InvalidArgument(CellField(r, c, name), "'" + std::string(s) +
                                                            "' is not an integer join key");
        }
      } else {
        return InvalidArgument(CellField(r, c, name), "must be an integer join key, not " +
                                                          SerializeJson(v));
      }
      ARROW_RETURN_NOT_OK(b.Append(x));
    }
    return b.Finish();
  }
  arrow::StringBuilder b;
  for (size_t r = 0; r < frame.data->size(); ++r) {
    const json::value& v = (*frame.data)[r].as_array()[c];
    if (v.is_string()) {
      ARROW_RETURN_NOT_OK(b.Append(std::string_view(v.as_string())));
    } else if (v.is_int64() || v.is_uint64()) {
      ARROW_RETURN_NOT_OK(b.Append(SerializeJson(v)));
    } else {
      return InvalidArgument(CellField(r, c, name), "must be a string join key, not " +
                                                        SerializeJson(v));
    }
  }
  return b.Finish();
}

Result<std::shared_ptr<arrow::Array>> TimeColumn(const EntityFrame& frame) {
  const size_t c = static_cast<size_t>(frame.time_column);
  arrow::TimestampBuilder b(kTimestampUtc, arrow::default_memory_pool());
  for (size_t r = 0; r < frame.data->size(); ++r) {
    const json::value& v = (*frame.data)[r].as_array()[c];
    if (!v.is_string()) {
      return InvalidArgument(CellField(r, c, frame.columns[c]),
                             "must be an ISO 8601 timestamp string, not " + SerializeJson(v));
    }
    auto t = ParseTimestamp(v.as_string());
    if (!t.ok()) {
      return InvalidArgument(CellField(r, c, frame.columns[c]),
                             "'" + std::string(v.as_string()) + "' is not a timestamp: " +
                                 ErrorMessageOf(t.status()));
    }
    ARROW_RETURN_NOT_OK(b.Append(*t));
  }
  return b.Finish();
}

// A pass-through column: int64, float64, bool or utf8 by its JSON values
// (nulls allowed; mixed kinds become their JSON text).
Result<std::shared_ptr<arrow::Array>> OtherColumn(const EntityFrame& frame, size_t c) {
  bool all_int = true, all_num = true, all_bool = true, all_str = true;
  for (size_t r = 0; r < frame.data->size(); ++r) {
    const json::value& v = (*frame.data)[r].as_array()[c];
    if (v.is_null()) continue;
    all_int = all_int && v.is_int64();
    all_num = all_num && v.is_number();
    all_bool = all_bool && v.is_bool();
    all_str = all_str && v.is_string();
  }
  auto each = [&](auto&& append) -> Status {
    for (size_t r = 0; r < frame.data->size(); ++r) {
      ARROW_RETURN_NOT_OK(append((*frame.data)[r].as_array()[c]));
    }
    return Status::OK();
  };
  if (all_int) {
    arrow::Int64Builder b;
    ARROW_RETURN_NOT_OK(each([&](const json::value& v) {
      return v.is_null() ? b.AppendNull() : b.Append(v.as_int64());
    }));
    return b.Finish();
  }
  if (all_num) {
    arrow::DoubleBuilder b;
    ARROW_RETURN_NOT_OK(each([&](const json::value& v) {
      return v.is_null() ? b.AppendNull() : b.Append(v.to_number<double>());
    }));
    return b.Finish();
  }
  if (all_bool) {
    arrow::BooleanBuilder b;
    ARROW_RETURN_NOT_OK(each([&](const json::value& v) {
      return v.is_null() ? b.AppendNull() : b.Append(v.as_bool());
    }));
    return b.Finish();
  }
  arrow::StringBuilder b;
  ARROW_RETURN_NOT_OK(each([&](const json::value& v) {
    if (v.is_null()) return b.AppendNull();
    if (all_str) return b.Append(std::string_view(v.as_string()));
    return b.Append(v.is_string() ? std::string(v.as_string()) : SerializeJson(v));
  }));
  return b.Finish();
}

json::value CellToJson(const arrow::Array& array, int64_t row) {
  if (array.IsNull(row)) return nullptr;
  switch (array.type_id()) {
    case arrow::Type::INT64: return static_cast<const arrow::Int64Array&>(array).Value(row);
    case arrow::Type::INT32: return static_cast<const arrow::Int32Array&>(array).Value(row);
    case arrow::Type::DOUBLE: {
      double d = static_cast<const arrow::DoubleArray&>(array).Value(row);
      if (!std::isfinite(d)) return nullptr;
      return d;
    }
    case arrow::Type::FLOAT: {
      double d = static_cast<const arrow::FloatArray&>(array).Value(row);
      if (!std::isfinite(d)) return nullptr;
      return d;
    }
    case arrow::Type::BOOL: return static_cast<const arrow::BooleanArray&>(array).Value(row);
    case arrow::Type::STRING:
      return json::value(static_cast<const arrow::StringArray&>(array).GetView(row));
    case arrow::Type::LARGE_STRING:
      return json::value(static_cast<const arrow::LargeStringArray&>(array).GetView(row));
    case arrow::Type::TIMESTAMP:
      return json::value(FormatTimestamp(static_cast<const arrow::TimestampArray&>(array).Value(row)));
    case arrow::Type::LIST: {
      const auto& list = static_cast<const arrow::ListArray&>(array);
      auto values = list.values();
      json::array out;
      for (int64_t i = list.value_offset(row); i < list.value_offset(row + 1); ++i) {
        out.push_back(CellToJson(*values, i));
      }
      return out;
    }
    default: {
      auto scalar = array.GetScalar(row);
      return scalar.ok() ? json::value((*scalar)->ToString()) : json::value(nullptr);
    }
  }
}

}  // namespace

std::vector<FeatureSelection::JoinKey> FeatureSelection::JoinKeys() const {
  std::vector<JoinKey> keys;
  auto add = [&](const Set& s) {
    for (const auto& k : s.plan.key_columns) {
      bool seen = std::any_of(keys.begin(), keys.end(),
                              [&](const JoinKey& j) { return j.column == k; });
      if (seen) continue;
      keys.push_back({k, s.key_types.count(k) ? s.key_types.at(k) : "string",
                      s.feature_set.name});
    }
  };
  for (const auto& s : sets) {
    add(s);
    for (const auto& d : s.derived) {
      for (const auto& in : d.inputs) add(*in.set);
    }
  }
  return keys;
}

Result<FeatureSelection> ResolveFeatureSelection(FeatureStore* store, const json::object& body,
                                                 const RequestContext& context) {
  FeatureSelection selection;
  std::vector<std::string> set_refs;
  // The field that named each set, for its errors: feature_sets[i], or the
  // first features[i] that names it ("set:feature").
  std::vector<std::string> set_fields;
  if (body.contains("feature_sets")) {
    ARROW_ASSIGN_OR_RAISE(set_refs, StringList(body, "feature_sets"));
    for (size_t i = 0; i < set_refs.size(); ++i) {
      set_fields.push_back("feature_sets[" + std::to_string(i) + "]");
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto feature_refs, StringList(body, "features"));
  if (!body.contains("feature_sets")) {
    // Without feature_sets, every feature names its set ("set:feature"); the
    // sets are those, in order of first mention.
    for (size_t i = 0; i < feature_refs.size(); ++i) {
      const std::string& ref = feature_refs[i];
      size_t colon = ref.find(':');
      if (colon == std::string::npos || colon == 0) {
        return InvalidArgument("feature_sets", "is required when a feature is not named "
                                               "feature_set:feature ('" + ref + "')");
      }
      std::string set = ref.substr(0, colon);
      if (std::find(set_refs.begin(), set_refs.end(), set) == set_refs.end()) {
        set_refs.push_back(std::move(set));
        set_fields.push_back("features[" + std::to_string(i) + "]");
      }
    }
  }
  if (const json::value* v = body.if_contains("as_of"); v && !v->is_null()) {
    if (!v->is_string()) return InvalidArgument("as_of", "must be an ISO 8601 timestamp string");
    auto t = ParseTimestamp(v->as_string());
    if (!t.ok()) {
      return InvalidArgument("as_of", "'" + std::string(v->as_string()) +
                                          "' is not a timestamp: " + ErrorMessageOf(t.status()));
    }
    selection.as_of = *t;
  }
  std::vector<RequestedSet>& sets = selection.sets;
  for (size_t i = 0; i < set_refs.size(); ++i) {
    const std::string& ref = set_refs[i];
    ARROW_ASSIGN_OR_RAISE(RequestedSet set, LoadSet(store, ref, set_fields[i]));
    ARROW_RETURN_NOT_OK(context.principal->CheckFeatureSet(set.feature_set.name));
    bool dup = std::any_of(sets.begin(), sets.end(), [&](const RequestedSet& s) {
      return s.feature_set.id == set.feature_set.id;
    });
    if (dup) return InvalidArgument("feature_sets", "feature set '" + ref + "' is listed twice");
    sets.push_back(std::move(set));
  }
  // Resolve each feature to (set, name).
  auto has_feature = [](const RequestedSet& s, std::string_view name) {
    return std::any_of(s.features.begin(), s.features.end(),
                       [&](const Feature& f) { return f.name == name; });
  };
  std::set<std::pair<size_t, std::string>> resolved;
  for (size_t i = 0; i < feature_refs.size(); ++i) {
    const std::string& ref = feature_refs[i];
    std::string field = "features[" + std::to_string(i) + "]";
    size_t colon = ref.rfind(':');
    std::vector<size_t> owners;
    std::string name = std::string(FeatureNameOf(ref));
    if (colon != std::string::npos) {
      std::string set_name = ref.substr(0, colon);
      size_t s = 0;
      while (s < sets.size() && sets[s].feature_set.name != set_name && sets[s].feature_set.id != set_name) ++s;
      if (s == sets.size()) {
        return InvalidArgument(field, "feature '" + ref + "': feature set '" + set_name +
                                          "' is not in feature_sets");
      }
      if (!has_feature(sets[s], name)) {
        return InvalidArgument(field, "unknown feature '" + ref + "': feature set '" + set_name +
                                          "' has no feature '" + name + "'");
      }
      owners.push_back(s);
    } else {
      for (size_t s = 0; s < sets.size(); ++s) {
        if (has_feature(sets[s], name)) owners.push_back(s);
      }
      if (owners.empty()) {
        return InvalidArgument(field, "unknown feature '" + ref +
                                          "': no requested feature set has it");
      }
      if (owners.size() > 1) {
        std::string which;
        for (size_t s : owners) which += (which.empty() ? "" : ", ") + sets[s].feature_set.name;
        return InvalidArgument(field, "ambiguous feature '" + ref + "': it is in " + which +
                                          "; name it 'feature_set:" + ref + "'");
      }
    }
    if (!resolved.emplace(owners[0], name).second) {
      return InvalidArgument(field, "feature '" + ref + "' is requested twice");
    }
    sets[owners[0]].wanted.push_back(name);
    sets[owners[0]].output_slot.push_back(i);
  }
  // Derived features over other feature sets: compiled against their
  // inputs, which are retrieved point-in-time like any feature.
  std::map<std::string, std::shared_ptr<const RequestedSet>> input_sets;
  for (auto& set : sets) {
    for (size_t w = 0; w < set.wanted.size();) {
      const std::string name = set.wanted[w];
      const auto& rt = set.plan.read_time_features;
      if (std::find(rt.begin(), rt.end(), name) == rt.end()) {
        ++w;
        continue;
      }
      const Feature& f = *std::find_if(set.features.begin(), set.features.end(),
                                       [&](const Feature& x) { return x.name == name; });
      const std::string field = "features[" + std::to_string(set.output_slot[w]) + "]";
      RequestedSet::Derived d;
      d.feature = f;
      d.output_slot = set.output_slot[w];
      auto parsed = ParseTransformation(f.transformation);
      if (!parsed.ok()) return WithFieldPrefix(parsed.status(), field);
      std::vector<std::shared_ptr<arrow::Field>> fields;
      for (const auto& ref : f.source_features) {
        size_t colon = ref.find(':');
        std::string set_name = colon == std::string::npos ? set.feature_set.name
                                                          : ref.substr(0, colon);
        std::string input(FeatureNameOf(ref));
        std::shared_ptr<const RequestedSet>& in_set = input_sets[set_name];
        if (!in_set) {
          // A requested set is compiled already; another is loaded once.
          auto requested = std::find_if(sets.begin(), sets.end(), [&](const RequestedSet& x) {
            return x.feature_set.name == set_name;
          });
          if (requested != sets.end()) {
            in_set = std::make_shared<const RequestedSet>(*requested);
          } else {
            auto loaded = LoadSet(store, set_name, field);
            if (!loaded.ok()) {
              return Unprocessable(field, "feature '" + name + "': its input '" + ref +
                                              "' cannot be retrieved: " +
                                              ErrorMessageOf(loaded.status()));
            }
            ARROW_RETURN_NOT_OK(context.principal->CheckFeatureSet(loaded->feature_set.name));
            in_set = std::make_shared<const RequestedSet>(std::move(*loaded));
          }
        }
        auto def = std::find_if(in_set->features.begin(), in_set->features.end(),
                                [&](const Feature& x) { return x.name == input; });
        const auto& in_rt = in_set->plan.read_time_features;
        if (def == in_set->features.end() ||
            std::find(in_rt.begin(), in_rt.end(), input) != in_rt.end()) {
          return Unprocessable(field, "feature '" + name + "': its input '" + ref +
                                          "' is not a materialized feature");
        }
        ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(def->data_type));
        fields.push_back(arrow::field(input, type));
        d.inputs.push_back({in_set, input});
      }
      auto compiled = CompiledExpression::Compile(*parsed, arrow::schema(fields));
      if (!compiled.ok()) return WithFieldPrefix(compiled.status(), field);
      d.expression = std::make_shared<const CompiledExpression>(std::move(*compiled));
      set.derived.push_back(std::move(d));
      set.wanted.erase(set.wanted.begin() + static_cast<std::ptrdiff_t>(w));
      set.output_slot.erase(set.output_slot.begin() + static_cast<std::ptrdiff_t>(w));
    }
  }
  selection.feature_refs = std::move(feature_refs);
  if (context.usage) {
    for (const RequestedSet& s : sets) {
      ServingUsage::Set used;
      used.feature_set = s.feature_set.name;
      used.features = s.wanted;
      for (const auto& d : s.derived) used.features.push_back(d.feature.name);
      context.usage->sets.push_back(std::move(used));
    }
  }
  return selection;
}

Result<std::vector<std::shared_ptr<arrow::Array>>> RetrieveFeatureSelection(
    FeatureStore* store, const FeatureSelection& selection,
    const std::shared_ptr<arrow::Int64Array>& times, const EntityKeyColumnFn& key_column) {
  const int64_t rows = times->length();
  std::vector<std::shared_ptr<arrow::Array>> outputs(selection.feature_refs.size());
  for (const auto& s : selection.sets) {
    if (s.wanted.empty()) continue;
    std::vector<std::shared_ptr<arrow::Field>> key_fields;
    std::vector<std::shared_ptr<arrow::Array>> key_arrays;
    for (const auto& k : s.plan.key_columns) {
      std::string type = s.key_types.count(k) ? s.key_types.at(k) : "string";
      ARROW_ASSIGN_OR_RAISE(auto array, key_column(k, type));
      key_fields.push_back(arrow::field(k, array->type()));
      key_arrays.push_back(std::move(array));
    }
    PointInTimeQuery q;
    q.plan = &s.plan;
    q.features = s.wanted;
    q.entity_keys = arrow::RecordBatch::Make(arrow::schema(key_fields), rows, key_arrays);
    q.times = times;
    q.as_of = selection.as_of;
    q.threads = store->options().compute_threads;
    ARROW_ASSIGN_OR_RAISE(auto values, RetrievePointInTime(store->offline_store(), q));
    for (size_t i = 0; i < s.wanted.size(); ++i) outputs[s.output_slot[i]] = values[i];
  }
  // Derived features over other sets: their inputs as of each row, then the
  // expression (a no-match input is its own default, else null).
  for (const auto& s : selection.sets) {
    for (const auto& d : s.derived) {
      std::vector<std::shared_ptr<arrow::Field>> fields;
      std::vector<std::shared_ptr<arrow::Array>> arrays;
      for (const auto& in : d.inputs) {
        std::vector<std::shared_ptr<arrow::Field>> key_fields;
        std::vector<std::shared_ptr<arrow::Array>> key_arrays;
        for (const auto& k : in.set->plan.key_columns) {
          std::string type = in.set->key_types.count(k) ? in.set->key_types.at(k) : "string";
          ARROW_ASSIGN_OR_RAISE(auto array, key_column(k, type));
          key_fields.push_back(arrow::field(k, array->type()));
          key_arrays.push_back(std::move(array));
        }
        PointInTimeQuery q;
        q.plan = &in.set->plan;
        q.features = {in.feature};
        q.entity_keys = arrow::RecordBatch::Make(arrow::schema(key_fields), rows, key_arrays);
        q.times = times;
        q.as_of = selection.as_of;
        q.threads = store->options().compute_threads;
        ARROW_ASSIGN_OR_RAISE(auto values, RetrievePointInTime(store->offline_store(), q));
        fields.push_back(arrow::field(in.feature, values[0]->type()));
        arrays.push_back(values[0]);
      }
      auto batch = arrow::RecordBatch::Make(arrow::schema(fields), rows, arrays);
      // An expression reading the clock sees each entity row's time
      // (ARCHITECTURE.md "Time semantics").
      ARROW_ASSIGN_OR_RAISE(outputs[d.output_slot],
                            EvaluateWithClockAt(*d.expression, batch, *times, d.feature));
    }
  }
  return outputs;
}

Result<std::shared_ptr<arrow::RecordBatch>> ServeHistorical(FeatureStore* store,
                                                            const json::value& body_value,
                                                            const RequestContext& context) {
  if (!body_value.is_object()) return InvalidArgument("", "the request body must be a JSON object");
  const json::object& body = body_value.as_object();
  for (const auto& [key, value] : body) {
    static const std::set<std::string> kKnown{"feature_sets", "entity_df", "features", "as_of"};
    if (!kKnown.count(std::string(key))) {
      return InvalidArgument(std::string(key), "unknown field");
    }
  }
  ARROW_ASSIGN_OR_RAISE(FeatureSelection selection, ResolveFeatureSelection(store, body, context));
  ARROW_ASSIGN_OR_RAISE(EntityFrame frame, ParseEntityFrame(body));

  // The entity_df as typed columns.
  const int64_t rows = static_cast<int64_t>(frame.data->size());
  std::map<std::string, std::string> key_type_of;  // first set that uses a key decides
  for (const auto& key : selection.JoinKeys()) {
    auto it = std::find(frame.columns.begin(), frame.columns.end(), key.column);
    if (it == frame.columns.end()) {
      return InvalidArgument("entity_df.columns", "missing join key column '" + key.column +
                                                      "' of feature set '" + key.feature_set +
                                                      "'");
    }
    key_type_of.emplace(key.column, key.type);
  }
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  std::shared_ptr<arrow::Int64Array> times;
  for (size_t c = 0; c < frame.columns.size(); ++c) {
    const std::string& name = frame.columns[c];
    std::shared_ptr<arrow::Array> array;
    if (static_cast<int>(c) == frame.time_column) {
      ARROW_ASSIGN_OR_RAISE(array, TimeColumn(frame));
      auto data = array->data()->Copy();
      data->type = arrow::int64();
      times = std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
    } else if (key_type_of.count(name)) {
      ARROW_ASSIGN_OR_RAISE(array, KeyColumn(frame, c, key_type_of[name]));
    } else {
      ARROW_ASSIGN_OR_RAISE(array, OtherColumn(frame, c));
    }
    fields.push_back(arrow::field(name, array->type()));
    arrays.push_back(array);
  }
  auto entity = arrow::RecordBatch::Make(arrow::schema(fields), rows, arrays);

  // A key shared by sets whose entities type it differently is converted again.
  auto key_column = [&](const std::string& k,
                        const std::string& type) -> Result<std::shared_ptr<arrow::Array>> {
    size_t c = std::find(frame.columns.begin(), frame.columns.end(), k) - frame.columns.begin();
    if (type == key_type_of[k]) return entity->column(static_cast<int>(c));
    return KeyColumn(frame, c, type);
  };
  ARROW_ASSIGN_OR_RAISE(auto outputs, RetrieveFeatureSelection(store, selection, times, key_column));
  for (size_t i = 0; i < selection.feature_refs.size(); ++i) {
    fields.push_back(arrow::field(selection.feature_refs[i], outputs[i]->type()));
    arrays.push_back(outputs[i]);
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), rows, arrays);
}

json::object HistoricalTableToJson(const arrow::RecordBatch& table) {
  json::array columns, data;
  for (const auto& f : table.schema()->fields()) columns.emplace_back(f->name());
  data.reserve(static_cast<size_t>(table.num_rows()));
  for (int64_t r = 0; r < table.num_rows(); ++r) {
    json::array row;
    row.reserve(static_cast<size_t>(table.num_columns()));
    for (int c = 0; c < table.num_columns(); ++c) row.push_back(CellToJson(*table.column(c), r));
    data.emplace_back(std::move(row));
  }
  return json::object{{"columns", std::move(columns)}, {"data", std::move(data)}};
}

Result<std::string> HistoricalTableToArrowStream(const arrow::RecordBatch& table) {
  ARROW_ASSIGN_OR_RAISE(auto sink, arrow::io::BufferOutputStream::Create());
  ARROW_ASSIGN_OR_RAISE(auto writer, arrow::ipc::MakeStreamWriter(sink, table.schema()));
  ARROW_RETURN_NOT_OK(writer->WriteRecordBatch(table));
  ARROW_RETURN_NOT_OK(writer->Close());
  ARROW_ASSIGN_OR_RAISE(auto buffer, sink->Finish());
  return buffer->ToString();
}

// ------------------------------------------------- entity rows from tables

namespace {

bool IsStringType(const arrow::DataType& type) {
  switch (type.id()) {
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
    case arrow::Type::STRING_VIEW:
      return true;
    case arrow::Type::DICTIONARY:
      return IsStringType(*static_cast<const arrow::DictionaryType&>(type).value_type());
    default:
      return false;
  }
}

// "entity_source row 12 (column 'user_id')": rows count from 0 across the
// whole source.
std::string RowAt(const EntityRowsOrigin& origin, int64_t row, const std::string& column) {
  return origin.label + " row " + std::to_string(row) + " (column '" + column + "')";
}

Status NoNulls(const EntityRowsOrigin& origin, const arrow::Array& values,
               const std::string& column, int64_t first_row, const char* what) {
  if (values.null_count() == 0) return Status::OK();
  int64_t i = 0;
  while (i < values.length() && !values.IsNull(i)) ++i;
  return InvalidArgument(origin.field,
                         RowAt(origin, first_row + i, column) + ": the " + what + " is null");
}

Result<std::shared_ptr<arrow::StringArray>> AsUtf8(const std::shared_ptr<arrow::Array>& values) {
  if (values->type_id() == arrow::Type::STRING) {
    return std::static_pointer_cast<arrow::StringArray>(values);
  }
  ARROW_ASSIGN_OR_RAISE(auto cast, cp::Cast(*values, arrow::utf8()));
  return std::static_pointer_cast<arrow::StringArray>(cast);
}

// The entity rows' times as UTC microseconds.
Result<std::shared_ptr<arrow::Int64Array>> EntityTimes(const EntityRowsOrigin& origin,
                                                       const std::shared_ptr<arrow::Array>& column,
                                                       const std::string& name, int64_t first_row) {
  ARROW_RETURN_NOT_OK(NoNulls(origin, *column, name, first_row, "time"));
  std::shared_ptr<arrow::Array> micros;
  if (IsStringType(*column->type())) {
    // Parsed here rather than by NormaliseTimestamps so that an error names
    // the row in the whole source, not in the batch.
    ARROW_ASSIGN_OR_RAISE(auto strings, AsUtf8(column));
    arrow::Int64Builder builder;
    ARROW_RETURN_NOT_OK(builder.Reserve(strings->length()));
    for (int64_t i = 0; i < strings->length(); ++i) {
      auto t = ParseTimestamp(strings->GetView(i));
      if (!t.ok()) {
        return InvalidArgument(origin.field,
                               RowAt(origin, first_row + i, name) + ": '" +
                                   std::string(strings->GetView(i)) +
                                   "' is not a timestamp: " + ErrorMessageOf(t.status()));
      }
      builder.UnsafeAppend(*t);
    }
    ARROW_ASSIGN_OR_RAISE(micros, builder.Finish());
  } else {
    ARROW_ASSIGN_OR_RAISE(micros, NormaliseTimestamps(column, name));
  }
  auto data = micros->data()->Copy();
  data->type = arrow::int64();
  return std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
}

// A join key column as the entity's type: "int" -> int64, else utf8.
Result<std::shared_ptr<arrow::Array>> EntityKeys(const EntityRowsOrigin& origin,
                                                 const std::shared_ptr<arrow::Array>& column,
                                                 const std::string& name, const std::string& type,
                                                 int64_t first_row) {
  ARROW_RETURN_NOT_OK(NoNulls(origin, *column, name, first_row, "join key"));
  const arrow::DataType& from = *column->type();
  if (type != "int") {
    if (from.id() == arrow::Type::STRING) return column;
    ARROW_ASSIGN_OR_RAISE(auto cast, cp::Cast(*column, arrow::utf8()));
    return cast;
  }
  if (arrow::is_integer(from.id())) {
    auto cast = cp::Cast(*column, arrow::int64());
    if (!cast.ok()) {
      return InvalidArgument(origin.field,
                             "column '" + name + "' does not fit the integer join key: " +
                                 cast.status().message());
    }
    return *cast;
  }
  ARROW_ASSIGN_OR_RAISE(auto strings, AsUtf8(column));
  arrow::Int64Builder builder;
  ARROW_RETURN_NOT_OK(builder.Reserve(strings->length()));
  for (int64_t i = 0; i < strings->length(); ++i) {
    std::string_view s = strings->GetView(i);
    int64_t x = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
      return InvalidArgument(origin.field, RowAt(origin, first_row + i, name) + ": '" +
                                                       std::string(s) +
                                                       "' is not an integer join key");
    }
    builder.UnsafeAppend(x);
  }
  return builder.Finish();
}

}  // namespace

bool IsEntityKeyType(const arrow::DataType& type) {
  return arrow::is_integer(type.id()) || IsStringType(type);
}

bool IsEntityTimeType(const arrow::DataType& type) {
  switch (type.id()) {
    case arrow::Type::TIMESTAMP:
    case arrow::Type::DATE32:
    case arrow::Type::DATE64:
      return true;
    default:
      return IsStringType(type);
  }
}

Result<std::shared_ptr<arrow::RecordBatch>> JoinEntityBatch(FeatureStore* store,
                                                      const FeatureSelection& selection,
                                                      const std::string& time_column,
                                                      const arrow::RecordBatch& batch,
                                                      int64_t first_row,
                                                      const EntityRowsOrigin& origin) {
  ARROW_ASSIGN_OR_RAISE(auto times,
                        EntityTimes(origin, batch.GetColumnByName(time_column), time_column, first_row));
  std::map<std::pair<std::string, std::string>, std::shared_ptr<arrow::Array>> keys;
  auto key_column = [&](const std::string& k,
                        const std::string& type) -> Result<std::shared_ptr<arrow::Array>> {
    auto& slot = keys[{k, type}];
    if (!slot) {
      ARROW_ASSIGN_OR_RAISE(slot, EntityKeys(origin, batch.GetColumnByName(k), k, type, first_row));
    }
    return slot;
  };
  ARROW_ASSIGN_OR_RAISE(auto features,
                        RetrieveFeatureSelection(store, selection, times, key_column));
  std::vector<std::shared_ptr<arrow::Field>> fields = batch.schema()->fields();
  std::vector<std::shared_ptr<arrow::Array>> arrays = batch.columns();
  for (size_t i = 0; i < features.size(); ++i) {
    fields.push_back(arrow::field(selection.feature_refs[i], features[i]->type()));
    arrays.push_back(features[i]);
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), batch.num_rows(), arrays);
}


Result<std::shared_ptr<arrow::RecordBatch>> ServeHistoricalTable(
    FeatureStore* store, const std::map<std::string, std::string>& query, std::string_view body,
    std::string_view content_type, const RequestContext& context) {
  // The feature half from the query string, as the JSON body would hold it.
  json::object fields;
  for (const auto& [key, value] : query) {
    if (key == "feature_sets" || key == "features") {
      json::array list;
      size_t start = 0;
      while (start <= value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        if (comma > start) list.emplace_back(value.substr(start, comma - start));
        start = comma + 1;
      }
      fields[key] = std::move(list);
    } else if (key == "as_of") {
      fields[key] = value;
    } else {
      return InvalidArgument(key, "unknown query parameter '" + key +
                                      "' (expected feature_sets, features, as_of)");
    }
  }
  ARROW_ASSIGN_OR_RAISE(FeatureSelection selection, ResolveFeatureSelection(store, fields, context));

  const std::string_view media = content_type.substr(0, content_type.find(';'));
  auto buffer = std::make_shared<arrow::Buffer>(reinterpret_cast<const uint8_t*>(body.data()),
                                                static_cast<int64_t>(body.size()));
  auto input = std::make_shared<arrow::io::BufferReader>(buffer);
  std::shared_ptr<arrow::Table> table;
  if (media == "application/vnd.apache.arrow.stream") {
    auto reader = arrow::ipc::RecordBatchStreamReader::Open(input);
    if (!reader.ok()) {
      return InvalidArgument("entity_df", "the body is not an Arrow IPC stream: " +
                                              reader.status().message());
    }
    auto read = (*reader)->ToTable();
    if (!read.ok()) {
      return InvalidArgument("entity_df", "the Arrow IPC stream is corrupt: " +
                                              read.status().message());
    }
    table = *read;
  } else {
    auto reader = parquet::arrow::OpenFile(input, arrow::default_memory_pool());
    if (!reader.ok()) {
      return InvalidArgument("entity_df", "the body is not a Parquet file: " +
                                              reader.status().message());
    }
    auto read = (*reader)->ReadTable();
    if (!read.ok()) {
      return InvalidArgument("entity_df", "the Parquet file is corrupt: " +
                                              read.status().message());
    }
    table = *read;
  }
  auto combined = table->CombineChunksToBatch();
  if (!combined.ok()) return InvalidArgument("entity_df", combined.status().message());
  std::shared_ptr<arrow::RecordBatch> batch = *combined;
  const arrow::Schema& schema = *batch->schema();
  std::string time_column = schema.GetFieldIndex(kEventTimestampColumn) >= 0
                                ? std::string(kEventTimestampColumn)
                                : std::string("timestamp");
  auto time_field = schema.GetFieldByName(time_column);
  if (!time_field) {
    return InvalidArgument("entity_df", "the entity rows have no event_timestamp (or timestamp) "
                                        "column; they have: " + schema.ToString());
  }
  if (!IsEntityTimeType(*time_field->type())) {
    return InvalidArgument("entity_df", "column '" + time_column + "' has type " +
                                            time_field->type()->ToString() +
                                            ": expected a timestamp, a date or ISO 8601 strings");
  }
  for (const auto& key : selection.JoinKeys()) {
    auto field = schema.GetFieldByName(key.column);
    if (!field) {
      return InvalidArgument("entity_df", "the entity rows have no column '" + key.column +
                                              "', the join key of feature set '" +
                                              key.feature_set + "'");
    }
    if (!IsEntityKeyType(*field->type())) {
      return InvalidArgument("entity_df", "join key column '" + key.column + "' has type " +
                                              field->type()->ToString() +
                                              ": expected integers or strings");
    }
  }
  EntityRowsOrigin origin{"entity_df", "entity_df"};
  ARROW_ASSIGN_OR_RAISE(auto joined,
                        JoinEntityBatch(store, selection, time_column, *batch, 0, origin));
  // The time column as timestamp[us, UTC], as the JSON form answers it.
  int index = joined->schema()->GetFieldIndex(time_column);
  ARROW_ASSIGN_OR_RAISE(auto micros, NormaliseTimestamps(joined->column(index), time_column));
  return joined->SetColumn(index, arrow::field(time_column, micros->type()), micros);
}

}  // namespace fstore
