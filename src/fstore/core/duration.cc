#include "fstore/core/duration.h"

#include <array>

#include <fmt/format.h>

#include "fstore/core/time.h"

namespace fstore {

namespace {

constexpr std::string_view kExpectedUnits = "expected units w, d, h, m, s, ms, us";

struct DurationUnit {
  std::string_view suffix;
  int64_t micros;
};

constexpr std::array<DurationUnit, 7> kParseUnits = {{
    {"w", 7 * kMicrosPerDay},
    {"d", kMicrosPerDay},
    {"h", kMicrosPerHour},
    {"m", kMicrosPerMinute},
    {"s", kMicrosPerSecond},
    {"ms", 1000},
    {"us", 1},
}};

/// Output units, largest first; weeks are left out on purpose ("14d", not "2w").
constexpr std::array<DurationUnit, 6> kFormatUnits = {{
    {"d", kMicrosPerDay},
    {"h", kMicrosPerHour},
    {"m", kMicrosPerMinute},
    {"s", kMicrosPerSecond},
    {"ms", 1000},
    {"us", 1},
}};

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() > kMax) return fmt::format("\"{}...\"", text.substr(0, kMax));
  return fmt::format("\"{}\"", text);
}

Status BadDuration(std::string_view text, std::string_view what) {
  return InvalidArgument("", fmt::format("invalid duration {}: {}", Quote(text), what));
}

Status TooLong(std::string_view text) {
  return BadDuration(text, "it is too long; durations are limited to about 292,000 years (106751991d)");
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

Result<int64_t> ParseDuration(std::string_view text) {
  if (text.empty()) {
    return BadDuration(text, fmt::format("it is empty; {}, e.g. \"30d\" or \"1h30m\"",
                                         kExpectedUnits));
  }
  if (text.front() == '+' || text.front() == '-') {
    return BadDuration(text, "signs are not allowed; a duration is always positive");
  }
  int64_t total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t part_start = pos;
    if (!IsDigit(text[pos])) {
      return BadDuration(text, fmt::format("expected a number at {}", Quote(text.substr(pos))));
    }
    int64_t count = 0;
    bool overflow = false;
    for (; pos < text.size() && IsDigit(text[pos]); ++pos) {
      overflow = overflow || __builtin_mul_overflow(count, 10, &count) ||
                 __builtin_add_overflow(count, text[pos] - '0', &count);
    }
    if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
      return BadDuration(text,
                         "fractions are not supported; combine units instead (\"1h30m\", not "
                         "\"1.5h\")");
    }
    const size_t unit_start = pos;
    while (pos < text.size() && IsLetter(text[pos])) ++pos;
    const std::string_view part = text.substr(part_start, pos - part_start);
    const std::string_view suffix = text.substr(unit_start, pos - unit_start);
    if (suffix.empty()) {
      return BadDuration(text, fmt::format("{} has no unit; {}", Quote(part), kExpectedUnits));
    }
    const DurationUnit* unit = nullptr;
    for (const DurationUnit& candidate : kParseUnits) {
      if (candidate.suffix == suffix) unit = &candidate;
    }
    if (unit == nullptr) {
      return BadDuration(text, fmt::format("unknown unit {} in {}; {}", Quote(suffix), Quote(part),
                                           kExpectedUnits));
    }
    int64_t micros = 0;
    if (overflow || __builtin_mul_overflow(count, unit->micros, &micros) ||
        __builtin_add_overflow(total, micros, &total)) {
      return TooLong(text);
    }
  }
  if (total == 0) {
    return BadDuration(text, "it is zero; a window or ttl must be longer than 0");
  }
  return total;
}

std::string FormatDuration(int64_t micros) {
  if (micros == 0) return "0s";
  std::string out;
  // Unsigned, so that the magnitude of INT64_MIN is representable.
  uint64_t rest = static_cast<uint64_t>(micros);
  if (micros < 0) {
    out = "-";
    rest = 0 - rest;
  }
  for (const DurationUnit& unit : kFormatUnits) {
    const uint64_t size = static_cast<uint64_t>(unit.micros);
    if (rest >= size) {
      out += fmt::format("{}{}", rest / size, unit.suffix);
      rest %= size;
    }
  }
  return out;
}

}  // namespace fstore
