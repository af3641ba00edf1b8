#pragma once

// Evaluation of a feature's `transformation` -- a PostgreSQL scalar expression
// over the source's columns -- vectorised over Arrow record batches with Arrow
// compute, giving PostgreSQL's results.
//
// Types. Each PostgreSQL type has one Arrow representation:
//   integer, smallint, bigint      -> int64 (arithmetic on two integer/smallint
//                                     operands still raises "integer out of range"
//                                     past 32 bits, as PostgreSQL does)
//   double precision, real, numeric -> float64. numeric is NOT arbitrary precision
//                                     here: it is a double, rounded the numeric way
//                                     (ROUND half away from zero, numeric % numeric,
//                                     casts to int round half away from zero), and
//                                     CAST(x AS real) rounds through float32.
//   text, varchar                  -> utf8 (comparisons are bytewise: the C collation)
//   boolean                        -> boolean
//   date                           -> date32
//   timestamp, timestamptz         -> timestamp[us, UTC]; the session time zone is
//                                     UTC, so both behave alike
//   interval                       -> month_day_nano_interval: PostgreSQL's months,
//                                     days and microseconds (nanoseconds = micros*1000)
// EXTRACT returns numeric in PostgreSQL 14+; here it is float64, whole-valued for
// integral fields (year, month, day, hour, minute, dow, doy, week, quarter...),
// fractional for second, epoch, milliseconds. date_part() is the same.
//
// Errors PostgreSQL raises while running (division by zero, out of range, invalid
// input syntax of a cast, logarithm of zero...) are Unprocessable from Evaluate,
// field "transformation", with PostgreSQL's message and the position of the
// construct. Like PostgreSQL, CASE, COALESCE, AND and OR do not evaluate a
// division, modulo, logarithm, square root or failing cast for the rows where its
// value is not needed (`CASE WHEN b = 0 THEN NULL ELSE a / b END` never fails).

#include <memory>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/compute/transformation.h"
#include "fstore/core/status.h"
#include "fstore/core/time.h"

namespace fstore {

/// The value of the clock functions (current_date, current_timestamp, now(),
/// localtimestamp...) during one evaluation: materialization passes the job's
/// end time, historical retrieval the row's time -- never the wall clock.
struct EvalContext {
  /// UTC microseconds since the epoch.
  TimestampMicros clock = 0;
};

/// Definition-time check, no schema needed: every node type, operator, function
/// and cast target in the expression is one the evaluator supports; otherwise
/// InvalidArgument, field "transformation", naming the construct, with its
/// 1-based position in the user's text. Window functions (count, sum, avg, min,
/// max, stddev_samp, stddev, first_value, last_value) are accepted with OVER --
/// and without, for a feature whose `window_size` aggregates it -- and only their
/// arguments are checked: window aggregation is the window module's.
Status CheckSupported(const ParsedTransformation& parsed);

namespace expression_internal {
struct Node;
}  // namespace expression_internal

/// A transformation bound to an input schema. Immutable once compiled; Evaluate
/// may be called from several threads at once.
class CompiledExpression {
 public:
  /// Binds the scalar expression to `input` (column references resolved by name;
  /// a qualified "t.c" falls back to "c"). Errors: a window function ->
  /// InvalidArgument naming it; an unknown column -> Unprocessable naming it; a
  /// type error ('a' || x is fine, text + 1 is not) -> InvalidArgument with
  /// PostgreSQL's message ("operator does not exist: text + integer"); an
  /// invalid literal (DATE '2024-02-30') -> InvalidArgument. All with field
  /// "transformation" and the 1-based position.
  static Result<CompiledExpression> Compile(const ParsedTransformation& parsed,
                                            const std::shared_ptr<arrow::Schema>& input);

  /// The Arrow type of the result: int64, float64, utf8, boolean,
  /// timestamp[us, UTC], date32 or month_day_nano_interval (see the top of this
  /// file). A bare NULL or string literal is utf8.
  const std::shared_ptr<arrow::DataType>& type() const { return type_; }

  /// Input columns read, in first-use order, as named in `input`.
  const std::vector<std::string>& input_columns() const { return input_columns_; }

  /// True when the value depends on EvalContext::clock (now(), current_date...).
  bool reads_clock() const;

  /// Evaluates over a batch which has at least the input columns (by name, of
  /// types castable to those compiled against): one value per row, of type().
  Result<std::shared_ptr<arrow::Array>> Evaluate(const arrow::RecordBatch& batch,
                                                 const EvalContext& ctx) const;

 private:
  CompiledExpression() = default;

  std::shared_ptr<const expression_internal::Node> root_;
  std::shared_ptr<arrow::DataType> type_;
  std::vector<std::string> input_columns_;
  std::vector<std::shared_ptr<arrow::DataType>> column_types_;  // read as, per input column
};

}  // namespace fstore
