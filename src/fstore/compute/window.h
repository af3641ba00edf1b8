#pragma once

// Windowed aggregations: a feature such as
//   COUNT(*) OVER (PARTITION BY user_id ORDER BY ts
//                  RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW)
// or its shorthand, the bare aggregate `COUNT(*)` with window_size "30d",
// computed natively and exactly with PostgreSQL's RANGE frame: the value at
// time t aggregates the entity's events with event time in [t - range, t],
// both ends included, so all peers (events at exactly t) are in the frame.
//
// The engine slides two pointers over each group's rows (sorted by time), so a
// whole column is computed in O(n) amortised time whatever the window length.
//
// Semantics shared by every function (PostgreSQL's):
//   * NULL values are skipped by every aggregate except COUNT(*), and by
//     first_value/last_value NOT at all: those return the first/last row's
//     value even when it is NULL, as PostgreSQL's first_value/last_value do.
//   * An empty frame (or one of NULLs only) gives NULL; COUNT gives 0.
//   * first_value is the value of the frame's earliest row; among rows at that
//     same time the first in input order. last_value is the frame's latest row
//     (a peer of the current row); among peers the last in input order.
//     (PostgreSQL leaves the order of peers unspecified; the engine's inputs are
//     sorted stably, so input order is the order rows arrived in.)
//   * MIN/MAX over strings compare bytes (PostgreSQL's "C" collation); floats
//     order NaN above every number, as PostgreSQL does.
//   * COUNT(DISTINCT x) in a window is an fstore extension (PostgreSQL refuses
//     DISTINCT in window functions); it counts distinct non-null values, with
//     -0.0 equal to 0.0 and all NaNs equal.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <arrow/type_fwd.h>
#include <boost/json/value.hpp>

#include "fstore/compute/transformation.h"
#include "fstore/core/status.h"

namespace fstore {

enum class WindowFunction {
  kCountStar,      ///< COUNT(*): rows in the frame
  kCount,          ///< COUNT(x): non-null values
  kCountDistinct,  ///< COUNT(DISTINCT x): distinct non-null values
  kSum,
  kAvg,
  kMin,
  kMax,
  kStddevSamp,     ///< STDDEV_SAMP(x) (also written STDDEV(x)); NULL for < 2 values
  kFirstValue,     ///< first_value(x): the value of the frame's earliest row
  kLastValue,      ///< last_value(x): the value of the frame's latest row
};

/// The SQL name, lower-case: "count", "sum", "stddev_samp", "first_value", ...
std::string_view WindowFunctionName(WindowFunction function);

/// A windowed feature, from its definition.
struct WindowSpec {
  WindowFunction function = WindowFunction::kCountStar;
  /// The argument expression node (libpg_query JSON); null for COUNT(*).
  boost::json::value argument;
  /// Column names from PARTITION BY. Empty for the shorthand: the caller fills
  /// in the feature set's join keys.
  std::vector<std::string> partition_by;
  /// The ORDER BY column. Empty for the shorthand: the caller uses the feature
  /// set's timestamp field.
  std::string order_by;
  /// The frame's length in microseconds: RANGE BETWEEN INTERVAL '30 days'
  /// PRECEDING AND CURRENT ROW gives 30 days. Always > 0.
  int64_t range_micros = 0;
};

/// The window spec of a feature, from its parsed `transformation` and its
/// `window_size` (a duration such as "30d", or empty). Two forms:
///   (a) AGG(x) OVER (PARTITION BY k... ORDER BY ts
///                    RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW)
///       (`RANGE INTERVAL '30 days' PRECEDING` is the same frame);
///   (b) the shorthand: a bare aggregate, `SUM(amount)`, `COUNT(*)`,
///       `COUNT(DISTINCT x)`, with window_size giving the frame.
/// Returns nullopt when the feature is not windowed (no aggregate, no OVER and
/// no window_size). Errors are InvalidArgument:
///   * field "window_size": an unparsable duration; a window_size that
///     disagrees with the OVER frame; a bare aggregate without window_size; a
///     window_size on a transformation that is not an aggregate;
///   * field "transformation" (with the character position where known), naming
///     the construct: ROWS/GROUPS frames, UNBOUNDED PRECEDING or a missing
///     frame, frames not ending at CURRENT ROW, FOLLOWING, EXCLUDE, an aggregate
///     nested in an expression or in another aggregate, unknown aggregates and
///     other window functions, FILTER, aggregate ORDER BY / WITHIN GROUP, a
///     named window (OVER w), ORDER BY missing or not a single column or DESC,
///     a missing PARTITION BY in an OVER clause (a window over all entities is
///     not a feature), a RANGE offset that is not a positive fixed-length
///     interval (months and years are refused: their length varies), and
///     DISTINCT on anything but COUNT.
Result<std::optional<WindowSpec>> ParseWindowSpec(const ParsedTransformation& parsed,
                                                  const std::string& window_size);

/// PostgreSQL's interval input as a fixed duration in microseconds: "30 days",
/// "6 hours", "15 minutes", "1 day 2 hours", "90 seconds", "2 weeks", "1.5 hours",
/// "1 day 02:30:00", "@ 3 days", with PostgreSQL's unit spellings (d, day,
/// days, h, hr, hours, m, min, mins, s, sec, ms, us, w, week, ...). A number
/// without a unit is in `bare_number_unit_micros` (seconds, as in PostgreSQL,
/// unless the literal has a field qualifier: INTERVAL '1' DAY). One day is 24
/// hours (time is UTC). Months, years, decades, centuries and millennia are
/// refused (not a fixed duration), as are zero, negative ("ago") and
/// overflowing intervals. Errors are InvalidArgument with an empty field.
Result<int64_t> ParsePostgresInterval(std::string_view text,
                                      int64_t bare_number_unit_micros = 1'000'000);

/// The result type of `function` over an argument of type `input` (ignored for
/// COUNT(*)), PostgreSQL's where Arrow has it:
///   COUNT, COUNT(DISTINCT) -> int64;
///   SUM over integers -> int64 (PostgreSQL: bigint for smallint/int, numeric for
///     bigint; a sum that overflows int64 is an error at compute time), over
///     floats -> float64 (PostgreSQL: real for real);
///   AVG -> float64 (PostgreSQL: numeric for integers, the exact quotient
///     rounded once to float64 here);
///   STDDEV_SAMP -> float64;
///   MIN, MAX, first_value, last_value -> the input type.
/// SUM/AVG/STDDEV_SAMP need a numeric input; MIN/MAX need an ordered type
/// (numbers, strings, binary, bool, temporal types); otherwise InvalidArgument.
Result<std::shared_ptr<arrow::DataType>> WindowResultType(
    WindowFunction function, const std::shared_ptr<arrow::DataType>& input);

/// The aggregate at each event. Rows are sorted by group id (ascending), then
/// event time (ascending); the order of rows with equal times is their input
/// order, which decides first_value/last_value among peers.
/// `group_ids`: equal ids = the same entity; `times`: event times (UTC
/// microseconds); `values`: the evaluated argument (numeric, string, binary,
/// bool or temporal; NULLs allowed; ignored for COUNT(*), where it may be
/// null). Returns one value per row, of WindowResultType: the aggregate over
/// the rows of the same group with time in [t - range, t], t the row's time,
/// including all of t's peers, also those after the row in the input
/// (PostgreSQL's RANGE frame, where CURRENT ROW extends to the last peer).
/// InvalidArgument when the rows are not sorted, when group ids or times hold
/// NULLs, or when lengths differ.
Result<std::shared_ptr<arrow::Array>> WindowAtEvents(const WindowSpec& spec,
                                                     const arrow::Int64Array& group_ids,
                                                     const arrow::Int64Array& times,
                                                     const std::shared_ptr<arrow::Array>& values);

/// The aggregate at query times: for each query (group, t), sorted by group
/// then t, over the group's rows with time in [t - range, t] (events after t
/// excluded; a group without events gives an empty frame). Events are sorted as
/// for WindowAtEvents. Used for online serving (t = the materialization's end
/// time: whether that end is included is the caller's choice) and for
/// historical retrieval between events. Same errors as WindowAtEvents, also
/// for unsorted or NULL queries.
Result<std::shared_ptr<arrow::Array>> WindowAtTimes(const WindowSpec& spec,
                                                    const arrow::Int64Array& group_ids,
                                                    const arrow::Int64Array& times,
                                                    const std::shared_ptr<arrow::Array>& values,
                                                    const arrow::Int64Array& query_group_ids,
                                                    const arrow::Int64Array& query_times);

}  // namespace fstore
