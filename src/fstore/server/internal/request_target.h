#pragma once

// Splitting and percent-decoding an HTTP request target ("/a%20b?x=1&y=2")
// into HttpRequest::path and HttpRequest::query. Private to server/: the
// server fills requests with it before routing, so routes see decoded paths.
//
// Hand-written rather than Boost.URL: its headers ship with Boost 1.81 but its
// compiled library (libboost-url) is not installed here, and the rules needed
// are a few lines.

#include <map>
#include <string>
#include <string_view>

namespace fstore::server_internal {

inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes "%XX" escapes (and '+' as a space when `plus_is_space`, as in
/// query strings). A '%' not followed by two hex digits is kept literally.
inline std::string PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      const int hi = HexDigitValue(text[i + 1]);
      const int lo = HexDigitValue(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

/// Parses "a=1&b=x+y&c" into {a: "1", b: "x y", c: ""}; a repeated key keeps
/// its last value; empty pairs ("&&") are skipped.
inline std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1), true);
    out[std::move(key)] = std::move(value);
  }
  return out;
}

/// Splits a request target into its decoded path and query. An absolute-form
/// target ("http://host/x?y") is reduced to its path and query; a fragment is
/// dropped; an empty path becomes "/".
inline void SplitRequestTarget(std::string_view target, std::string* path,
                               std::map<std::string, std::string>* query) {
  if (const size_t hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  if (target.starts_with("http://") || target.starts_with("https://")) {
    const size_t authority = target.find("//") + 2;
    const size_t slash = target.find_first_of("/?", authority);
    target = slash == std::string_view::npos ? std::string_view() : target.substr(slash);
  }
  const size_t qmark = target.find('?');
  const std::string_view raw_path = target.substr(0, qmark);
  *path = raw_path.empty() ? std::string("/") : PercentDecode(raw_path, false);
  if (qmark != std::string_view::npos) {
    *query = ParseQuery(target.substr(qmark + 1));
  } else {
    query->clear();
  }
}

}  // namespace fstore::server_internal
