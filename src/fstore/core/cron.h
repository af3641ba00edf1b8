#pragma once

// Five-field cron expressions (minute hour day-of-month month day-of-week), as
// in Vixie cron: numbers, '*', ranges "1-5", steps "*/15" and "1-30/5", lists
// "1,15,30", month names JAN-DEC and day names SUN-SAT (case-insensitive), 7 as
// Sunday, and the macros @yearly @annually @monthly @weekly @daily @midnight
// @hourly. Evaluated in UTC. When both day fields are restricted, a day matches
// if either matches (Vixie semantics).

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

#include "fstore/core/status.h"
#include "fstore/core/time.h"

namespace fstore {

class CronSchedule {
 public:
  /// Parses `expression`; the error names the field ("hour"), the bad part and
  /// the allowed range.
  static Result<CronSchedule> Parse(std::string_view expression);

  /// The first minute strictly after `after` that matches, at second 0.
  /// Fails only for schedules that never fire (e.g. "0 0 30 2 *").
  Result<TimestampMicros> NextAfter(TimestampMicros after) const;

  /// The expression as given.
  const std::string& expression() const { return expression_; }

 private:
  CronSchedule() = default;

  std::string expression_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0..6, Sunday = 0
  bool day_of_month_restricted_ = false;
  bool day_of_week_restricted_ = false;
};

}  // namespace fstore
