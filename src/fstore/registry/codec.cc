#include "fstore/registry/codec.h"

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>

namespace fstore {
namespace json = boost::json;

namespace {

const char* KindOf(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

Status WrongType(std::string_view field, const char* expected, const json::value& got) {
  return InvalidArgument(std::string(field),
                         std::string("must be ") + expected + ", got " + KindOf(got));
}

// Reads one field of a definition object. `mode` decides what a null and a
// read-only field mean.
class FieldReader {
 public:
  explicit FieldReader(DecodeMode mode) : mode_(mode) {}

  bool patch() const { return mode_ == DecodeMode::kPatch; }
  bool stored() const { return mode_ == DecodeMode::kStored; }

  Status String(std::string_view field, const json::value& v, std::string* out,
                bool nullable = true) const {
    if (v.is_null()) {
      if (!nullable) return InvalidArgument(std::string(field), "must not be null");
      out->clear();
      return Status::OK();
    }
    if (!v.is_string()) return WrongType(field, "a string", v);
    *out = std::string(v.as_string());
    return Status::OK();
  }

  Status Bool(std::string_view field, const json::value& v, bool* out) const {
    if (!v.is_bool()) return WrongType(field, "true or false", v);
    *out = v.as_bool();
    return Status::OK();
  }

  Status StringList(std::string_view field, const json::value& v,
                    std::vector<std::string>* out) const {
    if (v.is_null()) {
      out->clear();
      return Status::OK();
    }
    if (!v.is_array()) return WrongType(field, "an array of strings", v);
    std::vector<std::string> result;
    const auto& arr = v.as_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      if (!arr[i].is_string()) {
        return WrongType(std::string(field) + "[" + std::to_string(i) + "]", "a string", arr[i]);
      }
      result.emplace_back(arr[i].as_string());
    }
    *out = std::move(result);
    return Status::OK();
  }

  Status Timestamp(std::string_view field, const json::value& v, TimestampMicros* out) const {
    if (!v.is_string()) return WrongType(field, "a timestamp string", v);
    auto parsed = ParseTimestamp(std::string_view(v.as_string()));
    if (!parsed.ok()) return InvalidArgument(std::string(field), parsed.status().message());
    *out = *parsed;
    return Status::OK();
  }

  Status Int(std::string_view field, const json::value& v, int64_t* out) const {
    if (v.is_int64()) {
      *out = v.as_int64();
    } else if (v.is_uint64() && v.as_uint64() <= INT64_MAX) {
      *out = static_cast<int64_t>(v.as_uint64());
    } else {
      return WrongType(field, "an integer", v);
    }
    return Status::OK();
  }

  /// Server-assigned fields: only the registry's stored form may set them.
  Status ReadOnly(std::string_view field) const {
    return InvalidArgument(std::string(field),
                           "is assigned by the server and cannot be set by a request");
  }

 private:
  DecodeMode mode_;
};

Status NotAnObject(const json::value& v) {
  return InvalidArgument("", std::string("the request body must be a JSON object, got ") +
                                 KindOf(v));
}

Status UnknownField(std::string_view key) {
  return InvalidArgument(std::string(key), "unknown field");
}

json::value OptionalString(const std::string& s) {
  if (s.empty()) return nullptr;
  return json::value(s);
}

json::array ToJsonArray(const std::vector<std::string>& values) {
  json::array out;
  out.reserve(values.size());
  for (const auto& v : values) out.emplace_back(v);
  return out;
}

json::value OptionalTime(const std::optional<TimestampMicros>& t) {
  if (!t) return nullptr;
  return json::value(FormatTimestamp(*t));
}

Status DecodeSource(const json::value& v, const FieldReader& r,
                    std::optional<SourceDefinition>* out) {
  if (v.is_null()) {
    out->reset();
    return Status::OK();
  }
  if (!v.is_object()) return WrongType("source", "an object", v);
  SourceDefinition source;
  for (const auto& [key, value] : v.as_object()) {
    std::string field = "source." + std::string(key);
    if (key == "type") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.type, false));
    } else if (key == "path") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.path));
    } else if (key == "format") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.format));
    } else if (key == "query") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.query));
    } else if (key == "table") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.table));
    } else if (key == "connection") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &source.connection));
    } else if (key == "pushdown") {
      ARROW_RETURN_NOT_OK(r.Bool(field, value, &source.pushdown));
    } else {
      return UnknownField(field);
    }
  }
  if (source.type.empty()) {
    return InvalidArgument("source.type", "is required (file, postgres or push)");
  }
  *out = std::move(source);
  return Status::OK();
}

// {"code": "...", "function": "transform", "input": "pyarrow" | "pandas",
//  "timeout": "60s", "output_columns": {"name": "float", ...}}. A patch
// changes the subfields it gives (output_columns as a whole); null removes it.
Status DecodePythonTransformation(const json::value& v, const FieldReader& r,
                                  std::optional<PythonTransformationDefinition>* out) {
  if (v.is_null()) {
    out->reset();
    return Status::OK();
  }
  if (!v.is_object()) return WrongType("python_transformation", "an object", v);
  PythonTransformationDefinition def;
  if (r.patch() && out->has_value()) def = **out;
  for (const auto& [key, value] : v.as_object()) {
    std::string field = "python_transformation." + std::string(key);
    if (key == "code") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &def.code, false));
    } else if (key == "function") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &def.function, false));
    } else if (key == "input") {
      ARROW_RETURN_NOT_OK(r.String(field, value, &def.input, false));
    } else if (key == "timeout") {
      if (value.is_int64() || value.is_uint64()) {  // seconds, as ttl takes them
        int64_t seconds = 0;
        ARROW_RETURN_NOT_OK(r.Int(field, value, &seconds));
        def.timeout = std::to_string(seconds) + "s";
      } else {
        ARROW_RETURN_NOT_OK(r.String(field, value, &def.timeout, false));
      }
    } else if (key == "output_columns") {
      if (!value.is_object()) {
        return WrongType(field, "an object of column name -> data type", value);
      }
      def.output_columns.clear();
      for (const auto& [name, type] : value.as_object()) {
        std::string column_field = field + "." + std::string(name);
        if (!type.is_string()) return WrongType(column_field, "a data type string", type);
        def.output_columns.emplace_back(std::string(name), std::string(type.as_string()));
      }
    } else {
      return UnknownField(field);
    }
  }
  if (def.code.empty()) {
    return InvalidArgument("python_transformation.code",
                           "is required: the Python source defining the function");
  }
  *out = std::move(def);
  return Status::OK();
}

Status DecodeRules(const json::value& v, const FieldReader& r, ValidationRules* out) {
  if (v.is_null()) {
    *out = ValidationRules{};
    return Status::OK();
  }
  if (!v.is_object()) return WrongType("validation_rules", "an object", v);
  ValidationRules rules;
  for (const auto& [key, value] : v.as_object()) {
    std::string field = "validation_rules." + std::string(key);
    if (value.is_null()) continue;  // an absent rule
    if (key == "min_value" || key == "max_value") {
      if (!value.is_number()) return WrongType(field, "a number", value);
      double d = value.to_number<double>();
      (key == "min_value" ? rules.min_value : rules.max_value) = d;
    } else if (key == "allowed_values") {
      if (!value.is_array()) return WrongType(field, "an array", value);
      rules.allowed_values = value.as_array();
    } else if (key == "not_null") {
      bool b = false;
      ARROW_RETURN_NOT_OK(r.Bool(field, value, &b));
      rules.not_null = b;
    } else if (key == "regex") {
      std::string s;
      ARROW_RETURN_NOT_OK(r.String(field, value, &s, false));
      rules.regex = s;
    } else if (key == "max_length") {
      int64_t n = 0;
      ARROW_RETURN_NOT_OK(r.Int(field, value, &n));
      rules.max_length = n;
    } else {
      return UnknownField(field);
    }
  }
  *out = std::move(rules);
  return Status::OK();
}

// The server-assigned fields shared by versioned definitions (FeatureSet,
// Feature): only the registry's stored form may set them.
bool IsVersionedField(std::string_view key) {
  return key == "id" || key == "version" || key == "created_at" || key == "updated_at" ||
         key == "deleted_at" || key == "status";
}

template <typename Definition>
Status DecodeVersionedField(std::string_view key, const json::value& value, const FieldReader& r,
                            Definition* out) {
  if (!r.stored()) return r.ReadOnly(key);
  if (key == "id") return r.String(key, value, &out->id, false);
  if (key == "version") return r.Int(key, value, &out->version);
  if (key == "created_at") return r.Timestamp(key, value, &out->created_at);
  if (key == "updated_at") return r.Timestamp(key, value, &out->updated_at);
  if (key == "deleted_at") {
    if (value.is_null()) {
      out->deleted_at.reset();
      return Status::OK();
    }
    TimestampMicros t = 0;
    ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &t));
    out->deleted_at = t;
  }
  return Status::OK();  // "status" is derived from deleted_at
}

}  // namespace

json::object ToJson(const Entity& e) {
  json::object o;
  o["id"] = e.id;
  o["name"] = e.name;
  o["join_keys"] = ToJsonArray(e.join_keys);
  o["value_type"] = e.value_type;
  o["description"] = e.description;
  o["version"] = e.version;
  o["created_at"] = FormatTimestamp(e.created_at);
  o["updated_at"] = FormatTimestamp(e.updated_at);
  return o;
}

json::object ToJson(const SourceDefinition& s) {
  json::object o;
  o["type"] = s.type;
  if (!s.path.empty()) o["path"] = s.path;
  if (!s.format.empty()) o["format"] = s.format;
  if (!s.query.empty()) o["query"] = s.query;
  if (!s.table.empty()) o["table"] = s.table;
  if (!s.connection.empty()) o["connection"] = s.connection;
  if (s.type == "postgres" || s.pushdown) o["pushdown"] = s.pushdown;
  return o;
}

json::object ToJson(const PythonTransformationDefinition& p) {
  json::object o;
  o["code"] = p.code;
  o["function"] = p.function;
  o["input"] = p.input;
  o["timeout"] = p.timeout;
  json::object columns;
  for (const auto& [name, type] : p.output_columns) columns[name] = type;
  o["output_columns"] = std::move(columns);
  return o;
}

json::object ToJson(const FeatureSet& fs) {
  json::object o;
  o["id"] = fs.id;
  o["name"] = fs.name;
  o["description"] = fs.description;
  o["owner"] = fs.owner;
  o["tags"] = ToJsonArray(fs.tags);
  o["entities"] = ToJsonArray(fs.entities);
  o["source_type"] = fs.source_type;
  o["source"] = fs.source ? json::value(ToJson(*fs.source)) : json::value(nullptr);
  o["timestamp_field"] = fs.timestamp_field;
  o["created_timestamp_field"] = OptionalString(fs.created_timestamp_field);
  o["ttl"] = OptionalString(fs.ttl);
  o["offline_enabled"] = fs.offline_enabled;
  o["online_enabled"] = fs.online_enabled;
  o["materialization_schedule"] = OptionalString(fs.materialization_schedule);
  o["on_invalid"] = fs.on_invalid;
  o["python_transformation"] = fs.python_transformation
                                   ? json::value(ToJson(*fs.python_transformation))
                                   : json::value(nullptr);
  o["version"] = fs.version;
  o["status"] = fs.deleted_at ? "deleted" : "active";
  o["created_at"] = FormatTimestamp(fs.created_at);
  o["updated_at"] = FormatTimestamp(fs.updated_at);
  o["deleted_at"] = OptionalTime(fs.deleted_at);
  return o;
}

// Bounds are doubles; integral ones go out as JSON integers (150, not 1.5E2).
json::value NumberToJson(double d) {
  if (std::trunc(d) == d && std::abs(d) < 9.0e15) return json::value(static_cast<int64_t>(d));
  return json::value(d);
}

json::object ToJson(const ValidationRules& r) {
  json::object o;
  if (r.min_value) o["min_value"] = NumberToJson(*r.min_value);
  if (r.max_value) o["max_value"] = NumberToJson(*r.max_value);
  if (r.allowed_values) o["allowed_values"] = *r.allowed_values;
  if (r.not_null) o["not_null"] = *r.not_null;
  if (r.regex) o["regex"] = *r.regex;
  if (r.max_length) o["max_length"] = *r.max_length;
  return o;
}

json::object ToJson(const Feature& f) {
  json::object o;
  o["id"] = f.id;
  o["name"] = f.name;
  o["feature_set_id"] = f.feature_set_id;
  o["description"] = f.description;
  o["data_type"] = f.data_type;
  o["transformation"] = OptionalString(f.transformation);
  o["window_size"] = OptionalString(f.window_size);
  o["source_features"] = ToJsonArray(f.source_features);
  o["validation_rules"] = ToJson(f.validation_rules);
  o["default_value"] = f.default_value ? *f.default_value : json::value(nullptr);
  o["allowed_values"] = f.allowed_values ? json::value(*f.allowed_values) : json::value(nullptr);
  o["tags"] = ToJsonArray(f.tags);
  o["owner"] = f.owner;
  o["version"] = f.version;
  o["status"] = f.deleted_at ? "deleted" : "active";
  o["created_at"] = FormatTimestamp(f.created_at);
  o["updated_at"] = FormatTimestamp(f.updated_at);
  o["deleted_at"] = OptionalTime(f.deleted_at);
  return o;
}

json::object ToJson(const MaterializationJob& job) {
  json::object o;
  o["id"] = job.id;
  o["feature_set_id"] = job.feature_set_id;
  o["feature_set"] = job.feature_set_name;
  o["feature_set_version"] = job.feature_set_version;
  o["status"] = JobStatusName(job.status);
  o["trigger"] = job.trigger;
  o["incremental"] = job.incremental;
  o["start_date"] = FormatTimestamp(job.start);
  o["end_date"] = FormatTimestamp(job.end);
  o["completed_until"] = FormatTimestamp(job.completed_until);
  o["created_at"] = FormatTimestamp(job.created_at);
  o["started_at"] = OptionalTime(job.started_at);
  o["finished_at"] = OptionalTime(job.finished_at);
  o["rows_read"] = job.rows_read;
  o["rows_written_offline"] = job.rows_written_offline;
  o["rows_written_online"] = job.rows_written_online;
  o["rows_rejected"] = job.rows_rejected;
  o["bytes_read"] = job.bytes_read;
  o["bytes_written"] = job.bytes_written;
  o["duration_seconds"] = NumberToJson(job.duration_seconds);
  o["cpu_seconds"] = NumberToJson(job.cpu_seconds);
  o["max_event_time_offline"] = OptionalTime(job.max_event_time_offline);
  o["max_event_time_online"] = OptionalTime(job.max_event_time_online);
  o["quality_report"] = job.quality_report;
  o["error"] = OptionalString(job.error);
  return o;
}

Status DecodeEntity(const json::value& v, DecodeMode mode, Entity* out) {
  if (!v.is_object()) return NotAnObject(v);
  FieldReader r(mode);
  for (const auto& [key, value] : v.as_object()) {
    if (key == "name") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->name, false));
    } else if (key == "join_keys") {
      if (value.is_string()) {  // a single key written without brackets
        out->join_keys = {std::string(value.as_string())};
      } else {
        ARROW_RETURN_NOT_OK(r.StringList(key, value, &out->join_keys));
      }
    } else if (key == "value_type") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->value_type, false));
    } else if (key == "description") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->description));
    } else if (key == "id" || key == "version" || key == "created_at" || key == "updated_at") {
      if (!r.stored()) return r.ReadOnly(key);
      if (key == "id") ARROW_RETURN_NOT_OK(r.String(key, value, &out->id, false));
      if (key == "version") ARROW_RETURN_NOT_OK(r.Int(key, value, &out->version));
      if (key == "created_at") ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->created_at));
      if (key == "updated_at") ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->updated_at));
    } else {
      return UnknownField(key);
    }
  }
  return Status::OK();
}

Status DecodeFeatureSet(const json::value& v, DecodeMode mode, FeatureSet* out) {
  if (!v.is_object()) return NotAnObject(v);
  FieldReader r(mode);
  for (const auto& [key, value] : v.as_object()) {
    if (key == "name") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->name, false));
    } else if (key == "description") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->description));
    } else if (key == "owner") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->owner));
    } else if (key == "tags") {
      ARROW_RETURN_NOT_OK(r.StringList(key, value, &out->tags));
    } else if (key == "entities") {
      ARROW_RETURN_NOT_OK(r.StringList(key, value, &out->entities));
    } else if (key == "source_type") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->source_type, false));
    } else if (key == "source") {
      ARROW_RETURN_NOT_OK(DecodeSource(value, r, &out->source));
    } else if (key == "timestamp_field") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->timestamp_field, false));
    } else if (key == "created_timestamp_field") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->created_timestamp_field));
    } else if (key == "ttl") {
      if (value.is_int64() || value.is_uint64()) {  // seconds, as Feast's timedelta
        int64_t seconds = 0;
        ARROW_RETURN_NOT_OK(r.Int(key, value, &seconds));
        out->ttl = std::to_string(seconds) + "s";
      } else {
        ARROW_RETURN_NOT_OK(r.String(key, value, &out->ttl));
      }
    } else if (key == "offline_enabled") {
      ARROW_RETURN_NOT_OK(r.Bool(key, value, &out->offline_enabled));
    } else if (key == "online_enabled") {
      ARROW_RETURN_NOT_OK(r.Bool(key, value, &out->online_enabled));
    } else if (key == "materialization_schedule") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->materialization_schedule));
    } else if (key == "on_invalid") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->on_invalid, false));
    } else if (key == "python_transformation") {
      ARROW_RETURN_NOT_OK(DecodePythonTransformation(value, r, &out->python_transformation));
    } else if (key == "features") {  // output only: GET adds the feature set's features
      if (!r.stored()) return r.ReadOnly(key);
    } else if (IsVersionedField(key)) {
      ARROW_RETURN_NOT_OK(DecodeVersionedField(key, value, r, out));
    } else {
      return UnknownField(key);
    }
  }
  return Status::OK();
}

Status DecodeFeature(const json::value& v, DecodeMode mode, Feature* out) {
  if (!v.is_object()) return NotAnObject(v);
  FieldReader r(mode);
  for (const auto& [key, value] : v.as_object()) {
    if (key == "name") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->name, false));
    } else if (key == "feature_set_id") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->feature_set_id, false));
    } else if (key == "description") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->description));
    } else if (key == "data_type") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->data_type, false));
    } else if (key == "transformation") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->transformation));
    } else if (key == "window_size") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->window_size));
    } else if (key == "source_features") {
      ARROW_RETURN_NOT_OK(r.StringList(key, value, &out->source_features));
    } else if (key == "validation_rules") {
      ARROW_RETURN_NOT_OK(DecodeRules(value, r, &out->validation_rules));
    } else if (key == "default_value") {
      if (value.is_null()) {
        out->default_value.reset();
      } else {
        out->default_value = value;
      }
    } else if (key == "allowed_values") {
      if (value.is_null()) {
        out->allowed_values.reset();
      } else if (!value.is_array()) {
        return WrongType(key, "an array", value);
      } else {
        out->allowed_values = value.as_array();
      }
    } else if (key == "tags") {
      ARROW_RETURN_NOT_OK(r.StringList(key, value, &out->tags));
    } else if (key == "owner") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->owner));
    } else if (IsVersionedField(key)) {
      ARROW_RETURN_NOT_OK(DecodeVersionedField(key, value, r, out));
    } else {
      return UnknownField(key);
    }
  }
  return Status::OK();
}

// Jobs are written by the server only, so there is one form: the stored one.
// Absent fields keep their value in *out.
Status DecodeJob(const json::value& v, MaterializationJob* out) {
  if (!v.is_object()) return NotAnObject(v);
  FieldReader r(DecodeMode::kStored);
  auto optional_time = [&r](std::string_view key, const json::value& value,
                            std::optional<TimestampMicros>* field) -> Status {
    if (value.is_null()) {
      field->reset();
      return Status::OK();
    }
    TimestampMicros t = 0;
    ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &t));
    *field = t;
    return Status::OK();
  };
  auto seconds = [](std::string_view key, const json::value& value, double* field) -> Status {
    if (!value.is_number()) return WrongType(key, "a number", value);
    *field = value.to_number<double>();
    return Status::OK();
  };
  for (const auto& [key, value] : v.as_object()) {
    if (key == "id") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->id, false));
    } else if (key == "feature_set_id") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->feature_set_id, false));
    } else if (key == "feature_set") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->feature_set_name));
    } else if (key == "feature_set_version") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->feature_set_version));
    } else if (key == "status") {
      if (!value.is_string()) return WrongType(key, "a string", value);
      ARROW_ASSIGN_OR_RAISE(out->status, ParseJobStatus(std::string_view(value.as_string())));
    } else if (key == "trigger") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->trigger));
    } else if (key == "incremental") {
      ARROW_RETURN_NOT_OK(r.Bool(key, value, &out->incremental));
    } else if (key == "start_date") {
      ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->start));
    } else if (key == "end_date") {
      ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->end));
    } else if (key == "completed_until") {
      ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->completed_until));
    } else if (key == "created_at") {
      ARROW_RETURN_NOT_OK(r.Timestamp(key, value, &out->created_at));
    } else if (key == "started_at") {
      ARROW_RETURN_NOT_OK(optional_time(key, value, &out->started_at));
    } else if (key == "finished_at") {
      ARROW_RETURN_NOT_OK(optional_time(key, value, &out->finished_at));
    } else if (key == "rows_read") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->rows_read));
    } else if (key == "rows_written_offline") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->rows_written_offline));
    } else if (key == "rows_written_online") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->rows_written_online));
    } else if (key == "rows_rejected") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->rows_rejected));
    } else if (key == "bytes_read") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->bytes_read));
    } else if (key == "bytes_written") {
      ARROW_RETURN_NOT_OK(r.Int(key, value, &out->bytes_written));
    } else if (key == "duration_seconds") {
      ARROW_RETURN_NOT_OK(seconds(key, value, &out->duration_seconds));
    } else if (key == "cpu_seconds") {
      ARROW_RETURN_NOT_OK(seconds(key, value, &out->cpu_seconds));
    } else if (key == "max_event_time_offline") {
      ARROW_RETURN_NOT_OK(optional_time(key, value, &out->max_event_time_offline));
    } else if (key == "max_event_time_online") {
      ARROW_RETURN_NOT_OK(optional_time(key, value, &out->max_event_time_online));
    } else if (key == "quality_report") {
      if (value.is_null()) {
        out->quality_report.clear();
      } else if (!value.is_object()) {
        return WrongType(key, "an object", value);
      } else {
        out->quality_report = value.as_object();
      }
    } else if (key == "error") {
      ARROW_RETURN_NOT_OK(r.String(key, value, &out->error));
    } else {
      return UnknownField(key);
    }
  }
  return Status::OK();
}

Result<json::value> ParseJson(std::string_view text, json::storage_ptr storage) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 64;
  // Small documents (a serving request) reuse one parser per thread, which
  // keeps its working buffers instead of allocating them each time; a large
  // one gets its own, so that a thread does not keep its buffers at rest.
  constexpr size_t kReusedParserLimit = 64 * 1024;
  thread_local json::stream_parser reused({}, options);
  std::optional<json::stream_parser> own;
  if (text.size() > kReusedParserLimit) own.emplace(json::storage_ptr(), options);
  json::stream_parser& parser = own ? *own : reused;
  parser.reset(std::move(storage));
  size_t consumed = parser.write_some(text.data(), text.size(), ec);
  if (!ec && consumed < text.size()) {
    return InvalidArgument("", "the request body is not valid JSON: unexpected data after the "
                               "value (at byte " + std::to_string(consumed) + ")");
  }
  if (!ec) parser.finish(ec);
  if (ec) {
    return InvalidArgument("", "the request body is not valid JSON: " + ec.message() +
                                   " (at byte " + std::to_string(consumed) + ")");
  }
  return parser.release();
}

}  // namespace fstore
