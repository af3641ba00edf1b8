#include "fstore/core/text.h"
#include "fstore/service/definition_validator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

#include <arrow/type.h>

#include "fstore/core/cron.h"
#include "fstore/core/duration.h"
#include "fstore/core/json_text.h"
#include "fstore/core/time.h"
#include "fstore/compute/expression.h"
#include "fstore/compute/postgres_client.h"
#include "fstore/compute/window.h"
#include "fstore/materialize/python_step.h"
#include "fstore/python/python_transformation.h"

namespace fstore {
namespace json = boost::json;

namespace {

std::string Trimmed(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, e - b + 1));
}

bool IsNumericType(std::string_view t) { return t == "int" || t == "float"; }

std::string Preview(const json::value& v) {
  std::string s = SerializeJson(v);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

Status CheckDuration(std::string_view field, std::string* text) {
  if (text->empty()) return Status::OK();
  auto micros = ParseDuration(*text);
  if (!micros.ok()) return InvalidArgument(std::string(field), micros.status().message());
  return Status::OK();
}

Status CheckLength(std::string_view field, std::string_view value, size_t max) {
  if (value.size() > max) {
    return InvalidArgument(std::string(field),
                           "is too long: " + std::to_string(value.size()) +
                               " characters, at most " + std::to_string(max));
  }
  return Status::OK();
}

Status CheckTags(const std::vector<std::string>& tags) {
  for (size_t i = 0; i < tags.size(); ++i) {
    std::string field = "tags[" + std::to_string(i) + "]";
    if (tags[i].empty()) return InvalidArgument(field, "must not be empty");
    ARROW_RETURN_NOT_OK(CheckLength(field, tags[i], 64));
  }
  return Status::OK();
}

Status CheckColumn(const std::shared_ptr<arrow::Schema>& schema, std::string_view field,
                   const std::string& column) {
  if (schema == nullptr || column.empty()) return Status::OK();
  if (schema->GetFieldIndex(column) >= 0) return Status::OK();
  std::string names;
  for (const auto& f : schema->fields()) {
    if (!names.empty()) names += ", ";
    names += f->name();
  }
  return Unprocessable(std::string(field),
                       "column '" + column + "' is not in the source (columns: " + names + ")");
}

/// Registration runs the code under its timeout, at most this long: an HTTP
/// thread waits for it.
constexpr int64_t kMaxRegistrationCheckMicros = 30 * kMicrosPerSecond;
constexpr size_t kMaxPythonCodeBytes = 1 << 20;

// The source schema as the Python step sees it at run time: the timestamp
// fields as timestamp[us, UTC] (materialize/source_reader.h).
std::shared_ptr<arrow::Schema> AsReadSchema(const FeatureSet& fs,
                                            const std::shared_ptr<arrow::Schema>& schema) {
  std::vector<std::shared_ptr<arrow::Field>> fields;
  for (const auto& f : schema->fields()) {
    if (f->name() == fs.timestamp_field || f->name() == fs.created_timestamp_field) {
      fields.push_back(arrow::field(f->name(), arrow::timestamp(arrow::TimeUnit::MICRO, "UTC")));
    } else {
      fields.push_back(f);
    }
  }
  return arrow::schema(fields);
}

// python_transformation: its own fields, then the code itself: it compiles,
// runs as a module and defines the function; with the source schema known,
// the function run on an empty batch of it returns the declared columns.
Status ValidatePythonTransformation(FeatureSet* fs, const std::shared_ptr<arrow::Schema>& schema) {
  PythonTransformationDefinition& p = *fs->python_transformation;
  if (Trimmed(p.code).empty()) return InvalidArgument("python_transformation.code", "is required");
  if (p.code.size() > kMaxPythonCodeBytes) {
    return InvalidArgument("python_transformation.code",
                           "is too long: " + std::to_string(p.code.size()) + " bytes, at most " +
                               std::to_string(kMaxPythonCodeBytes));
  }
  if (p.code.find('\0') != std::string::npos) {
    return InvalidArgument("python_transformation.code", "must not contain NUL characters");
  }
  ARROW_RETURN_NOT_OK(ValidateIdentifier("python_transformation.function", p.function));
  p.input = AsciiLower(Trimmed(p.input));
  if (p.input != "pyarrow" && p.input != "pandas") {
    return InvalidArgument("python_transformation.input",
                           "'" + p.input + "' must be pyarrow (the function gets a "
                           "pyarrow.RecordBatch) or pandas (a pandas.DataFrame)");
  }
  if (p.timeout.empty()) p.timeout = "60s";
  auto timeout = ParseDuration(p.timeout);
  if (!timeout.ok()) return InvalidArgument("python_transformation.timeout", timeout.status().message());
  if (*timeout < kMicrosPerSecond / 1000 || *timeout > kMicrosPerDay) {
    return InvalidArgument("python_transformation.timeout",
                           "'" + p.timeout + "' must be between 1ms and 1d");
  }
  if (p.output_columns.empty()) {
    return InvalidArgument("python_transformation.output_columns",
                           "declare at least one column the function returns, e.g. "
                           "{\"amount_x3\": \"float\"}");
  }
  for (size_t i = 0; i < p.output_columns.size(); ++i) {
    auto& [name, type] = p.output_columns[i];
    std::string field = "python_transformation.output_columns." + name;
    ARROW_RETURN_NOT_OK(ValidateIdentifier(field, name));
    ARROW_ASSIGN_OR_RAISE(type, CanonicalDataType(field, type));
    if (name == fs->timestamp_field || name == fs->created_timestamp_field) {
      return InvalidArgument(field, "'" + name + "' is a timestamp field: it passes through "
                                    "the function and is not declared");
    }
    for (size_t j = 0; j < i; ++j) {
      if (p.output_columns[j].first == name) return InvalidArgument(field, "is declared twice");
    }
  }
  if (fs->source && fs->source->type != "file" && fs->source->type != "postgres") {
    return InvalidArgument("python_transformation",
                           "applies to file and postgres sources, which materialization reads "
                           "(a push source's rows are written through the API)");
  }
  if (fs->source && fs->source->pushdown) {
    return InvalidArgument("source.pushdown",
                           "cannot be combined with python_transformation: the SQL features "
                           "read the Python function's output, which PostgreSQL does not see");
  }
  ARROW_ASSIGN_OR_RAISE(PythonFunctionSpec spec, PythonSpecOf(*fs));
  spec.timeout = std::min(spec.timeout, std::chrono::milliseconds(kMaxRegistrationCheckMicros / 1000));
  ARROW_ASSIGN_OR_RAISE(auto transformation, PythonTransformation::Make(std::move(spec)));
  if (schema != nullptr) ARROW_RETURN_NOT_OK(transformation->CheckOutput(AsReadSchema(*fs, schema)));
  return Status::OK();
}

}  // namespace

Status ValidateIdentifier(std::string_view field, std::string_view name) {
  if (name.empty()) return InvalidArgument(std::string(field), "is required");
  if (name.size() > 63) {
    return InvalidArgument(std::string(field), "'" + std::string(name.substr(0, 63)) +
                                                   "...' is longer than 63 characters");
  }
  auto ok_first = [](unsigned char c) { return std::isalpha(c) || c == '_'; };
  auto ok_rest = [](unsigned char c) { return std::isalnum(c) || c == '_'; };
  if (!ok_first(name[0]) || !std::all_of(name.begin() + 1, name.end(), ok_rest)) {
    return InvalidArgument(std::string(field),
                           "'" + std::string(name) +
                               "' is not a valid name: use letters, digits and '_', "
                               "starting with a letter or '_'");
  }
  return Status::OK();
}

Result<std::string> CanonicalDataType(std::string_view field, std::string_view type) {
  std::string t = AsciiLower(Trimmed(type));
  for (const char* prefix : {"list<", "array<"}) {
    std::string_view p(prefix);
    if (t.size() > p.size() + 1 && t.compare(0, p.size(), p) == 0 && t.back() == '>') {
      std::string inner = t.substr(p.size(), t.size() - p.size() - 1);
      auto element = CanonicalDataType(field, inner);
      if (!element.ok() || element->rfind("list<", 0) == 0) {
        return InvalidArgument(std::string(field),
                               "unknown data type '" + std::string(type) +
                                   "': list elements must be int, float, string, bool or "
                                   "timestamp");
      }
      return "list<" + *element + ">";
    }
  }
  if (t == "int" || t == "int64" || t == "integer" || t == "long" || t == "bigint" ||
      t == "int32") {
    return std::string("int");
  }
  if (t == "float" || t == "float64" || t == "double" || t == "float32" || t == "real") {
    return std::string("float");
  }
  if (t == "string" || t == "str" || t == "text" || t == "varchar") return std::string("string");
  if (t == "bool" || t == "boolean") return std::string("bool");
  if (t == "timestamp" || t == "datetime" || t == "timestamptz") return std::string("timestamp");
  return InvalidArgument(std::string(field),
                         "unknown data type '" + std::string(type) +
                             "': expected int, float, string, bool, timestamp or list<T>");
}

bool JsonMatchesType(const json::value& v, std::string_view t) {
  if (t.rfind("list<", 0) == 0) {
    if (!v.is_array()) return false;
    std::string_view inner = t.substr(5, t.size() - 6);
    return std::all_of(v.as_array().begin(), v.as_array().end(),
                       [&](const json::value& e) { return e.is_null() || JsonMatchesType(e, inner); });
  }
  if (t == "int") return v.is_int64() || (v.is_uint64() && v.as_uint64() <= INT64_MAX);
  if (t == "float") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "bool") return v.is_bool();
  if (t == "timestamp") return v.is_string() && ParseTimestamp(std::string_view(v.as_string())).ok();
  return false;
}

Status ValidateEntity(Entity* e) {
  ARROW_RETURN_NOT_OK(ValidateIdentifier("name", e->name));
  if (e->join_keys.empty()) e->join_keys = {e->name + "_id"};
  for (size_t i = 0; i < e->join_keys.size(); ++i) {
    ARROW_RETURN_NOT_OK(
        ValidateIdentifier("join_keys[" + std::to_string(i) + "]", e->join_keys[i]));
    for (size_t j = 0; j < i; ++j) {
      if (e->join_keys[j] == e->join_keys[i]) {
        return InvalidArgument("join_keys[" + std::to_string(i) + "]",
                               "'" + e->join_keys[i] + "' is listed twice");
      }
    }
  }
  std::string vt = AsciiLower(e->value_type);
  if (vt == "str" || vt == "text") vt = "string";
  if (vt == "int64" || vt == "integer" || vt == "long") vt = "int";
  if (vt != "string" && vt != "int") {
    return InvalidArgument("value_type", "'" + e->value_type + "' is not a key type: expected "
                                         "string or int");
  }
  e->value_type = vt;
  return CheckLength("description", e->description, 4096);
}

Status ValidateFeatureSet(FeatureSet* fs, const std::shared_ptr<arrow::Schema>& schema) {
  ARROW_RETURN_NOT_OK(ValidateIdentifier("name", fs->name));
  ARROW_RETURN_NOT_OK(CheckLength("description", fs->description, 4096));
  ARROW_RETURN_NOT_OK(CheckLength("owner", fs->owner, 256));
  ARROW_RETURN_NOT_OK(CheckTags(fs->tags));
  if (fs->entities.empty()) {
    return InvalidArgument("entities", "at least one entity is required (e.g. [\"user\"])");
  }
  for (size_t i = 0; i < fs->entities.size(); ++i) {
    std::string field = "entities[" + std::to_string(i) + "]";
    ARROW_RETURN_NOT_OK(ValidateIdentifier(field, fs->entities[i]));
    for (size_t j = 0; j < i; ++j) {
      if (fs->entities[j] == fs->entities[i]) {
        return InvalidArgument(field, "'" + fs->entities[i] + "' is listed twice");
      }
    }
  }
  fs->source_type = AsciiLower(fs->source_type);
  if (fs->source_type != "batch" && fs->source_type != "stream") {
    return InvalidArgument("source_type", "'" + fs->source_type + "' must be batch or stream");
  }
  if (fs->source) {
    SourceDefinition& s = *fs->source;
    s.type = AsciiLower(s.type);
    if (s.type == "postgresql") s.type = "postgres";
    if (s.pushdown && s.type != "postgres") {
      return InvalidArgument("source.pushdown", "applies to postgres sources only");
    }
    if (s.type == "file") {
      if (s.path.empty()) return InvalidArgument("source.path", "is required for a file source");
      if (!s.query.empty() || !s.table.empty() || !s.connection.empty()) {
        return InvalidArgument("source", "a file source takes path and format only");
      }
      s.format = AsciiLower(s.format);
      if (s.format.empty()) {
        std::string lower = AsciiLower(s.path);
        s.format = lower.size() >= 4 && lower.compare(lower.size() - 4, 4, ".csv") == 0
                       ? "csv"
                       : "parquet";
      }
      if (s.format != "parquet" && s.format != "csv") {
        return InvalidArgument("source.format", "'" + s.format + "' must be parquet or csv");
      }
    } else if (s.type == "postgres") {
      // {"type": "postgres", "query": "SELECT ..." | "table": "schema.name",
      //  "connection": "postgresql://...", "pushdown": false}
      if (!s.path.empty()) {
        return InvalidArgument("source.path", "a postgres source takes query or table, not path");
      }
      if (!s.format.empty()) {
        return InvalidArgument("source.format", "a postgres source has no format");
      }
      // Exactly one of query and table, a SELECT or a [schema.]name.
      ARROW_RETURN_NOT_OK(ParsePostgresRelation(s).status());
      ARROW_RETURN_NOT_OK(CheckPostgresUrl(s.connection));
    } else if (s.type == "push") {
      if (!s.path.empty() || !s.query.empty() || !s.table.empty() || !s.format.empty() ||
          !s.connection.empty()) {
        return InvalidArgument("source", "a push source takes no other fields");
      }
    } else {
      return InvalidArgument("source.type",
                             "'" + s.type + "' is not a source type: expected file, postgres "
                                            "or push");
    }
  }
  ARROW_RETURN_NOT_OK(ValidateIdentifier("timestamp_field", fs->timestamp_field));
  if (!fs->created_timestamp_field.empty()) {
    ARROW_RETURN_NOT_OK(ValidateIdentifier("created_timestamp_field", fs->created_timestamp_field));
    if (fs->created_timestamp_field == fs->timestamp_field) {
      return InvalidArgument("created_timestamp_field", "must differ from timestamp_field");
    }
  }
  ARROW_RETURN_NOT_OK(CheckDuration("ttl", &fs->ttl));
  if (!fs->materialization_schedule.empty()) {
    auto cron = CronSchedule::Parse(fs->materialization_schedule);
    if (!cron.ok()) {
      return InvalidArgument("materialization_schedule", cron.status().message());
    }
  }
  fs->on_invalid = AsciiLower(fs->on_invalid);
  if (fs->on_invalid != "fail" && fs->on_invalid != "drop" && fs->on_invalid != "null") {
    return InvalidArgument("on_invalid", "'" + fs->on_invalid + "' must be fail, drop or null");
  }
  if (schema != nullptr) {
    ARROW_RETURN_NOT_OK(CheckColumn(schema, "timestamp_field", fs->timestamp_field));
    ARROW_RETURN_NOT_OK(
        CheckColumn(schema, "created_timestamp_field", fs->created_timestamp_field));
  }
  if (fs->python_transformation) ARROW_RETURN_NOT_OK(ValidatePythonTransformation(fs, schema));
  return Status::OK();
}

namespace {

Status CheckValues(std::string_view field, const json::array& values,
                   const std::string& data_type) {
  if (values.empty()) return InvalidArgument(std::string(field), "must not be empty");
  for (size_t i = 0; i < values.size(); ++i) {
    if (!JsonMatchesType(values[i], data_type)) {
      return InvalidArgument(std::string(field) + "[" + std::to_string(i) + "]",
                             Preview(values[i]) + " is not a " + data_type +
                                 " value (the feature's data_type)");
    }
  }
  return Status::OK();
}

bool ValueIn(const json::value& v, const json::array& values) {
  for (const auto& a : values) {
    if (a == v) return true;
    if (a.is_number() && v.is_number() && a.to_number<double>() == v.to_number<double>()) {
      return true;
    }
  }
  return false;
}

Status CheckRules(ValidationRules* r, const std::string& t) {
  if ((r->min_value || r->max_value) && !IsNumericType(t)) {
    return Unprocessable(r->min_value ? "validation_rules.min_value" : "validation_rules.max_value",
                         "applies to int and float features, not " + t);
  }
  for (auto* bound : {&r->min_value, &r->max_value}) {
    if (*bound && !std::isfinite(**bound)) {
      return InvalidArgument(bound == &r->min_value ? "validation_rules.min_value"
                                                    : "validation_rules.max_value",
                             "must be a finite number");
    }
  }
  if (r->min_value && r->max_value && *r->min_value > *r->max_value) {
    return Unprocessable("validation_rules.min_value",
                         "min_value " + SerializeJson(json::value(*r->min_value)) +
                             " is greater than max_value " +
                             SerializeJson(json::value(*r->max_value)));
  }
  if (r->allowed_values) {
    ARROW_RETURN_NOT_OK(CheckValues("validation_rules.allowed_values", *r->allowed_values, t));
  }
  if (r->regex) {
    if (t != "string") {
      return Unprocessable("validation_rules.regex", "applies to string features, not " + t);
    }
    try {
      std::regex re(*r->regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return InvalidArgument("validation_rules.regex",
                             "'" + *r->regex + "' is not a valid regular expression: " + e.what());
    }
  }
  if (r->max_length) {
    if (t != "string" && t.rfind("list<", 0) != 0) {
      return Unprocessable("validation_rules.max_length",
                           "applies to string and list features, not " + t);
    }
    if (*r->max_length <= 0) {
      return InvalidArgument("validation_rules.max_length", "must be a positive integer");
    }
  }
  return Status::OK();
}

}  // namespace

Result<std::optional<ParsedTransformation>> ValidateFeature(
    Feature* f, const std::shared_ptr<arrow::Schema>& schema) {
  ARROW_RETURN_NOT_OK(ValidateIdentifier("name", f->name));
  ARROW_RETURN_NOT_OK(CheckLength("description", f->description, 4096));
  ARROW_RETURN_NOT_OK(CheckLength("owner", f->owner, 256));
  ARROW_RETURN_NOT_OK(CheckTags(f->tags));
  if (f->data_type.empty()) {
    return InvalidArgument("data_type",
                           "is required: int, float, string, bool, timestamp or list<T>");
  }
  ARROW_ASSIGN_OR_RAISE(f->data_type, CanonicalDataType("data_type", f->data_type));
  ARROW_RETURN_NOT_OK(CheckDuration("window_size", &f->window_size));
  ARROW_RETURN_NOT_OK(CheckRules(&f->validation_rules, f->data_type));
  if (f->allowed_values) {
    ARROW_RETURN_NOT_OK(CheckValues("allowed_values", *f->allowed_values, f->data_type));
  }
  if (f->default_value) {
    if (!JsonMatchesType(*f->default_value, f->data_type)) {
      return InvalidArgument("default_value", Preview(*f->default_value) + " is not a " +
                                                  f->data_type + " value (the data_type)");
    }
    const ValidationRules& r = f->validation_rules;
    if (f->default_value->is_number()) {
      double d = f->default_value->to_number<double>();
      if ((r.min_value && d < *r.min_value) || (r.max_value && d > *r.max_value)) {
        return Unprocessable("default_value", "is outside validation_rules' min_value/max_value");
      }
    }
    const json::array* allowed_lists[] = {f->allowed_values ? &*f->allowed_values : nullptr,
                                          r.allowed_values ? &*r.allowed_values : nullptr};
    for (const json::array* allowed : allowed_lists) {
      if (allowed && !ValueIn(*f->default_value, *allowed)) {
        return Unprocessable("default_value", Preview(*f->default_value) +
                                                  " is not one of the allowed values");
      }
    }
  }
  for (size_t i = 0; i < f->source_features.size(); ++i) {
    if (f->source_features[i].empty()) {
      return InvalidArgument("source_features[" + std::to_string(i) + "]", "must not be empty");
    }
  }

  std::optional<ParsedTransformation> parsed;
  if (!Trimmed(f->transformation).empty()) {
    ARROW_ASSIGN_OR_RAISE(parsed, ParseTransformation(f->transformation));
    // Refuse now what the engine cannot compute, naming it: nothing fails
    // later at run time for a reason knowable at definition time.
    ARROW_RETURN_NOT_OK(CheckSupported(*parsed));
    if (parsed->is_window || !f->window_size.empty()) {
      ARROW_RETURN_NOT_OK(ParseWindowSpec(*parsed, f->window_size).status());
    }
  } else {
    f->transformation.clear();
    if (!f->source_features.empty()) {
      return InvalidArgument("transformation",
                             "is required for a derived feature (one with source_features)");
    }
    if (!f->window_size.empty()) {
      return InvalidArgument("transformation",
                             "is required with window_size: the aggregate to compute, e.g. "
                             "SUM(amount)");
    }
  }
  if (schema != nullptr) {
    if (!parsed) {
      ARROW_RETURN_NOT_OK(CheckColumn(schema, "name", f->name));
    } else {
      for (const std::string& ref : parsed->column_refs) {
        if (!IsSourceFeatureName(*f, ref)) {
          ARROW_RETURN_NOT_OK(CheckColumn(schema, "transformation", ref));
        }
      }
    }
  }
  return parsed;
}

}  // namespace fstore
