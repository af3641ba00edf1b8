#include "fstore/core/json_text.h"

#include <charconv>
#include <cmath>

#include <boost/json/value.hpp>

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

void AppendJsonDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    *out += "null";
    return;
  }
  char digits[32];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, d);
  out->append(digits, end);
  if (std::string_view(digits, end - digits).find_first_of(".e") == std::string_view::npos) {
    *out += ".0";
  }
}

void AppendJson(const boost::json::value& value, std::string* out) {
  switch (value.kind()) {
    case boost::json::kind::null: *out += "null"; return;
    case boost::json::kind::bool_: *out += value.get_bool() ? "true" : "false"; return;
    case boost::json::kind::int64: {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value.get_int64());
      out->append(digits, end);
      return;
    }
    case boost::json::kind::uint64: {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value.get_uint64());
      out->append(digits, end);
      return;
    }
    case boost::json::kind::double_: AppendJsonDouble(value.get_double(), out); return;
    case boost::json::kind::string: AppendJsonString(value.get_string(), out); return;
    case boost::json::kind::array: {
      out->push_back('[');
      bool first = true;
      for (const auto& item : value.get_array()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(item, out);
      }
      out->push_back(']');
      return;
    }
    case boost::json::kind::object: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.get_object()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(key, out);
        out->push_back(':');
        AppendJson(item, out);
      }
      out->push_back('}');
      return;
    }
  }
}

std::string SerializeJson(const boost::json::value& value) {
  std::string out;
  AppendJson(value, &out);
  return out;
}

}  // namespace fstore
