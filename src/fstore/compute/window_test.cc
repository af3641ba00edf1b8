#include "fstore/compute/window.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <arrow/api.h>
#include <arrow/json/from_string.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>

#include "fstore/core/duration.h"
#include "fstore/core/time.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<arrow::Array> A(const std::shared_ptr<arrow::DataType>& type,
                                const std::string& json) {
  auto r = arrow::json::ArrayFromJSONString(type, json);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ValueOrDie();
}

std::shared_ptr<arrow::Int64Array> Ints(const std::vector<int64_t>& v) {
  arrow::Int64Builder b;
  EXPECT_TRUE(b.AppendValues(v).ok());
  return std::static_pointer_cast<arrow::Int64Array>(b.Finish().ValueOrDie());
}

std::shared_ptr<arrow::Int64Array> Seconds(const std::vector<int64_t>& v) {
  std::vector<int64_t> micros;
  for (int64_t s : v) micros.push_back(s * kMicrosPerSecond);
  return Ints(micros);
}

WindowSpec Spec(WindowFunction f, int64_t range_seconds) {
  WindowSpec s;
  s.function = f;
  s.range_micros = range_seconds * kMicrosPerSecond;
  return s;
}

/// The window at each event, for one group unless `groups` is given.
Result<std::shared_ptr<arrow::Array>> AtEvents(WindowFunction f, int64_t range_seconds,
                                               const std::vector<int64_t>& times_s,
                                               const std::shared_ptr<arrow::Array>& values,
                                               std::vector<int64_t> groups = {}) {
  if (groups.empty()) groups.assign(times_s.size(), 1);
  return WindowAtEvents(Spec(f, range_seconds), *Ints(groups), *Seconds(times_s), values);
}

void ExpectArray(const std::shared_ptr<arrow::Array>& actual,
                 const std::shared_ptr<arrow::DataType>& type, const std::string& expected) {
  auto want = A(type, expected);
  ASSERT_TRUE(actual->type()->Equals(*type)) << actual->type()->ToString();
  EXPECT_TRUE(actual->ApproxEquals(*want, arrow::EqualOptions().atol(1e-9)))
      << "got      " << actual->ToString() << "\nexpected " << want->ToString();
}

auto i64 = arrow::int64;
auto f64 = arrow::float64;

// --- frames ------------------------------------------------------------------

TEST(WindowTest, CountStarIncludesTheWindowsLeftEdge) {
  // range 10s: at t=20 the frame is [10, 20], so the event at 10 is in.
  ASSERT_OK_AND_ASSIGN(auto out, AtEvents(WindowFunction::kCountStar, 10, {0, 10, 20, 30, 41},
                                          nullptr));
  ExpectArray(out, i64(), "[1, 2, 2, 2, 1]");
}

TEST(WindowTest, PeersAreAllInTheFrameAndShareTheValue) {
  auto v = A(i64(), "[1, 2, 3, 4, 5]");
  ASSERT_OK_AND_ASSIGN(auto count, AtEvents(WindowFunction::kCountStar, 4, {0, 5, 5, 5, 9}, v));
  ExpectArray(count, i64(), "[1, 3, 3, 3, 4]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 4, {0, 5, 5, 5, 9}, v));
  ExpectArray(sum, i64(), "[1, 9, 9, 9, 14]");
  // The first peer sees the later peers too (PostgreSQL: CURRENT ROW = last peer).
  ASSERT_OK_AND_ASSIGN(auto last, AtEvents(WindowFunction::kLastValue, 4, {0, 5, 5, 5, 9}, v));
  ExpectArray(last, i64(), "[1, 4, 4, 4, 5]");
}

TEST(WindowTest, DuplicateEventsCountTwice) {
  auto v = A(i64(), "[7, 7, 7]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 60, {3, 3, 3}, v));
  ExpectArray(sum, i64(), "[21, 21, 21]");
  ASSERT_OK_AND_ASSIGN(auto distinct, AtEvents(WindowFunction::kCountDistinct, 60, {3, 3, 3}, v));
  ExpectArray(distinct, i64(), "[1, 1, 1]");
}

TEST(WindowTest, GroupsAreSeparateAndSingleEventGroupsWork) {
  auto v = A(i64(), "[1, 2, 3, 4, 5]");
  ASSERT_OK_AND_ASSIGN(
      auto sum, AtEvents(WindowFunction::kSum, 100, {0, 1, 0, 0, 2}, v, {1, 1, 2, 3, 3}));
  ExpectArray(sum, i64(), "[1, 3, 3, 4, 9]");
}

TEST(WindowTest, UnsortedInputIsRefused) {
  auto st = AtEvents(WindowFunction::kCountStar, 10, {5, 4}, nullptr).status();
  ASSERT_TRUE(st.IsInvalid());
  EXPECT_THAT(st.message(), HasSubstr("not sorted"));
  st = AtEvents(WindowFunction::kCountStar, 10, {1, 2}, nullptr, {2, 1}).status();
  ASSERT_TRUE(st.IsInvalid());
  EXPECT_THAT(st.message(), HasSubstr("row 1"));
  auto null_times = std::static_pointer_cast<arrow::Int64Array>(A(i64(), "[1, null]"));
  st = WindowAtEvents(Spec(WindowFunction::kCountStar, 1), *Ints({1, 1}), *null_times, nullptr)
           .status();
  EXPECT_TRUE(st.IsInvalid());
  st = AtEvents(WindowFunction::kSum, 10, {1, 2}, A(i64(), "[1]")).status();
  EXPECT_TRUE(st.IsInvalid());
}

TEST(WindowTest, EmptyInput) {
  ASSERT_OK_AND_ASSIGN(auto out, AtEvents(WindowFunction::kSum, 10, {}, A(i64(), "[]")));
  EXPECT_EQ(out->length(), 0);
  EXPECT_TRUE(out->type()->Equals(*i64()));
}

// --- functions ---------------------------------------------------------------

TEST(WindowTest, CountSkipsNullsCountStarDoesNot) {
  auto v = A(i64(), "[null, 1, null, 2]");
  ASSERT_OK_AND_ASSIGN(auto count, AtEvents(WindowFunction::kCount, 10, {0, 1, 2, 3}, v));
  ExpectArray(count, i64(), "[0, 1, 1, 2]");
  ASSERT_OK_AND_ASSIGN(auto star, AtEvents(WindowFunction::kCountStar, 10, {0, 1, 2, 3}, v));
  ExpectArray(star, i64(), "[1, 2, 3, 4]");
}

TEST(WindowTest, SumOfNullsOrNothingIsNull) {
  auto v = A(i64(), "[null, 5, null, null]");
  // range 1s: t=3 sees [2, 3]: nulls only.
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 1, {0, 1, 2, 3}, v));
  ExpectArray(sum, i64(), "[null, 5, 5, null]");
}

TEST(WindowTest, SumAndAvgOfFloats) {
  auto v = A(f64(), "[0.5, 1.25, null, -2.0]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 2, {0, 1, 2, 3}, v));
  ExpectArray(sum, f64(), "[0.5, 1.75, 1.75, -0.75]");
  ASSERT_OK_AND_ASSIGN(auto avg, AtEvents(WindowFunction::kAvg, 2, {0, 1, 2, 3}, v));
  ExpectArray(avg, f64(), "[0.5, 0.875, 0.875, -0.375]");
}

TEST(WindowTest, FloatSumForgetsValuesThatLeft) {
  // Subtracting 1e20 back out would leave rounding garbage; the window
  // recombines only what is in it.
  auto v = A(f64(), "[1e20, 1.0, 2.0, 3.0]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 1, {0, 1, 2, 3}, v));
  auto d = std::static_pointer_cast<arrow::DoubleArray>(sum);
  EXPECT_EQ(d->Value(2), 3.0);
  EXPECT_EQ(d->Value(3), 5.0);
}

TEST(WindowTest, FloatSumWithInfinityAndNaN) {
  auto v = A(f64(), "[1.0, Inf, 2.0, 3.0]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 1, {0, 1, 2, 3}, v));
  auto d = std::static_pointer_cast<arrow::DoubleArray>(sum);
  EXPECT_TRUE(std::isinf(d->Value(1)));
  EXPECT_TRUE(std::isinf(d->Value(2)));
  EXPECT_EQ(d->Value(3), 5.0);  // the infinity has left
}

TEST(WindowTest, AvgOfIntegersIsExactDivision) {
  auto v = A(i64(), "[1, 2, null]");
  ASSERT_OK_AND_ASSIGN(auto avg, AtEvents(WindowFunction::kAvg, 10, {0, 1, 2}, v));
  ExpectArray(avg, f64(), "[1.0, 1.5, 1.5]");
  auto big = A(i64(), "[9007199254740993, 9007199254740995]");
  ASSERT_OK_AND_ASSIGN(auto avg_big, AtEvents(WindowFunction::kAvg, 10, {0, 1}, big));
  EXPECT_EQ(std::static_pointer_cast<arrow::DoubleArray>(avg_big)->Value(1), 9007199254740994.0);
}

TEST(WindowTest, SumOfSmallIntegersIsInt64AndOverflowIsAnError) {
  auto v = A(arrow::int32(), "[2147483647, 2147483647]");
  ASSERT_OK_AND_ASSIGN(auto sum, AtEvents(WindowFunction::kSum, 10, {0, 1}, v));
  ExpectArray(sum, i64(), "[2147483647, 4294967294]");
  auto big = A(i64(), "[9223372036854775807, 1]");
  auto st = AtEvents(WindowFunction::kSum, 10, {0, 1}, big).status();
  ASSERT_TRUE(st.IsInvalid());
  EXPECT_THAT(st.message(), HasSubstr("overflows int64"));
}

TEST(WindowTest, MinMaxAgeOut) {
  auto v = A(i64(), "[5, 1, 4, null, 3, 2]");
  std::vector<int64_t> t = {0, 1, 2, 3, 4, 5};
  ASSERT_OK_AND_ASSIGN(auto mn, AtEvents(WindowFunction::kMin, 2, t, v));
  ExpectArray(mn, i64(), "[5, 1, 1, 1, 3, 2]");
  ASSERT_OK_AND_ASSIGN(auto mx, AtEvents(WindowFunction::kMax, 2, t, v));
  ExpectArray(mx, i64(), "[5, 5, 5, 4, 4, 3]");
}

TEST(WindowTest, MinMaxKeepTheInputType) {
  auto s = A(arrow::utf8(), R"(["pear", "apple", null, "Zebra"])");
  ASSERT_OK_AND_ASSIGN(auto mx, AtEvents(WindowFunction::kMax, 100, {0, 1, 2, 3}, s));
  ExpectArray(mx, arrow::utf8(), R"(["pear", "pear", "pear", "pear"])");
  ASSERT_OK_AND_ASSIGN(auto mn, AtEvents(WindowFunction::kMin, 100, {0, 1, 2, 3}, s));
  ExpectArray(mn, arrow::utf8(), R"(["pear", "apple", "apple", "Zebra"])");  // bytes: 'Z' < 'a'
  auto ts_type = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  auto ts = A(ts_type, "[5, 3, 9]");
  ASSERT_OK_AND_ASSIGN(auto tmin, AtEvents(WindowFunction::kMin, 100, {0, 1, 2}, ts));
  ExpectArray(tmin, ts_type, "[5, 3, 3]");
  auto f = A(f64(), "[1.0, NaN, 2.0]");
  ASSERT_OK_AND_ASSIGN(auto fmax, AtEvents(WindowFunction::kMax, 100, {0, 1, 2}, f));
  EXPECT_TRUE(std::isnan(std::static_pointer_cast<arrow::DoubleArray>(fmax)->Value(2)));
  ASSERT_OK_AND_ASSIGN(auto fmin, AtEvents(WindowFunction::kMin, 100, {0, 1, 2}, f));
  ExpectArray(fmin, f64(), "[1.0, 1.0, 1.0]");
}

TEST(WindowTest, StddevSamp) {
  auto v = A(i64(), "[2, 4, 4, 4, 5, 5, 7, 9]");
  ASSERT_OK_AND_ASSIGN(auto sd, AtEvents(WindowFunction::kStddevSamp, 100,
                                         {0, 1, 2, 3, 4, 5, 6, 7}, v));
  auto d = std::static_pointer_cast<arrow::DoubleArray>(sd);
  EXPECT_TRUE(d->IsNull(0));  // fewer than 2 values
  EXPECT_NEAR(d->Value(1), std::sqrt(2.0), 1e-15);
  EXPECT_NEAR(d->Value(7), std::sqrt(32.0 / 7.0), 1e-15);
  // Values that leave do not disturb the rest (no subtraction).
  auto w = A(f64(), "[1e9, 1.0, 2.0, 3.0]");
  ASSERT_OK_AND_ASSIGN(auto sw, AtEvents(WindowFunction::kStddevSamp, 2, {0, 1, 2, 3}, w));
  EXPECT_DOUBLE_EQ(std::static_pointer_cast<arrow::DoubleArray>(sw)->Value(3), 1.0);
}

TEST(WindowTest, FirstAndLastValueByTimeWithPeersAndNulls) {
  auto v = A(i64(), "[10, 11, 12, null, 14]");
  std::vector<int64_t> t = {0, 0, 1, 1, 5};
  ASSERT_OK_AND_ASSIGN(auto first, AtEvents(WindowFunction::kFirstValue, 4, t, v));
  // At 5 the frame is [1, 5]: its first row is the first peer at 1 (12).
  ExpectArray(first, i64(), "[10, 10, 10, 10, 12]");
  ASSERT_OK_AND_ASSIGN(auto last, AtEvents(WindowFunction::kLastValue, 4, t, v));
  // At 1 the last peer is NULL: PostgreSQL's last_value returns it.
  ExpectArray(last, i64(), "[11, 11, null, null, 14]");
}

TEST(WindowTest, CountDistinct) {
  auto v = A(i64(), "[1, 2, 1, null, 3]");
  ASSERT_OK_AND_ASSIGN(auto d, AtEvents(WindowFunction::kCountDistinct, 2, {0, 1, 2, 3, 4}, v));
  ExpectArray(d, i64(), "[1, 2, 2, 2, 2]");
  auto s = A(arrow::utf8(), R"(["a", "b", "a", "c"])");
  ASSERT_OK_AND_ASSIGN(auto ds, AtEvents(WindowFunction::kCountDistinct, 100, {0, 1, 2, 3}, s));
  ExpectArray(ds, i64(), "[1, 2, 2, 3]");
  auto f = A(f64(), "[0.0, -0.0, NaN, NaN]");
  ASSERT_OK_AND_ASSIGN(auto df, AtEvents(WindowFunction::kCountDistinct, 100, {0, 1, 2, 3}, f));
  ExpectArray(df, i64(), "[1, 1, 2, 2]");
}

TEST(WindowTest, ResultTypes) {
  EXPECT_EQ(*WindowResultType(WindowFunction::kCountStar, nullptr).ValueOrDie(), *i64());
  EXPECT_EQ(*WindowResultType(WindowFunction::kSum, arrow::int16()).ValueOrDie(), *i64());
  EXPECT_EQ(*WindowResultType(WindowFunction::kSum, arrow::float32()).ValueOrDie(), *f64());
  EXPECT_EQ(*WindowResultType(WindowFunction::kAvg, arrow::int32()).ValueOrDie(), *f64());
  EXPECT_EQ(*WindowResultType(WindowFunction::kMax, arrow::utf8()).ValueOrDie(), *arrow::utf8());
  EXPECT_EQ(*WindowResultType(WindowFunction::kStddevSamp, i64()).ValueOrDie(), *f64());
  EXPECT_EQ(*WindowResultType(WindowFunction::kLastValue, arrow::boolean()).ValueOrDie(),
            *arrow::boolean());
  EXPECT_EQ(*WindowResultType(WindowFunction::kCountDistinct, arrow::utf8()).ValueOrDie(), *i64());
  auto st = WindowResultType(WindowFunction::kSum, arrow::utf8()).status();
  ASSERT_TRUE(st.IsInvalid());
  EXPECT_THAT(st.message(), HasSubstr("sum(x) needs a numeric argument"));
  EXPECT_FALSE(WindowResultType(WindowFunction::kAvg, arrow::boolean()).ok());
  EXPECT_FALSE(WindowResultType(WindowFunction::kMin, arrow::list(i64())).ok());
}

// --- WindowAtTimes -------------------------------------------------------------

TEST(WindowTest, AtTimesBetweenBeforeAndAfterEvents) {
  // Group 1: events at 10, 20, 20, 30; group 3: one event at 5.
  auto groups = Ints({1, 1, 1, 1, 3});
  auto times = Seconds({10, 20, 20, 30, 5});
  auto v = A(i64(), "[1, 2, 3, 4, 100]");
  // Queries: before the first event, exactly at an event, between events,
  // on the left edge, after everything aged out; group 2 has no events.
  auto qg = Ints({1, 1, 1, 1, 1, 1, 2, 3, 3});
  auto qt = Seconds({5, 10, 25, 35, 40, 41, 20, 5, 16});
  ASSERT_OK_AND_ASSIGN(auto sum, WindowAtTimes(Spec(WindowFunction::kSum, 10), *groups, *times,
                                               v, *qg, *qt));
  // t=25: [15, 25] -> 2+3; t=35: [25, 35] -> 4; t=40: [30, 40] -> 4 (edge); t=41: none.
  ExpectArray(sum, i64(), "[null, 1, 5, 4, 4, null, null, 100, null]");
  ASSERT_OK_AND_ASSIGN(auto count, WindowAtTimes(Spec(WindowFunction::kCountStar, 10), *groups,
                                                 *times, nullptr, *qg, *qt));
  ExpectArray(count, i64(), "[0, 1, 2, 1, 1, 0, 0, 1, 0]");
  ASSERT_OK_AND_ASSIGN(auto last, WindowAtTimes(Spec(WindowFunction::kLastValue, 10), *groups,
                                                *times, v, *qg, *qt));
  ExpectArray(last, i64(), "[null, 1, 3, 4, 4, null, null, 100, null]");
}

TEST(WindowTest, AtTimesExcludesLaterEventsAndChecksOrder) {
  auto groups = Ints({1, 1});
  auto times = Seconds({10, 11});
  ASSERT_OK_AND_ASSIGN(auto count, WindowAtTimes(Spec(WindowFunction::kCountStar, 100), *groups,
                                                 *times, nullptr, *Ints({1}),
                                                 *Ints({10 * kMicrosPerSecond + 999999})));
  ExpectArray(count, i64(), "[1]");
  auto st = WindowAtTimes(Spec(WindowFunction::kCountStar, 100), *groups, *times, nullptr,
                          *Ints({1, 1}), *Seconds({5, 4}))
                .status();
  ASSERT_TRUE(st.IsInvalid());
  EXPECT_THAT(st.message(), HasSubstr("queries are not sorted"));
}

// --- ParseWindowSpec -----------------------------------------------------------

Result<std::optional<WindowSpec>> ParseSpec(const std::string& sql,
                                            const std::string& window_size = "") {
  ARROW_ASSIGN_OR_RAISE(auto parsed, ParseTransformation(sql));
  return ParseWindowSpec(parsed, window_size);
}

constexpr const char* kSeed =
    "COUNT(*) OVER (PARTITION BY user_id ORDER BY timestamp RANGE BETWEEN INTERVAL '30 days' "
    "PRECEDING AND CURRENT ROW)";

TEST(WindowSpecTest, SeedTransformation) {
  ASSERT_OK_AND_ASSIGN(auto spec, ParseSpec(kSeed, "30d"));
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->function, WindowFunction::kCountStar);
  EXPECT_TRUE(spec->argument.is_null());
  EXPECT_EQ(spec->partition_by, std::vector<std::string>{"user_id"});
  EXPECT_EQ(spec->order_by, "timestamp");
  EXPECT_EQ(spec->range_micros, 30 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto without_size, ParseSpec(kSeed));
  EXPECT_EQ(without_size->range_micros, 30 * kMicrosPerDay);
}

TEST(WindowSpecTest, OverFormVariants) {
  ASSERT_OK_AND_ASSIGN(auto s, ParseSpec("sum(amount) OVER (PARTITION BY a, b ORDER BY ts RANGE "
                                         "INTERVAL '6 hours' PRECEDING)"));
  EXPECT_EQ(s->function, WindowFunction::kSum);
  EXPECT_TRUE(s->argument.is_object());
  EXPECT_TRUE(s->argument.as_object().contains("ColumnRef"));
  EXPECT_EQ(s->partition_by, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s->range_micros, 6 * kMicrosPerHour);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("STDDEV(x * 2) OVER (PARTITION BY k ORDER BY ts ASC RANGE "
                                    "BETWEEN '90 seconds'::interval PRECEDING AND CURRENT ROW)"));
  EXPECT_EQ(s->function, WindowFunction::kStddevSamp);
  EXPECT_EQ(s->range_micros, 90 * kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("max(x) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN "
                                    "INTERVAL '1' DAY PRECEDING AND CURRENT ROW)", "1d"));
  EXPECT_EQ(s->range_micros, kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("count(DISTINCT merchant) OVER (PARTITION BY k ORDER BY ts "
                                    "RANGE BETWEEN INTERVAL '2 weeks' PRECEDING AND CURRENT ROW)"));
  EXPECT_EQ(s->function, WindowFunction::kCountDistinct);
  EXPECT_EQ(s->range_micros, 14 * kMicrosPerDay);
}

TEST(WindowSpecTest, Shorthand) {
  ASSERT_OK_AND_ASSIGN(auto s, ParseSpec("SUM(amount)", "30d"));
  EXPECT_EQ(s->function, WindowFunction::kSum);
  EXPECT_TRUE(s->partition_by.empty());
  EXPECT_TRUE(s->order_by.empty());
  EXPECT_EQ(s->range_micros, 30 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("COUNT(*)", "1h30m"));
  EXPECT_EQ(s->function, WindowFunction::kCountStar);
  EXPECT_EQ(s->range_micros, 90 * kMicrosPerMinute);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("count(distinct x)", "7d"));
  EXPECT_EQ(s->function, WindowFunction::kCountDistinct);
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("last_value(status)", "7d"));
  EXPECT_EQ(s->function, WindowFunction::kLastValue);
}

TEST(WindowSpecTest, NotAWindow) {
  ASSERT_OK_AND_ASSIGN(auto s, ParseSpec("amount * 2"));
  EXPECT_FALSE(s.has_value());
  ASSERT_OK_AND_ASSIGN(s, ParseSpec("upper(name)"));
  EXPECT_FALSE(s.has_value());
}

void ExpectRefused(const std::string& sql, const std::string& window_size,
                   const std::string& field, const std::string& message) {
  auto r = ParseSpec(sql, window_size);
  ASSERT_FALSE(r.ok()) << sql;
  EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kInvalidArgument) << sql;
  const ErrorDetail* detail = ErrorOf(r.status());
  ASSERT_NE(detail, nullptr) << sql;
  EXPECT_EQ(detail->field(), field) << sql;
  EXPECT_THAT(ErrorMessageOf(r.status()), HasSubstr(message)) << sql;
}

TEST(WindowSpecTest, Refusals) {
  const std::string p = "OVER (PARTITION BY k ORDER BY ts ";
  ExpectRefused("sum(x) " + p + "ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)", "", "transformation",
                "ROWS frames are not supported");
  ExpectRefused("sum(x) " + p + "GROUPS BETWEEN 3 PRECEDING AND CURRENT ROW)", "",
                "transformation", "GROUPS frames are not supported");
  ExpectRefused("sum(x) " + p + "RANGE BETWEEN INTERVAL '1 day' PRECEDING AND INTERVAL '1 hour' "
                "PRECEDING)", "", "transformation", "must end at CURRENT ROW");
  ExpectRefused("sum(x) " + p + "RANGE BETWEEN INTERVAL '1 day' PRECEDING AND INTERVAL '1 hour' "
                "FOLLOWING)", "", "transformation", "FOLLOWING is not supported");
  ExpectRefused("sum(x) " + p + "RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)", "",
                "transformation", "FOLLOWING is not supported");
  ExpectRefused("sum(x) " + p + "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)", "",
                "transformation", "UNBOUNDED PRECEDING is not supported");
  ExpectRefused("sum(x) OVER (PARTITION BY k ORDER BY ts)", "", "transformation",
                "needs a frame");
  ExpectRefused("sum(x) " + p + "RANGE INTERVAL '1 day' PRECEDING EXCLUDE CURRENT ROW)", "",
                "transformation", "EXCLUDE");
  ExpectRefused("sum(x) " + p + "RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) / 2",
                "", "transformation", "inside an expression is not supported");
  ExpectRefused("SUM(x) / 2", "30d", "transformation", "derived feature");
  ExpectRefused("lag(x) " + p + "RANGE INTERVAL '1 day' PRECEDING)", "", "transformation",
                "LAG is not supported");
  ExpectRefused("array_agg(x)", "1d", "transformation", "ARRAY_AGG is not supported");
  ExpectRefused("sum(x) FILTER (WHERE x > 0) " + p + "RANGE INTERVAL '1 day' PRECEDING)", "",
                "transformation", "FILTER (WHERE ...) is not supported");
  ExpectRefused("sum(x) OVER (PARTITION BY k ORDER BY ts, id RANGE INTERVAL '1 day' PRECEDING)",
                "", "transformation", "single timestamp column");
  ExpectRefused("sum(x) OVER (PARTITION BY k ORDER BY ts + 1 RANGE INTERVAL '1 day' PRECEDING)",
                "", "transformation", "not an expression");
  ExpectRefused("sum(x) OVER (PARTITION BY k ORDER BY ts DESC RANGE INTERVAL '1 day' PRECEDING)",
                "", "transformation", "DESC");
  ExpectRefused("sum(x) OVER (PARTITION BY k)", "", "transformation", "needs ORDER BY");
  ExpectRefused("sum(x) OVER (ORDER BY ts RANGE INTERVAL '1 day' PRECEDING)", "",
                "transformation", "needs PARTITION BY");
  ExpectRefused("sum(x) " + p + "RANGE INTERVAL '1 month' PRECEDING)", "", "transformation",
                "not a fixed duration");
  ExpectRefused("sum(x) " + p + "RANGE INTERVAL '1 year 2 days' PRECEDING)", "",
                "transformation", "not a fixed duration");
  ExpectRefused("sum(x) " + p + "RANGE INTERVAL '1' MONTH PRECEDING)", "", "transformation",
                "not a fixed duration");
  ExpectRefused("sum(x) " + p + "RANGE 5 PRECEDING)", "", "transformation",
                "must be a constant interval");
  ExpectRefused("sum(DISTINCT x) " + p + "RANGE INTERVAL '1 day' PRECEDING)", "",
                "transformation", "DISTINCT is only supported in COUNT");
  ExpectRefused("sum(count(x)) " + p + "RANGE INTERVAL '1 day' PRECEDING)", "", "transformation",
                "cannot be nested");
  ExpectRefused("sum(x) OVER w", "", "transformation", "named window");
  ExpectRefused("sum(x ORDER BY y)", "1d", "transformation", "ORDER BY inside SUM");
  // window_size
  ExpectRefused(kSeed, "7d", "window_size", "must agree");
  ExpectRefused("SUM(amount)", "", "window_size", "is required");
  ExpectRefused("SUM(amount)", "30 days", "window_size", "invalid duration");
  ExpectRefused("amount", "30d", "window_size", "not an aggregate");
}

TEST(WindowSpecTest, RefusalsCarryThePosition) {
  auto r = ParseSpec("1 + sum(x) OVER (PARTITION BY k ORDER BY ts RANGE INTERVAL '1 day' "
                     "PRECEDING)");
  ASSERT_FALSE(r.ok());
  ASSERT_NE(ErrorOf(r.status()), nullptr);
  EXPECT_EQ(ErrorOf(r.status())->position(), 5);
}

TEST(WindowSpecTest, PostgresIntervals) {
  EXPECT_EQ(*ParsePostgresInterval("30 days"), 30 * kMicrosPerDay);
  EXPECT_EQ(*ParsePostgresInterval("6 hours"), 6 * kMicrosPerHour);
  EXPECT_EQ(*ParsePostgresInterval("15 minutes"), 15 * kMicrosPerMinute);
  EXPECT_EQ(*ParsePostgresInterval("1 day 2 hours"), kMicrosPerDay + 2 * kMicrosPerHour);
  EXPECT_EQ(*ParsePostgresInterval("90 seconds"), 90 * kMicrosPerSecond);
  EXPECT_EQ(*ParsePostgresInterval("2 weeks"), 14 * kMicrosPerDay);
  EXPECT_EQ(*ParsePostgresInterval("1.5 hours"), 90 * kMicrosPerMinute);
  EXPECT_EQ(*ParsePostgresInterval("1 DAY 02:30:00"), kMicrosPerDay + 150 * kMicrosPerMinute);
  EXPECT_EQ(*ParsePostgresInterval("@ 3 days"), 3 * kMicrosPerDay);
  EXPECT_EQ(*ParsePostgresInterval("1d 1h -30m"), kMicrosPerDay + 30 * kMicrosPerMinute);
  EXPECT_EQ(*ParsePostgresInterval("500 ms"), 500'000);
  EXPECT_EQ(*ParsePostgresInterval("45"), 45 * kMicrosPerSecond);
  EXPECT_EQ(*ParsePostgresInterval("0.000001 seconds"), 1);
  for (const char* bad : {"", "1 month", "2 years", "1 decade", "3 fortnights", "0 days",
                          "1 day ago", "-1 day", "days", "1:99"}) {
    EXPECT_FALSE(ParsePostgresInterval(bad).ok()) << bad;
  }
  EXPECT_THAT(ParsePostgresInterval("1 month").status().message(),
              HasSubstr("not a fixed duration"));
}

// --- scenario files -------------------------------------------------------------

#ifdef FSTORE_SOURCE_DIR
const std::filesystem::path kScenarioDir =
    std::filesystem::path(FSTORE_SOURCE_DIR) / "src/fstore/compute/testdata/windows";
#else
const std::filesystem::path kScenarioDir = "src/fstore/compute/testdata/windows";
#endif

Result<WindowFunction> FunctionNamed(const std::string& name) {
  static const std::vector<std::pair<std::string, WindowFunction>> kNames = {
      {"count(*)", WindowFunction::kCountStar},   {"count", WindowFunction::kCount},
      {"count_distinct", WindowFunction::kCountDistinct}, {"sum", WindowFunction::kSum},
      {"avg", WindowFunction::kAvg},               {"min", WindowFunction::kMin},
      {"max", WindowFunction::kMax},               {"stddev_samp", WindowFunction::kStddevSamp},
      {"first_value", WindowFunction::kFirstValue}, {"last_value", WindowFunction::kLastValue}};
  for (const auto& [n, f] : kNames) {
    if (n == name) return f;
  }
  return Status::Invalid("unknown function ", name);
}

/// A JSON array of values as an Arrow array: int64 if all numbers are
/// integers, float64 if any is not, utf8 for strings, bool for booleans.
Result<std::shared_ptr<arrow::Array>> ValuesFromJson(const boost::json::array& values) {
  std::shared_ptr<arrow::DataType> type = arrow::int64();
  for (const auto& v : values) {
    if (v.is_double()) type = arrow::float64();
    if (v.is_string()) type = arrow::utf8();
    if (v.is_bool()) type = arrow::boolean();
  }
  return arrow::json::ArrayFromJSONString(type, boost::json::serialize(values));
}

Result<std::shared_ptr<arrow::Int64Array>> TimesFromJson(const boost::json::array& rows,
                                                         size_t column) {
  std::vector<int64_t> out;
  for (const auto& row : rows) {
    ARROW_ASSIGN_OR_RAISE(int64_t t,
                          ParseTimestamp(std::string(row.as_array().at(column).as_string())));
    out.push_back(t);
  }
  return Ints(out);
}

std::shared_ptr<arrow::Int64Array> GroupsFromJson(const boost::json::array& rows) {
  std::vector<int64_t> out;
  for (const auto& row : rows) out.push_back(row.as_array().at(0).to_number<int64_t>());
  return Ints(out);
}

void ExpectJsonValues(const std::shared_ptr<arrow::Array>& actual,
                      const boost::json::array& expected, const std::string& what) {
  ASSERT_EQ(actual->length(), static_cast<int64_t>(expected.size())) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& want = expected[i];
    std::string where = what + " [" + std::to_string(i) + "]";
    if (want.is_null()) {
      EXPECT_TRUE(actual->IsNull(i)) << where << ": got " << actual->ToString();
      continue;
    }
    ASSERT_TRUE(actual->IsValid(i)) << where << ": got null, want " << want;
    ASSERT_OK_AND_ASSIGN(auto scalar, actual->GetScalar(i));
    if (want.is_string()) {
      EXPECT_EQ(scalar->ToString(), std::string(want.as_string())) << where;
    } else if (want.is_bool()) {
      EXPECT_EQ(scalar->ToString(), want.as_bool() ? "true" : "false") << where;
    } else {
      ASSERT_OK_AND_ASSIGN(auto as_double, scalar->CastTo(arrow::float64()));
      double got = std::static_pointer_cast<arrow::DoubleScalar>(as_double)->value;
      double w = want.to_number<double>();
      EXPECT_NEAR(got, w, 1e-9 * std::max(1.0, std::abs(w))) << where;
    }
  }
}

TEST(WindowScenarioTest, AllScenarioFiles) {
  ASSERT_TRUE(std::filesystem::is_directory(kScenarioDir)) << kScenarioDir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kScenarioDir)) {
    if (entry.path().extension() != ".json") continue;
    ++files;
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    boost::json::value doc = boost::json::parse(text.str());
    const auto& o = doc.as_object();
    SCOPED_TRACE(std::string(o.at("description").as_string()));
    WindowSpec spec;
    ASSERT_OK_AND_ASSIGN(spec.function,
                         FunctionNamed(std::string(o.at("function").as_string())));
    const std::string range(o.at("range").as_string());
    auto as_duration = ParseDuration(range);
    if (as_duration.ok()) {
      spec.range_micros = *as_duration;
    } else {
      ASSERT_OK_AND_ASSIGN(spec.range_micros, ParsePostgresInterval(range));
    }
    const auto& rows = o.at("rows").as_array();
    boost::json::array values;
    for (const auto& row : rows) {
      const auto& r = row.as_array();
      values.push_back(r.size() > 2 ? r[2] : boost::json::value());
    }
    auto groups = GroupsFromJson(rows);
    ASSERT_OK_AND_ASSIGN(auto times, TimesFromJson(rows, 1));
    ASSERT_OK_AND_ASSIGN(auto vals, ValuesFromJson(values));
    ASSERT_OK_AND_ASSIGN(auto at_events, WindowAtEvents(spec, *groups, *times, vals));
    ExpectJsonValues(at_events, o.at("expected_at_events").as_array(), "at events");
    if (o.contains("queries")) {
      const auto& queries = o.at("queries").as_array();
      auto qg = GroupsFromJson(queries);
      ASSERT_OK_AND_ASSIGN(auto qt, TimesFromJson(queries, 1));
      ASSERT_OK_AND_ASSIGN(auto at_times, WindowAtTimes(spec, *groups, *times, vals, *qg, *qt));
      ExpectJsonValues(at_times, o.at("expected_at_times").as_array(), "at times");
    }
  }
  EXPECT_GE(files, 8);
}

}  // namespace
}  // namespace fstore
