#pragma once

// JSON text as the REST API and the CLI write it. Boost.JSON parses and
// holds our JSON, but its serializer (Boost 1.81) writes every double in
// scientific notation (5.2 as 5.2E0, -1.0 as -1E0): valid JSON, but not the
// product description's `"latency_ms": 5.2`, and 1.81 has no option to
// change it. So values are written here, with doubles in their shortest
// round-trip form (std::to_chars), and everything else as Boost.JSON does.
//
//   null, true, false   as they are
//   integers            their digits                        42, -7, 18446744073709551615
//   doubles             shortest round-trip digits, always  2.0, 0.1, 1e+300, -0.0
//                       with a '.' or an exponent so that
//                       they read back as doubles; NaN and
//                       the infinities (no JSON form) as null
//   strings             quoted; '"', '\' and control characters escaped
//                       (\b \f \n \r \t, others \u00XX); other bytes, UTF-8
//                       included, as they are
//   arrays, objects     comma-separated, no blanks, objects in their order

#include <string>
#include <string_view>

#include <boost/json/fwd.hpp>

namespace fstore {

/// Appends `s` as a quoted JSON string.
void AppendJsonString(std::string_view s, std::string* out);

/// Appends the JSON text of `d` (null when not finite).
void AppendJsonDouble(double d, std::string* out);

/// Appends the JSON text of `value`.
void AppendJson(const boost::json::value& value, std::string* out);

/// The JSON text of `value`.
std::string SerializeJson(const boost::json::value& value);

}  // namespace fstore
