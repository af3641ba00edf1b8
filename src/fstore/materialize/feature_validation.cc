#include "fstore/materialize/feature_validation.h"

#include <cmath>

#include <arrow/api.h>
#include <arrow/compute/api.h>

#include "fstore/core/time.h"

namespace fstore {
namespace cp = arrow::compute;
namespace json = boost::json;

namespace {

std::vector<int64_t> TrueRows(const arrow::BooleanArray& mask) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < mask.length(); ++i) {
    if (mask.IsValid(i) && mask.Value(i)) rows.push_back(i);
  }
  return rows;
}

// Rows where `values` is null but `original` was not: values that failed to convert.
std::vector<int64_t> LostRows(const arrow::Array& original, const arrow::Array& values) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < original.length(); ++i) {
    if (original.IsValid(i) && values.IsNull(i)) rows.push_back(i);
  }
  return rows;
}

// Converts element by element, nulling what does not convert: the slow path,
// taken only when the vectorised cast refused the array.
Result<std::shared_ptr<arrow::Array>> CastLeniently(const std::shared_ptr<arrow::Array>& input,
                                                    const std::shared_ptr<arrow::DataType>& type) {
  std::unique_ptr<arrow::ArrayBuilder> builder;
  ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), type, &builder));
  for (int64_t i = 0; i < input->length(); ++i) {
    if (input->IsNull(i)) {
      ARROW_RETURN_NOT_OK(builder->AppendNull());
      continue;
    }
    auto one = cp::Cast(*input->Slice(i, 1), type);
    if (one.ok()) {
      ARROW_ASSIGN_OR_RAISE(auto scalar, (*one)->GetScalar(0));
      ARROW_RETURN_NOT_OK(builder->AppendScalar(*scalar));
    } else {
      ARROW_RETURN_NOT_OK(builder->AppendNull());
    }
  }
  return builder->Finish();
}

Result<std::shared_ptr<arrow::Array>> ConvertToDeclared(const std::shared_ptr<arrow::Array>& computed,
                                                        const std::shared_ptr<arrow::DataType>& type) {
  if (computed->type()->Equals(*type)) return computed;
  std::shared_ptr<arrow::Array> input = computed;
  if (arrow::is_floating(computed->type_id()) && arrow::is_integer(type->id())) {
    // PostgreSQL rounds float -> int half away from zero (Arrow's HALF_TOWARDS_INFINITY).
    cp::RoundOptions round(0, cp::RoundMode::HALF_TOWARDS_INFINITY);
    ARROW_ASSIGN_OR_RAISE(auto rounded, cp::Round(computed, round));
    input = rounded.make_array();
  }
  if (computed->type_id() == arrow::Type::TIMESTAMP && type->id() == arrow::Type::TIMESTAMP) {
    // Same instant, relabelled to our unit/zone.
    cp::CastOptions options = cp::CastOptions::Safe(type);
    options.allow_time_truncate = true;
    auto cast = cp::Cast(arrow::Datum(input), options);
    if (cast.ok()) return cast->make_array();
  }
  auto cast = cp::Cast(*input, type);
  if (cast.ok()) return *cast;
  return CastLeniently(input, type);
}

Result<std::shared_ptr<arrow::Array>> JsonValuesToArray(const json::array& values,
                                                        const std::shared_ptr<arrow::DataType>& type) {
  std::unique_ptr<arrow::ArrayBuilder> builder;
  ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), type, &builder));
  for (const auto& v : values) {
    switch (type->id()) {
      case arrow::Type::INT64:
        if (v.is_int64()) {
          ARROW_RETURN_NOT_OK(static_cast<arrow::Int64Builder&>(*builder).Append(v.as_int64()));
          continue;
        }
        break;
      case arrow::Type::DOUBLE:
        if (v.is_number()) {
          ARROW_RETURN_NOT_OK(
              static_cast<arrow::DoubleBuilder&>(*builder).Append(v.to_number<double>()));
          continue;
        }
        break;
      case arrow::Type::STRING:
        if (v.is_string()) {
          ARROW_RETURN_NOT_OK(static_cast<arrow::StringBuilder&>(*builder).Append(
              std::string_view(v.as_string())));
          continue;
        }
        break;
      case arrow::Type::BOOL:
        if (v.is_bool()) {
          ARROW_RETURN_NOT_OK(static_cast<arrow::BooleanBuilder&>(*builder).Append(v.as_bool()));
          continue;
        }
        break;
      case arrow::Type::TIMESTAMP:
        if (v.is_string()) {
          auto t = ParseTimestamp(std::string_view(v.as_string()));
          if (t.ok()) {
            ARROW_RETURN_NOT_OK(static_cast<arrow::TimestampBuilder&>(*builder).Append(*t));
            continue;
          }
        }
        break;
      default:
        break;
    }
    // Values of other shapes (lists) cannot be in a value set: skip them.
  }
  return builder->Finish();
}

}  // namespace

Result<std::shared_ptr<arrow::DataType>> ArrowTypeOf(const std::string& t) {
  if (t == "int") return arrow::int64();
  if (t == "float") return arrow::float64();
  if (t == "string") return arrow::utf8();
  if (t == "bool") return arrow::boolean();
  if (t == "timestamp") return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  if (t.rfind("list<", 0) == 0 && t.back() == '>') {
    ARROW_ASSIGN_OR_RAISE(auto element, ArrowTypeOf(t.substr(5, t.size() - 6)));
    return arrow::list(element);
  }
  return InvalidArgument("data_type", "unknown data type '" + t + "'");
}

Result<CheckedColumn> CheckFeatureColumn(const Feature& feature,
                                         const std::shared_ptr<arrow::Array>& computed) {
  ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(feature.data_type));
  CheckedColumn out;
  ARROW_ASSIGN_OR_RAISE(out.values, ConvertToDeclared(computed, type));
  auto add = [&](std::string rule, std::vector<int64_t> rows) {
    if (!rows.empty()) out.violations.push_back({std::move(rule), std::move(rows)});
  };
  // Nothing can have been lost when no conversion happened.
  if (out.values != computed) add("data_type", LostRows(*computed, *out.values));

  const ValidationRules& r = feature.validation_rules;
  const auto& values = out.values;
  if (r.not_null && *r.not_null) {
    ARROW_ASSIGN_OR_RAISE(auto nulls, cp::IsNull(values));
    add("not_null", TrueRows(*nulls.array_as<arrow::BooleanArray>()));
  }
  if (arrow::is_numeric(type->id())) {
    for (const auto& [bound, name, fn] :
         {std::tuple{r.min_value, "min_value", "less"}, std::tuple{r.max_value, "max_value", "greater"}}) {
      if (!bound) continue;
      ARROW_ASSIGN_OR_RAISE(auto as_double, cp::Cast(*values, arrow::float64()));
      ARROW_ASSIGN_OR_RAISE(auto mask, cp::CallFunction(fn, {as_double, arrow::Datum(*bound)}));
      add(name, TrueRows(*mask.array_as<arrow::BooleanArray>()));
    }
  }
  for (const auto& [allowed, name] :
       {std::pair{&r.allowed_values, "allowed_values"}, std::pair{&feature.allowed_values, "allowed_values"}}) {
    if (!*allowed) continue;
    ARROW_ASSIGN_OR_RAISE(auto set, JsonValuesToArray(**allowed, type));
    ARROW_ASSIGN_OR_RAISE(auto in, cp::IsIn(values, cp::SetLookupOptions(set)));
    ARROW_ASSIGN_OR_RAISE(auto not_in, cp::Invert(in));
    ARROW_ASSIGN_OR_RAISE(auto valid, cp::IsValid(values));
    ARROW_ASSIGN_OR_RAISE(auto mask, cp::And(not_in, valid));
    add(name, TrueRows(*mask.array_as<arrow::BooleanArray>()));
  }
  if (r.regex && type->id() == arrow::Type::STRING) {
    cp::MatchSubstringOptions options(*r.regex);
    ARROW_ASSIGN_OR_RAISE(auto match, cp::CallFunction("match_substring_regex", {values}, &options));
    ARROW_ASSIGN_OR_RAISE(auto mask, cp::Invert(match));
    add("regex", TrueRows(*mask.array_as<arrow::BooleanArray>()));
  }
  if (r.max_length) {
    std::shared_ptr<arrow::Array> lengths;
    if (type->id() == arrow::Type::STRING) {
      ARROW_ASSIGN_OR_RAISE(auto len, cp::CallFunction("utf8_length", {values}));
      lengths = len.make_array();
    } else if (type->id() == arrow::Type::LIST) {
      ARROW_ASSIGN_OR_RAISE(auto len, cp::CallFunction("list_value_length", {values}));
      lengths = len.make_array();
    }
    if (lengths) {
      ARROW_ASSIGN_OR_RAISE(auto mask,
                            cp::CallFunction("greater", {lengths, arrow::Datum(*r.max_length)}));
      add("max_length", TrueRows(*mask.array_as<arrow::BooleanArray>()));
    }
  }
  // Merge the two allowed_values checks (rule and top-level) into one entry.
  std::vector<RuleViolations> merged;
  for (auto& v : out.violations) {
    auto it = std::find_if(merged.begin(), merged.end(),
                           [&](const RuleViolations& m) { return m.rule == v.rule; });
    if (it == merged.end()) {
      merged.push_back(std::move(v));
    } else {
      it->rows.insert(it->rows.end(), v.rows.begin(), v.rows.end());
      std::sort(it->rows.begin(), it->rows.end());
      it->rows.erase(std::unique(it->rows.begin(), it->rows.end()), it->rows.end());
    }
  }
  out.violations = std::move(merged);
  return out;
}

}  // namespace fstore
