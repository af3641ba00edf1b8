#pragma once

// The JSON text of a feature value, as the REST API serves it: the one
// rendering shared by the online serving path and the records the online
// store caches ready to serve (SharedRecord).
//
//   null            null
//   int             its digits                          42
//   float           shortest round-trip digits, always  2.0, 0.1, 1e+300
//                   with a '.' or an exponent so that
//                   it stays a float; NaN and the
//                   infinities (no JSON form) as null
//   string          quoted; '"', '\' and control characters escaped
//                   (\b \f \n \r \t, others \u00XX); other bytes, UTF-8
//                   included, as they are
//   bool            true / false
//   timestamp       quoted ISO 8601 UTC (FormatTimestamp)  "2024-01-01T00:00:00Z"
//   list            [ elements by the same rules, comma-separated ]

#include <string>
#include <string_view>

#include "fstore/online/online_store.h"

namespace fstore {

/// Appends the JSON text of `value` to `out`.
void AppendFeatureValueJson(const FeatureValue& value, std::string* out);

/// Appends `s` as a quoted JSON string.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace fstore
