#pragma once

#include <string>
#include <string_view>

namespace fstore {

/// ASCII lower-case (names, keywords, units): bytes outside A-Z unchanged, so
/// UTF-8 text passes through intact and the result does not depend on locale.
inline std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace fstore
