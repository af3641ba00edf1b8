#pragma once

// Time in fstore: UTC, microsecond precision, as int64 microseconds since the
// Unix epoch (the same unit as Arrow's timestamp[us, UTC]).

#include <cstdint>
#include <string>
#include <string_view>

#include "fstore/core/status.h"

namespace fstore {

/// Microseconds since 1970-01-01T00:00:00Z.
using TimestampMicros = int64_t;

inline constexpr int64_t kMicrosPerSecond = 1'000'000;
inline constexpr int64_t kMicrosPerMinute = 60 * kMicrosPerSecond;
inline constexpr int64_t kMicrosPerHour = 60 * kMicrosPerMinute;
inline constexpr int64_t kMicrosPerDay = 24 * kMicrosPerHour;

/// Parses ISO-8601 / RFC 3339: "2024-01-01", "2024-01-01T10:00:00",
/// "2024-01-01 10:00:00.123456", with an optional "Z" or "+hh:mm"/"-hh:mm"
/// offset; no offset means UTC. Up to 6 fractional digits (more is an error:
/// we would lose precision silently). Invalid dates (Feb 30) are refused.
Result<TimestampMicros> ParseTimestamp(std::string_view text);

/// "2024-01-01T10:00:00Z", or "2024-01-01T10:00:00.123456Z" when there is a
/// fractional part (always 6 digits then).
std::string FormatTimestamp(TimestampMicros micros);

/// The wall clock, for bookkeeping (created_at); never for feature values.
TimestampMicros NowMicros();

}  // namespace fstore
