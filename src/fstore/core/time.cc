#include "fstore/core/time.h"

#include <chrono>

#include <fmt/format.h>

namespace fstore {

namespace {

constexpr std::string_view kExpectedTimestamp =
    "expected ISO-8601 such as 2024-01-01, 2024-01-01T10:00:00 or "
    "2024-01-01T10:00:00.123456+02:00";

/// Days in a 400-year Gregorian cycle; a multiple of 7, so weekdays repeat too.
constexpr int64_t kDaysPer400Years = 146097;

/// Quotes user text for a message, shortened so that a huge input cannot
/// produce a huge error.
std::string Quote(std::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() > kMax) return fmt::format("\"{}...\"", text.substr(0, kMax));
  return fmt::format("\"{}\"", text);
}

Status BadTimestamp(std::string_view text, std::string_view what) {
  return InvalidArgument(
      "", fmt::format("invalid timestamp {}: {}; {}", Quote(text), what, kExpectedTimestamp));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

/// Reads exactly `count` decimal digits at `pos` into `out`.
bool ReadDigits(std::string_view text, size_t pos, size_t count, int* out) {
  if (pos + count > text.size()) return false;
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (!IsDigit(text[i])) return false;
    value = value * 10 + (text[i] - '0');
  }
  *out = value;
  return true;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

Result<TimestampMicros> ParseTimestamp(std::string_view text) {
  namespace chr = std::chrono;
  if (text.empty()) return BadTimestamp(text, "it is empty");

  int year = 0, month = 0, day = 0;
  if (!ReadDigits(text, 0, 4, &year) || text.size() < 10 || text[4] != '-' ||
      !ReadDigits(text, 5, 2, &month) || text[7] != '-' || !ReadDigits(text, 8, 2, &day)) {
    return BadTimestamp(text, "the date must be YYYY-MM-DD");
  }
  if (month < 1 || month > 12) {
    return BadTimestamp(text, fmt::format("month {:02d} is out of range 01-12", month));
  }
  const chr::year_month_day date{chr::year{year}, chr::month{static_cast<unsigned>(month)},
                                 chr::day{static_cast<unsigned>(day)}};
  if (!date.ok()) {
    return BadTimestamp(
        text, fmt::format("day {:02d} does not exist in {:04d}-{:02d}", day, year, month));
  }
  int64_t micros =
      static_cast<int64_t>(chr::sys_days(date).time_since_epoch().count()) * kMicrosPerDay;

  size_t pos = 10;
  if (pos == text.size()) return micros;
  if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') {
    return BadTimestamp(text, fmt::format("unexpected {} after the date", Quote(text.substr(pos))));
  }
  ++pos;

  int hour = 0, minute = 0, second = 0;
  if (!ReadDigits(text, pos, 2, &hour) || pos + 8 > text.size() || text[pos + 2] != ':' ||
      !ReadDigits(text, pos + 3, 2, &minute) || text[pos + 5] != ':' ||
      !ReadDigits(text, pos + 6, 2, &second)) {
    return BadTimestamp(text, "the time must be hh:mm:ss");
  }
  if (hour > 23) return BadTimestamp(text, fmt::format("hour {:02d} is out of range 00-23", hour));
  if (minute > 59) {
    return BadTimestamp(text, fmt::format("minute {:02d} is out of range 00-59", minute));
  }
  if (second > 59) {
    return BadTimestamp(
        text, fmt::format("second {:02d} is out of range 00-59 (no leap seconds)", second));
  }
  micros += hour * kMicrosPerHour + minute * kMicrosPerMinute + second * kMicrosPerSecond;
  pos += 8;

  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    int64_t fraction = 0;
    while (pos + digits < text.size() && IsDigit(text[pos + digits])) {
      if (digits < 6) fraction = fraction * 10 + (text[pos + digits] - '0');
      ++digits;
    }
    if (digits == 0) return BadTimestamp(text, "'.' must be followed by 1 to 6 fractional digits");
    if (digits > 6) {
      return BadTimestamp(
          text, fmt::format("{} fractional digits, but at most 6 (microseconds) are kept", digits));
    }
    for (size_t i = digits; i < 6; ++i) fraction *= 10;
    micros += fraction;
    pos += digits;
  }

  if (pos < text.size()) {
    const char c = text[pos];
    if (c == 'Z' || c == 'z') {
      ++pos;
    } else if (c == '+' || c == '-') {
      int offset_hours = 0, offset_minutes = 0;
      if (!ReadDigits(text, pos + 1, 2, &offset_hours) || pos + 6 > text.size() ||
          text[pos + 3] != ':' || !ReadDigits(text, pos + 4, 2, &offset_minutes)) {
        return BadTimestamp(
            text, fmt::format("the UTC offset {} must be +hh:mm or -hh:mm", Quote(text.substr(pos))));
      }
      if (offset_hours > 23 || offset_minutes > 59) {
        return BadTimestamp(text, fmt::format("the UTC offset {} is out of range (at most 23:59)",
                                              Quote(text.substr(pos, 6))));
      }
      const int64_t offset = offset_hours * kMicrosPerHour + offset_minutes * kMicrosPerMinute;
      // 10:00+02:00 is 08:00 UTC.
      micros += (c == '+') ? -offset : offset;
      pos += 6;
    }
  }
  if (pos != text.size()) {
    return BadTimestamp(text, fmt::format("unexpected trailing {}", Quote(text.substr(pos))));
  }
  return micros;
}

std::string FormatTimestamp(TimestampMicros micros) {
  namespace chr = std::chrono;
  int64_t days = FloorDiv(micros, kMicrosPerDay);
  // Not micros - days * kMicrosPerDay: that overflows near INT64_MIN.
  int64_t micros_of_day = micros % kMicrosPerDay;
  if (micros_of_day < 0) micros_of_day += kMicrosPerDay;
  // chrono::year only spans +-32767; move the date into 1970..2369 by whole
  // 400-year cycles (the calendar repeats exactly) and add the years back.
  const int64_t cycles = FloorDiv(days, kDaysPer400Years);
  days -= cycles * kDaysPer400Years;
  const chr::year_month_day date{chr::sys_days{chr::days{days}}};
  const int64_t year = static_cast<int>(date.year()) + cycles * 400;

  std::string out = (year >= 0 && year <= 9999) ? fmt::format("{:04d}", year)
                                                 : fmt::format("{:+05d}", year);
  const int64_t hour = micros_of_day / kMicrosPerHour;
  const int64_t minute = micros_of_day / kMicrosPerMinute % 60;
  const int64_t second = micros_of_day / kMicrosPerSecond % 60;
  const int64_t fraction = micros_of_day % kMicrosPerSecond;
  out += fmt::format("-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}", static_cast<unsigned>(date.month()),
                     static_cast<unsigned>(date.day()), hour, minute, second);
  if (fraction != 0) out += fmt::format(".{:06d}", fraction);
  out += 'Z';
  return out;
}

TimestampMicros NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fstore
