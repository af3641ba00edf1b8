#include "fstore/compute/internal/pg_datetime.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <limits>
#include <vector>

#include "fstore/core/time.h"

namespace fstore::pg {
namespace {

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Howard Hinnant's civil_from_days.
void CivilFromDays(int64_t z, int64_t* year, int* month, int* day) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  *year = y + (m <= 2);
  *month = static_cast<int>(m);
  *day = static_cast<int>(d);
}

// Rounds to PostgreSQL's timestamp precision (TSROUND: 6 decimal places).
double TsRound(double v) { return std::rint(v * 1e6) / 1e6; }

}  // namespace

int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int DaysInMonth(int64_t year, int month) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeap(year) ? 29 : kDays[month - 1];
}

DateTimeFields SplitTimestamp(int64_t micros) {
  DateTimeFields f;
  int64_t days = FloorDiv(micros, kMicrosPerDay);
  int64_t rest = micros - days * kMicrosPerDay;
  CivilFromDays(days, &f.year, &f.month, &f.day);
  f.hour = static_cast<int>(rest / kMicrosPerHour);
  rest %= kMicrosPerHour;
  f.minute = static_cast<int>(rest / kMicrosPerMinute);
  rest %= kMicrosPerMinute;
  f.second = static_cast<int>(rest / kMicrosPerSecond);
  f.micros = static_cast<int>(rest % kMicrosPerSecond);
  return f;
}

int64_t JoinTimestamp(const DateTimeFields& f) {
  return DaysFromCivil(f.year, f.month, f.day) * kMicrosPerDay + f.hour * kMicrosPerHour +
         f.minute * kMicrosPerMinute + f.second * kMicrosPerSecond + f.micros;
}

std::optional<int64_t> AddInterval(int64_t micros, const Interval& interval) {
  int64_t result = micros;
  if (interval.months != 0) {
    DateTimeFields f = SplitTimestamp(result);
    int64_t month = f.month + interval.months;
    if (month > 12) {
      f.year += (month - 1) / 12;
      month = (month - 1) % 12 + 1;
    } else if (month < 1) {
      f.year += month / 12 - 1;
      month = month % 12 + 12;
    }
    f.month = static_cast<int>(month);
    f.day = std::min(f.day, DaysInMonth(f.year, f.month));
    if (f.year > 294276 || f.year < -4713) return std::nullopt;
    result = JoinTimestamp(f);
  }
  int64_t day_micros = 0;
  if (__builtin_mul_overflow(interval.days, kMicrosPerDay, &day_micros) ||
      __builtin_add_overflow(result, day_micros, &result) ||
      __builtin_add_overflow(result, interval.micros, &result)) {
    return std::nullopt;
  }
  return result;
}

Interval Age(int64_t a, int64_t b) {
  DateTimeFields t1 = SplitTimestamp(a);
  DateTimeFields t2 = SplitTimestamp(b);
  int64_t usec = t1.micros - t2.micros;
  int64_t sec = t1.second - t2.second;
  int64_t min = t1.minute - t2.minute;
  int64_t hour = t1.hour - t2.hour;
  int64_t mday = t1.day - t2.day;
  int64_t mon = t1.month - t2.month;
  int64_t year = t1.year - t2.year;
  const bool flip = a < b;
  auto negate_all = [&] {
    usec = -usec;
    sec = -sec;
    min = -min;
    hour = -hour;
    mday = -mday;
    mon = -mon;
    year = -year;
  };
  if (flip) negate_all();
  while (usec < 0) usec += kMicrosPerSecond, --sec;
  while (sec < 0) sec += 60, --min;
  while (min < 0) min += 60, --hour;
  while (hour < 0) hour += 24, --mday;
  while (mday < 0) {
    mday += flip ? DaysInMonth(t1.year, t1.month) : DaysInMonth(t2.year, t2.month);
    --mon;
  }
  while (mon < 0) mon += 12, --year;
  if (flip) negate_all();
  Interval out;
  out.months = year * 12 + mon;
  out.days = mday;
  out.micros = ((hour * 60 + min) * 60 + sec) * kMicrosPerSecond + usec;
  return out;
}

int64_t IntervalSpanMicros(const Interval& i) {
  __int128 span = (static_cast<__int128>(i.months) * 30 + i.days) * kMicrosPerDay + i.micros;
  constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::clamp<__int128>(span, -kMax, kMax));
}

std::optional<Interval> MultiplyInterval(const Interval& span, double factor) {
  if (!std::isfinite(factor)) return std::nullopt;
  double month_d = static_cast<double>(span.months) * factor;
  double day_d = static_cast<double>(span.days) * factor;
  if (std::fabs(month_d) > 2147483647.0 || std::fabs(day_d) > 2147483647.0) return std::nullopt;
  Interval out;
  out.months = static_cast<int64_t>(month_d);
  out.days = static_cast<int64_t>(day_d);
  double month_remainder_days = TsRound((month_d - static_cast<double>(out.months)) * 30);
  double sec_remainder =
      TsRound((day_d - static_cast<double>(out.days) + month_remainder_days -
               static_cast<double>(static_cast<int64_t>(month_remainder_days))) *
              86400.0);
  if (std::fabs(sec_remainder) >= 86400.0) {
    int64_t extra = static_cast<int64_t>(sec_remainder / 86400.0);
    out.days += extra;
    sec_remainder -= static_cast<double>(extra) * 86400.0;
  }
  out.days += static_cast<int64_t>(month_remainder_days);
  double micros = std::rint(static_cast<double>(span.micros) * factor + sec_remainder * 1e6);
  if (std::fabs(micros) > 9.2e18) return std::nullopt;
  out.micros = static_cast<int64_t>(micros);
  return out;
}

namespace {

struct UnitSpec {
  std::string_view name;
  enum Kind { kMicros, kDays, kMonths } kind;
  int64_t multiple;
};

constexpr UnitSpec kUnits[] = {
    {"microsecond", UnitSpec::kMicros, 1},
    {"microseconds", UnitSpec::kMicros, 1},
    {"usec", UnitSpec::kMicros, 1},
    {"usecs", UnitSpec::kMicros, 1},
    {"us", UnitSpec::kMicros, 1},
    {"millisecond", UnitSpec::kMicros, 1000},
    {"milliseconds", UnitSpec::kMicros, 1000},
    {"msec", UnitSpec::kMicros, 1000},
    {"msecs", UnitSpec::kMicros, 1000},
    {"ms", UnitSpec::kMicros, 1000},
    {"second", UnitSpec::kMicros, kMicrosPerSecond},
    {"seconds", UnitSpec::kMicros, kMicrosPerSecond},
    {"sec", UnitSpec::kMicros, kMicrosPerSecond},
    {"secs", UnitSpec::kMicros, kMicrosPerSecond},
    {"s", UnitSpec::kMicros, kMicrosPerSecond},
    {"minute", UnitSpec::kMicros, kMicrosPerMinute},
    {"minutes", UnitSpec::kMicros, kMicrosPerMinute},
    {"min", UnitSpec::kMicros, kMicrosPerMinute},
    {"mins", UnitSpec::kMicros, kMicrosPerMinute},
    {"m", UnitSpec::kMicros, kMicrosPerMinute},
    {"hour", UnitSpec::kMicros, kMicrosPerHour},
    {"hours", UnitSpec::kMicros, kMicrosPerHour},
    {"hr", UnitSpec::kMicros, kMicrosPerHour},
    {"hrs", UnitSpec::kMicros, kMicrosPerHour},
    {"h", UnitSpec::kMicros, kMicrosPerHour},
    {"day", UnitSpec::kDays, 1},
    {"days", UnitSpec::kDays, 1},
    {"d", UnitSpec::kDays, 1},
    {"week", UnitSpec::kDays, 7},
    {"weeks", UnitSpec::kDays, 7},
    {"w", UnitSpec::kDays, 7},
    {"month", UnitSpec::kMonths, 1},
    {"months", UnitSpec::kMonths, 1},
    {"mon", UnitSpec::kMonths, 1},
    {"mons", UnitSpec::kMonths, 1},
    {"year", UnitSpec::kMonths, 12},
    {"years", UnitSpec::kMonths, 12},
    {"yr", UnitSpec::kMonths, 12},
    {"yrs", UnitSpec::kMonths, 12},
    {"y", UnitSpec::kMonths, 12},
    {"decade", UnitSpec::kMonths, 120},
    {"decades", UnitSpec::kMonths, 120},
    {"century", UnitSpec::kMonths, 1200},
    {"centuries", UnitSpec::kMonths, 1200},
    {"millennium", UnitSpec::kMonths, 12000},
    {"millennia", UnitSpec::kMonths, 12000},
};

const UnitSpec* FindUnit(std::string_view name) {
  for (const auto& u : kUnits) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

// Adds `value` (possibly fractional) of `unit` the way PostgreSQL's
// DecodeInterval does: a fraction of a year becomes whole months, of a month
// or week days and time, of a day time.
void AddQuantity(double value, const UnitSpec& unit, Interval* out) {
  double whole = std::trunc(value);
  double frac = value - whole;
  switch (unit.kind) {
    case UnitSpec::kMicros:
      out->micros += static_cast<int64_t>(std::rint(value * static_cast<double>(unit.multiple)));
      break;
    case UnitSpec::kDays: {
      out->days += static_cast<int64_t>(whole) * unit.multiple;
      double extra_days = frac * static_cast<double>(unit.multiple);
      double extra_whole = std::trunc(extra_days);
      out->days += static_cast<int64_t>(extra_whole);
      out->micros += static_cast<int64_t>(std::rint((extra_days - extra_whole) * 86400e6));
      break;
    }
    case UnitSpec::kMonths: {
      out->months += static_cast<int64_t>(whole) * unit.multiple;
      if (unit.multiple >= 12) {
        out->months += static_cast<int64_t>(std::rint(frac * static_cast<double>(unit.multiple)));
      } else {
        double extra_days = frac * 30.0;
        double extra_whole = std::trunc(extra_days);
        out->days += static_cast<int64_t>(extra_whole);
        out->micros += static_cast<int64_t>(std::rint((extra_days - extra_whole) * 86400e6));
      }
      break;
    }
  }
}

// "[+-]hh:mm[:ss[.ffffff]]" -> microseconds.
bool ParseTimeToken(std::string_view tok, int64_t* micros) {
  bool negative = false;
  if (!tok.empty() && (tok[0] == '-' || tok[0] == '+')) {
    negative = tok[0] == '-';
    tok.remove_prefix(1);
  }
  std::vector<std::string> parts;
  std::string cur;
  for (char c : tok) {
    if (c == ':') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  if (parts.size() < 2 || parts.size() > 3) return false;
  auto all_digits = [](const std::string& s) {
    if (s.empty()) return false;
    for (char c : s) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  };
  if (!all_digits(parts[0]) || !all_digits(parts[1]) || parts[0].size() > 9 ||
      parts[1].size() > 9) {
    return false;
  }
  int64_t total = std::stoll(parts[0]) * kMicrosPerHour + std::stoll(parts[1]) * kMicrosPerMinute;
  if (parts.size() == 3) {
    char* end = nullptr;
    double secs = std::strtod(parts[2].c_str(), &end);
    if (parts[2].empty() || *end != '\0' || secs < 0 || secs >= 60 ||
        !std::isdigit(static_cast<unsigned char>(parts[2][0]))) {
      return false;
    }
    total += static_cast<int64_t>(std::rint(secs * 1e6));
  }
  *micros = negative ? -total : total;
  return true;
}

}  // namespace

std::optional<Interval> ParseInterval(std::string_view text, std::string* error) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Split into tokens, separating a number from a unit written next to it ("30days").
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < lower.size()) {
    if (std::isspace(static_cast<unsigned char>(lower[i])) || lower[i] == ',') {
      ++i;
      continue;
    }
    size_t start = i;
    if (std::isalpha(static_cast<unsigned char>(lower[i]))) {
      while (i < lower.size() && std::isalpha(static_cast<unsigned char>(lower[i]))) ++i;
    } else {
      while (i < lower.size() && !std::isspace(static_cast<unsigned char>(lower[i])) &&
             !std::isalpha(static_cast<unsigned char>(lower[i])) && lower[i] != ',') {
        ++i;
      }
    }
    tokens.push_back(lower.substr(start, i - start));
  }
  if (!tokens.empty() && tokens[0] == "@") tokens.erase(tokens.begin());
  auto fail = [&]() -> std::optional<Interval> {
    *error = "invalid input syntax for type interval: \"" + std::string(text) + "\"";
    return std::nullopt;
  };
  if (tokens.empty()) return fail();
  Interval out;
  bool ago = false;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::string& tok = tokens[t];
    if (tok == "ago") {
      if (t + 1 != tokens.size()) return fail();
      ago = true;
      continue;
    }
    if (tok.find(':') != std::string::npos) {
      int64_t micros = 0;
      if (!ParseTimeToken(tok, &micros)) return fail();
      out.micros += micros;
      continue;
    }
    char* end = nullptr;
    double value = std::strtod(tok.c_str(), &end);
    if (end == tok.c_str() || *end != '\0' || !std::isfinite(value)) return fail();
    if (std::fabs(value) > 1e12) {
      *error = "interval field value out of range: \"" + std::string(text) + "\"";
      return std::nullopt;
    }
    if (t + 1 < tokens.size() && tokens[t + 1] != "ago" &&
        std::isalpha(static_cast<unsigned char>(tokens[t + 1][0]))) {
      const UnitSpec* unit = FindUnit(tokens[t + 1]);
      if (unit == nullptr) return fail();
      AddQuantity(value, *unit, &out);
      ++t;
    } else {
      AddQuantity(value, *FindUnit("second"), &out);  // a bare number is seconds
    }
  }
  if (ago) {
    out.months = -out.months;
    out.days = -out.days;
    out.micros = -out.micros;
  }
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (std::llabs(out.months) > kMax || std::llabs(out.days) > kMax) {
    *error = "interval out of range";
    return std::nullopt;
  }
  return out;
}

namespace {

void AppendSecondsFraction(std::string* out, int64_t micros_abs) {
  if (micros_abs == 0) return;
  char buf[16];
  std::snprintf(buf, sizeof(buf), ".%06lld", static_cast<long long>(micros_abs));
  std::string frac(buf);
  while (frac.back() == '0') frac.pop_back();
  *out += frac;
}

}  // namespace

std::string FormatInterval(const Interval& iv) {
  std::string out;
  bool is_zero = true;
  bool is_before = false;
  auto add_part = [&](int64_t value, const char* unit) {
    if (value == 0) return;
    if (!is_zero) out += ' ';
    if (is_before && value > 0) out += '+';
    out += std::to_string(value) + ' ' + unit + (value != 1 ? "s" : "");
    is_before = value < 0;
    is_zero = false;
  };
  add_part(iv.months / 12, "year");
  add_part(iv.months % 12, "mon");
  add_part(iv.days, "day");
  if (is_zero || iv.micros != 0) {
    int64_t abs_micros = iv.micros < 0 ? -iv.micros : iv.micros;
    bool minus = iv.micros < 0;
    int64_t hours = abs_micros / kMicrosPerHour;
    int64_t minutes = (abs_micros / kMicrosPerMinute) % 60;
    int64_t seconds = (abs_micros / kMicrosPerSecond) % 60;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%s%02lld:%02lld:%02lld", is_zero ? "" : " ",
                  minus ? "-" : (is_before ? "+" : ""), static_cast<long long>(hours),
                  static_cast<long long>(minutes), static_cast<long long>(seconds));
    out += buf;
    AppendSecondsFraction(&out, abs_micros % kMicrosPerSecond);
  }
  return out;
}

std::string FormatTimestampText(int64_t micros, bool with_zone) {
  DateTimeFields f = SplitTimestamp(micros);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04lld-%02d-%02d %02d:%02d:%02d",
                static_cast<long long>(f.year), f.month, f.day, f.hour, f.minute, f.second);
  std::string out(buf);
  AppendSecondsFraction(&out, f.micros);
  if (with_zone) out += "+00";
  return out;
}

std::optional<bool> ParseBool(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  std::string s;
  for (char c : text) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto prefix_of = [&](std::string_view word, size_t min_len) {
    return s.size() >= min_len && s.size() <= word.size() && word.substr(0, s.size()) == s;
  };
  if (prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || s == "1") return true;
  if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0") {
    return false;
  }
  return std::nullopt;
}

}  // namespace fstore::pg
