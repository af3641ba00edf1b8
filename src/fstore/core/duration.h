#pragma once

// Durations as written in definitions: "30d", "6h", "15m", "45s", "1w",
// "500ms", "250us", and sums of them ("1h30m"). Stored as int64 microseconds.

#include <cstdint>
#include <string>
#include <string_view>

#include "fstore/core/status.h"

namespace fstore {

/// Parses a duration; refuses empty text, missing or unknown units, signs,
/// zero ("0s" is not a window or a ttl) and overflow. Units: w, d, h, m, s,
/// ms, us. The error message names the offending part.
Result<int64_t> ParseDuration(std::string_view text);

/// The shortest canonical text: 90 minutes -> "1h30m", 30 days -> "30d"
/// (weeks are not used on output).
std::string FormatDuration(int64_t micros);

}  // namespace fstore
