#include "fstore/core/cron.h"

#include <array>
#include <charconv>
#include <chrono>
#include <vector>

#include <fmt/format.h>

namespace fstore {

namespace {

/// Days in a 400-year Gregorian cycle: months, days of month and weekdays all
/// repeat after it (146097 is a multiple of 7). A schedule that does not fire
/// within one cycle never fires.
constexpr int64_t kDaysPer400Years = 146097;

constexpr std::array<std::string_view, 12> kMonthNames = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED",
                                                        "THU", "FRI", "SAT"};

/// One of the five fields: its name in messages, its range and its names.
struct CronField {
  std::string_view name;
  int min;
  int max;
  const std::string_view* names;  // names[i] is the value names_base + i
  int name_count;
  int names_base;
  std::string_view names_text;  // "JAN-DEC", for messages
};

constexpr CronField kMinute{"minute", 0, 59, nullptr, 0, 0, ""};
constexpr CronField kHour{"hour", 0, 23, nullptr, 0, 0, ""};
constexpr CronField kDayOfMonth{"day-of-month", 1, 31, nullptr, 0, 0, ""};
constexpr CronField kMonth{"month", 1, 12, kMonthNames.data(), 12, 1, "JAN-DEC"};
// 7 is accepted as a second Sunday, as in Vixie cron.
constexpr CronField kDayOfWeek{"day-of-week", 0, 7, kDayNames.data(), 7, 0, "SUN-SAT"};

constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

constexpr std::string_view kExpectedFields =
    "expected 5 fields: minute hour day-of-month month day-of-week";

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() > kMax) return fmt::format("\"{}...\"", text.substr(0, kMax));
  return fmt::format("\"{}\"", text);
}

char ToUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToUpper(a[i]) != ToUpper(b[i])) return false;
  }
  return true;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

std::vector<std::string_view> SplitWhitespace(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && IsSpace(text[pos])) ++pos;
    const size_t start = pos;
    while (pos < text.size() && !IsSpace(text[pos])) ++pos;
    if (pos > start) parts.push_back(text.substr(start, pos - start));
  }
  return parts;
}

/// Parses a whole decimal number; false for anything else (or too many digits).
bool ParseNumber(std::string_view text, int* out) {
  if (text.empty() || text.size() > 6) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  std::from_chars(text.data(), text.data() + text.size(), *out);
  return true;
}

/// The errors of one field all read "<field>: <what>".
class FieldParser {
 public:
  FieldParser(const CronField& field, std::string_view expression)
      : field_(field), expression_(expression) {}

  /// Sets the bits of the values `text` lists; 7 in day-of-week sets bit 0.
  Status Parse(std::string_view text, uint64_t* bits) const {
    *bits = 0;
    for (std::string_view item : Split(text, ',')) {
      ARROW_RETURN_NOT_OK(ParseItem(text, item, bits));
    }
    return Status::OK();
  }

 private:
  Status Error(std::string what) const {
    return InvalidArgument(
        "", fmt::format("{}: {} in cron expression {}", field_.name, what, Quote(expression_)));
  }

  std::string ExpectedValues() const {
    std::string out = fmt::format("a number {}-{}", field_.min, field_.max);
    if (field_.names != nullptr) out += fmt::format(" or a name {}", field_.names_text);
    return out;
  }

  Status ParseValue(std::string_view text, int* out) const {
    if (ParseNumber(text, out)) {
      if (*out < field_.min || *out > field_.max) {
        return Error(fmt::format("{} is out of range {}-{}", *out, field_.min, field_.max));
      }
      return Status::OK();
    }
    for (int i = 0; i < field_.name_count; ++i) {
      if (EqualsIgnoreCase(text, field_.names[i])) {
        *out = field_.names_base + i;
        return Status::OK();
      }
    }
    if (text.empty()) return Error(fmt::format("a value is missing; expected {}", ExpectedValues()));
    return Error(fmt::format("{} is not {}", Quote(text), ExpectedValues()));
  }

  Status ParseItem(std::string_view field_text, std::string_view item, uint64_t* bits) const {
    if (item.empty()) {
      return Error(fmt::format("empty list item in {}; expected values separated by single commas",
                               Quote(field_text)));
    }
    std::string_view range = item;
    int step = 1;
    bool has_step = false;
    if (const size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      has_step = true;
      if (!ParseNumber(step_text, &step)) {
        return Error(fmt::format("step {} in {} is not a number", Quote(step_text), Quote(item)));
      }
      if (step < 1 || step > field_.max) {
        return Error(fmt::format("step {} in {} is out of range 1-{}", step, Quote(item),
                                 field_.max));
      }
    }
    int low = field_.min;
    int high = field_.max;
    if (range == "*") {
      // '*' in day-of-week means 0-6; 7 would only repeat Sunday.
      if (field_.name == kDayOfWeek.name) high = 6;
    } else if (const size_t dash = range.find('-'); dash != std::string_view::npos) {
      ARROW_RETURN_NOT_OK(ParseValue(range.substr(0, dash), &low));
      ARROW_RETURN_NOT_OK(ParseValue(range.substr(dash + 1), &high));
      if (low > high) {
        return Error(fmt::format("range {} is reversed; write the smaller value first",
                                 Quote(range)));
      }
    } else {
      ARROW_RETURN_NOT_OK(ParseValue(range, &low));
      // "5/15" means "5-max/15", as most cron implementations read it.
      high = has_step ? field_.max : low;
    }
    for (int value = low; value <= high; value += step) {
      const int bit = (field_.name == kDayOfWeek.name && value == 7) ? 0 : value;
      *bits |= uint64_t{1} << bit;
    }
    return Status::OK();
  }

  const CronField& field_;
  std::string_view expression_;
};

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view expression) {
  std::string_view fields_text = expression;
  size_t first = 0;
  while (first < expression.size() && IsSpace(expression[first])) ++first;
  if (first < expression.size() && expression[first] == '@') {
    std::string_view macro = expression.substr(first);
    while (!macro.empty() && IsSpace(macro.back())) macro.remove_suffix(1);
    fields_text = {};
    for (const auto& [name, fields] : kMacros) {
      if (EqualsIgnoreCase(macro, name)) fields_text = fields;
    }
    if (fields_text.empty()) {
      std::string lower(macro);
      for (char& c : lower) c = ToLower(c);
      return InvalidArgument(
          "", fmt::format("unknown cron macro {}; expected one of @yearly, @annually, @monthly, "
                          "@weekly, @daily, @midnight, @hourly{}",
                          Quote(macro), lower == "@reboot" ? " (@reboot has no meaning here)" : ""));
    }
  }

  const std::vector<std::string_view> fields = SplitWhitespace(fields_text);
  if (fields.size() != 5) {
    return InvalidArgument("", fmt::format("cron expression {} has {} field{}; {}",
                                           Quote(expression), fields.size(),
                                           fields.size() == 1 ? "" : "s", kExpectedFields));
  }

  CronSchedule schedule;
  schedule.expression_ = std::string(expression);
  uint64_t bits = 0;
  ARROW_RETURN_NOT_OK(FieldParser(kMinute, expression).Parse(fields[0], &bits));
  schedule.minutes_ = std::bitset<60>(bits);
  ARROW_RETURN_NOT_OK(FieldParser(kHour, expression).Parse(fields[1], &bits));
  schedule.hours_ = std::bitset<24>(bits);
  ARROW_RETURN_NOT_OK(FieldParser(kDayOfMonth, expression).Parse(fields[2], &bits));
  schedule.days_of_month_ = std::bitset<32>(bits);
  ARROW_RETURN_NOT_OK(FieldParser(kMonth, expression).Parse(fields[3], &bits));
  schedule.months_ = std::bitset<13>(bits);
  ARROW_RETURN_NOT_OK(FieldParser(kDayOfWeek, expression).Parse(fields[4], &bits));
  schedule.days_of_week_ = std::bitset<7>(bits);
  // As in Vixie cron, a day field counts as restricted unless it starts with
  // '*': "*/2" in day-of-month still combines with day-of-week by AND.
  schedule.day_of_month_restricted_ = fields[2].front() != '*';
  schedule.day_of_week_restricted_ = fields[4].front() != '*';
  return schedule;
}

Result<TimestampMicros> CronSchedule::NextAfter(TimestampMicros after) const {
  namespace chr = std::chrono;
  constexpr int64_t kMinutesPerDay = 24 * 60;
  // Work in whole minutes and days so that no step can overflow.
  const int64_t first_minute = FloorDiv(after, kMicrosPerMinute) + 1;
  const int64_t first_day = FloorDiv(first_minute, kMinutesPerDay);
  int64_t start_minute_of_day = first_minute - first_day * kMinutesPerDay;

  // The calendar repeats every 400 years, so the date of day `d` is looked up
  // as that of day `d` moved into 1970..2369 (chrono::year only spans +-32767).
  const int64_t cycle_shift = FloorDiv(first_day, kDaysPer400Years) * kDaysPer400Years;

  int64_t day = first_day;
  while (day <= first_day + kDaysPer400Years) {
    const chr::sys_days date{chr::days{day - cycle_shift}};
    const chr::year_month_day ymd{date};
    const unsigned month = static_cast<unsigned>(ymd.month());
    if (!months_[month]) {
      const chr::sys_days next_month{(ymd.year() / ymd.month() / 1) + chr::months{1}};
      day += (next_month - date).count();
      start_minute_of_day = 0;
      continue;
    }
    const bool dom_match = days_of_month_[static_cast<unsigned>(ymd.day())];
    const bool dow_match = days_of_week_[chr::weekday{date}.c_encoding()];
    const bool day_match = (day_of_month_restricted_ && day_of_week_restricted_)
                               ? (dom_match || dow_match)
                               : (dom_match && dow_match);
    if (day_match) {
      for (int64_t minute_of_day = start_minute_of_day; minute_of_day < kMinutesPerDay;) {
        const int64_t hour = minute_of_day / 60;
        if (!hours_[hour]) {
          minute_of_day = (hour + 1) * 60;
          continue;
        }
        if (minutes_[minute_of_day % 60]) {
          TimestampMicros result = 0;
          if (__builtin_mul_overflow(day, kMicrosPerDay, &result) ||
              __builtin_add_overflow(result, minute_of_day * kMicrosPerMinute, &result)) {
            return InvalidArgument(
                "", fmt::format("cron expression {}: the next run after {} is beyond the largest "
                                "representable time",
                                Quote(expression_), FormatTimestamp(after)));
          }
          return result;
        }
        ++minute_of_day;
      }
    }
    ++day;
    start_minute_of_day = 0;
  }
  return InvalidArgument("", fmt::format("cron expression {} never fires: no date matches its "
                                         "day-of-month, month and day-of-week",
                                         Quote(expression_)));
}

}  // namespace fstore
