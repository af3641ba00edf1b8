#include "fstore/online/feature_value_json.h"

#include <charconv>
#include <cmath>

#include "fstore/core/time.h"

namespace fstore {

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  size_t plain = 0;  // start of the run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s, plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(escaped, sizeof escaped);
      }
    }
  }
  out->append(s, plain, s.size() - plain);
  out->push_back('"');
}

void AppendFeatureValueJson(const FeatureValue& value, std::string* out) {
  if (const double* d = std::get_if<double>(&value)) {
    if (!std::isfinite(*d)) {
      *out += "null";
      return;
    }
    char digits[32];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, *d);
    out->append(digits, end);
    if (std::string_view(digits, end - digits).find_first_of(".e") == std::string_view::npos) {
      *out += ".0";
    }
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
