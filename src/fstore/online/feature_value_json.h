#pragma once

// The JSON text of a feature value, as the REST API serves it: the one
// rendering shared by the online serving path and the records the online
// store caches ready to serve (SharedRecord).
//
//   null            null
//   int             its digits                          42
//   float, string   as core/json_text.h writes doubles and strings
//                   (2.0, 0.1, 1e+300; NaN and the infinities as null)
//   bool            true / false
//   timestamp       quoted ISO 8601 UTC (FormatTimestamp)  "2024-01-01T00:00:00Z"
//   list            [ elements by the same rules, comma-separated ]

#include <string>
#include <string_view>

#include "fstore/core/json_text.h"  // AppendJsonString, AppendJsonDouble
#include "fstore/online/online_store.h"

namespace fstore {

/// Appends the JSON text of `value` to `out`.
void AppendFeatureValueJson(const FeatureValue& value, std::string* out);

}  // namespace fstore
