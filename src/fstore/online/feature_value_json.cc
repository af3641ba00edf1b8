#include "fstore/online/feature_value_json.h"

#include <charconv>

#include "fstore/core/time.h"

namespace fstore {

void AppendFeatureValueJson(const FeatureValue& value, std::string* out) {
  if (const double* d = std::get_if<double>(&value)) {
    AppendJsonDouble(*d, out);
  } else if (const int64_t* i = std::get_if<int64_t>(&value)) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, *i);
    out->append(digits, end);
  } else if (std::holds_alternative<std::monostate>(value)) {
    *out += "null";
  } else if (const bool* b = std::get_if<bool>(&value)) {
    *out += *b ? "true" : "false";
  } else if (const std::string* s = std::get_if<std::string>(&value)) {
    AppendJsonString(*s, out);
  } else if (const TimestampValue* t = std::get_if<TimestampValue>(&value)) {
    AppendJsonString(FormatTimestamp(t->micros), out);
  } else {
    const ListValue& list = std::get<ListValue>(value);
    out->push_back('[');
    for (size_t k = 0; k < list.items.size(); ++k) {
      if (k) out->push_back(',');
      AppendFeatureValueJson(list.items[k], out);
    }
    out->push_back(']');
  }
}

}  // namespace fstore
