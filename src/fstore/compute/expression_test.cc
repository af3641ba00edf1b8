#include "fstore/compute/expression.h"

#include <gmock/gmock.h>

#include <functional>
#include <random>

#include <arrow/api.h>
#include <arrow/json/from_string.h>

#include "fstore/compute/transformation.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<arrow::Array> Json(const std::shared_ptr<arrow::DataType>& type,
                                   const std::string& json) {
  return arrow::json::ArrayFromJSONString(type, json).ValueOrDie();
}

// Four rows; the third is mostly NULL.
std::shared_ptr<arrow::RecordBatch> TestBatch() {
  auto ts = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  auto schema = arrow::schema({
      arrow::field("a", arrow::int64()),
      arrow::field("b", arrow::int64()),
      arrow::field("x", arrow::float64()),
      arrow::field("s", arrow::utf8()),
      arrow::field("flag", arrow::boolean()),
      arrow::field("d", arrow::date32()),
      arrow::field("ts", ts),
      arrow::field("small", arrow::int32()),
  });
  return arrow::RecordBatch::Make(
      schema, 4,
      {Json(arrow::int64(), "[7, -7, null, 10]"), Json(arrow::int64(), "[2, 2, 0, null]"),
       Json(arrow::float64(), "[1.5, -2.5, null, 0.0]"),
       Json(arrow::utf8(), R"(["Hello", " pad ", null, "abc"])"),
       Json(arrow::boolean(), "[true, false, null, true]"),
       // 2024-02-29, 1990-06-15, null, 1969-12-31
       Json(arrow::date32(), "[19782, 7470, null, -1]"),
       Json(ts, R"(["2024-02-29 10:30:00", "2024-01-31 00:00:00.250", null, "1969-12-31 23:59:59"])"),
       Json(arrow::int32(), "[2147483647, 1, null, -2147483648]")});
}

Result<CompiledExpression> CompileSql(const std::string& sql) {
  ARROW_ASSIGN_OR_RAISE(auto parsed, ParseTransformation(sql));
  return CompiledExpression::Compile(parsed, TestBatch()->schema());
}

Result<std::shared_ptr<arrow::Array>> Eval(const std::string& sql, EvalContext ctx = {}) {
  ARROW_ASSIGN_OR_RAISE(auto compiled, CompileSql(sql));
  return compiled.Evaluate(*TestBatch(), ctx);
}

void ExpectEval(const std::string& sql, const std::shared_ptr<arrow::DataType>& type,
                const std::string& json, EvalContext ctx = {}) {
  SCOPED_TRACE(sql);
  auto result = Eval(sql, ctx);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  auto expected = Json(type, json);
  ASSERT_TRUE((*result)->Equals(*expected)) << "got " << (*result)->ToString() << "\nwant "
                                            << expected->ToString();
}

void ExpectCompileError(const std::string& sql, ErrorCode code, const std::string& message,
                        std::optional<int> position) {
  SCOPED_TRACE(sql);
  auto result = CompileSql(sql);
  ASSERT_FALSE(result.ok());
  const ErrorDetail* e = ErrorOf(result.status());
  ASSERT_NE(e, nullptr) << result.status().ToString();
  EXPECT_EQ(e->code(), code) << result.status().ToString();
  EXPECT_EQ(e->field(), "transformation");
  EXPECT_THAT(ErrorMessageOf(result.status()), HasSubstr(message));
  if (position) {
    EXPECT_EQ(e->position(), position);
  }
}

void ExpectRunError(const std::string& sql, const std::string& message) {
  SCOPED_TRACE(sql);
  auto result = Eval(sql);
  ASSERT_FALSE(result.ok()) << (*result)->ToString();
  const ErrorDetail* e = ErrorOf(result.status());
  ASSERT_NE(e, nullptr) << result.status().ToString();
  EXPECT_EQ(e->field(), "transformation");
  EXPECT_THAT(ErrorMessageOf(result.status()), HasSubstr(message));
}

const auto kTs = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

TEST(ExpressionTest, IntegerArithmetic) {
  ExpectEval("a + 1", arrow::int64(), "[8, -6, null, 11]");
  ExpectEval("a - b * 2", arrow::int64(), "[3, -11, null, null]");
  ExpectEval("-a", arrow::int64(), "[-7, 7, null, -10]");
  // Integer division truncates toward zero; % has the dividend's sign.
  ExpectEval("a / 2", arrow::int64(), "[3, -3, null, 5]");
  ExpectEval("a % 3", arrow::int64(), "[1, -1, null, 1]");
  ExpectEval("mod(a, 0 - 3)", arrow::int64(), "[1, -1, null, 1]");
}

TEST(ExpressionTest, FloatAndNumericArithmetic) {
  ExpectEval("x * 2", arrow::float64(), "[3.0, -5.0, null, 0.0]");
  ExpectEval("a / 2.0", arrow::float64(), "[3.5, -3.5, null, 5.0]");
  ExpectEval("x / 0.5", arrow::float64(), "[3.0, -5.0, null, 0.0]");
  ExpectEval("a::float / 4", arrow::float64(), "[1.75, -1.75, null, 2.5]");
}

TEST(ExpressionTest, DivisionByZeroIsAnError) {
  ExpectRunError("a / (b - 2)", "division by zero");
  ExpectRunError("x / 0", "division by zero");
  ExpectRunError("a % 0", "division by zero");
  // Not for rows where the value is not needed.
  ExpectEval("CASE WHEN b = 0 THEN NULL ELSE a / b END", arrow::int64(), "[3, -3, null, null]");
  ExpectEval("a / NULLIF(b, 0)", arrow::int64(), "[3, -3, null, null]");
  ExpectEval("COALESCE(b, 1 / (b - 2))", arrow::int64(), "[2, 2, 0, null]");
  ExpectEval("b <> 0 AND a / b > 0", arrow::boolean(), "[true, false, false, null]");
}

TEST(ExpressionTest, OverflowIsAnError) {
  ExpectRunError("small + 1", "integer out of range");
  ExpectRunError("9223372036854775807 + a", "bigint out of range");
  ExpectEval("small::bigint + 1", arrow::int64(),
             "[2147483648, 2, null, -2147483647]");
}

TEST(ExpressionTest, Comparisons) {
  ExpectEval("a > b", arrow::boolean(), "[true, false, null, null]");
  ExpectEval("a <> 7", arrow::boolean(), "[false, true, null, true]");
  ExpectEval("a != 7", arrow::boolean(), "[false, true, null, true]");
  ExpectEval("x <= 0", arrow::boolean(), "[false, true, null, true]");
  ExpectEval("s = 'abc'", arrow::boolean(), "[false, false, null, true]");
  ExpectEval("ts >= '2024-01-31'", arrow::boolean(), "[true, true, null, false]");
  ExpectEval("d < DATE '2000-01-01'", arrow::boolean(), "[false, true, null, true]");
}

TEST(ExpressionTest, ThreeValuedLogic) {
  ExpectEval("flag AND a > 0", arrow::boolean(), "[true, false, null, true]");
  ExpectEval("flag OR a > 100", arrow::boolean(), "[true, false, null, true]");
  ExpectEval("NOT flag", arrow::boolean(), "[false, true, null, false]");
  ExpectEval("flag AND NULL", arrow::boolean(), "[null, false, null, null]");
  ExpectEval("flag OR NULL", arrow::boolean(), "[true, null, null, true]");
  ExpectEval("flag IS TRUE", arrow::boolean(), "[true, false, false, true]");
  ExpectEval("flag IS NOT FALSE", arrow::boolean(), "[true, false, true, true]");
  ExpectEval("flag IS UNKNOWN", arrow::boolean(), "[false, false, true, false]");
}

TEST(ExpressionTest, Case) {
  ExpectEval("CASE WHEN a > 5 THEN 'big' WHEN a < 0 THEN 'negative' END", arrow::utf8(),
             R"(["big", "negative", null, "big"])");
  ExpectEval("CASE WHEN flag THEN 1 ELSE 0 END", arrow::int64(), "[1, 0, 0, 1]");
  ExpectEval("CASE a WHEN 7 THEN 'seven' WHEN 10 THEN 'ten' ELSE 'other' END", arrow::utf8(),
             R"(["seven", "other", "other", "ten"])");
  ExpectEval("CASE WHEN a > 0 THEN x ELSE 1 END", arrow::float64(), "[1.5, 1.0, 1.0, 0.0]");
}

TEST(ExpressionTest, NullFunctions) {
  ExpectEval("COALESCE(a, b, 0)", arrow::int64(), "[7, -7, 0, 10]");
  ExpectEval("NULLIF(a, 10)", arrow::int64(), "[7, -7, null, null]");
  ExpectEval("a IS NULL", arrow::boolean(), "[false, false, true, false]");
  ExpectEval("s IS NOT NULL", arrow::boolean(), "[true, true, false, true]");
  ExpectEval("GREATEST(a, b, 3)", arrow::int64(), "[7, 3, 3, 10]");
  ExpectEval("LEAST(a, b)", arrow::int64(), "[2, -7, 0, 10]");
  ExpectEval("a IS DISTINCT FROM b", arrow::boolean(), "[true, true, true, true]");
}

TEST(ExpressionTest, InBetweenLike) {
  ExpectEval("a IN (7, 10)", arrow::boolean(), "[true, false, null, true]");
  ExpectEval("a NOT IN (7, NULL)", arrow::boolean(), "[false, null, null, null]");
  ExpectEval("a BETWEEN 0 AND 8", arrow::boolean(), "[true, false, null, false]");
  ExpectEval("a NOT BETWEEN 0 AND 8", arrow::boolean(), "[false, true, null, true]");
  ExpectEval("s LIKE 'H%'", arrow::boolean(), "[true, false, null, false]");
  ExpectEval("s NOT LIKE '_b_'", arrow::boolean(), "[true, true, null, false]");
  ExpectEval("s ILIKE 'h%O'", arrow::boolean(), "[true, false, null, false]");
  ExpectEval("s LIKE 'a\\%'", arrow::boolean(), "[false, false, null, false]");
}

TEST(ExpressionTest, Casts) {
  ExpectEval("x::int", arrow::int64(), "[2, -2, null, 0]");  // rint: half to even
  ExpectEval("CAST(2.5 AS integer)", arrow::int64(), "[3, 3, 3, 3]");  // numeric: half away
  ExpectEval("a::text", arrow::utf8(), R"(["7", "-7", null, "10"])");
  ExpectEval("'42'::bigint + a", arrow::int64(), "[49, 35, null, 52]");
  ExpectEval("flag::int", arrow::int64(), "[1, 0, null, 1]");
  ExpectEval("ts::date", arrow::date32(), "[19782, 19753, null, -1]");
  ExpectEval("d::timestamp", kTs,
             R"(["2024-02-29 00:00:00", "1990-06-15 00:00:00", null, "1969-12-31 00:00:00"])");
  ExpectEval("ts::text", arrow::utf8(),
             R"(["2024-02-29 10:30:00+00", "2024-01-31 00:00:00.25+00", null, "1969-12-31 23:59:59+00"])");
  ExpectEval("'yes'::boolean", arrow::boolean(), "[true, true, true, true]");
  ExpectEval("s::varchar(2)", arrow::utf8(), R"(["He", " p", null, "ab"])");
  ExpectEval("1.005::numeric(10, 2)", arrow::float64(), "[1.01, 1.01, 1.01, 1.01]");
  ExpectRunError("s::int", "invalid input syntax for type integer");
  ExpectRunError("small::smallint", "smallint out of range");
}

TEST(ExpressionTest, Constants) {
  ExpectEval("NULL", arrow::utf8(), "[null, null, null, null]");
  ExpectEval("'x'", arrow::utf8(), R"(["x", "x", "x", "x"])");
  ExpectEval("true", arrow::boolean(), "[true, true, true, true]");
  ExpectEval("DATE '2024-01-01'", arrow::date32(), "[19723, 19723, 19723, 19723]");
  ExpectEval("TIMESTAMP '2024-01-01 12:00:00'", kTs,
             R"(["2024-01-01 12:00:00", "2024-01-01 12:00:00", "2024-01-01 12:00:00", "2024-01-01 12:00:00"])");
  ExpectEval("INTERVAL '1 year 2 mons 3 days 04:05:06'", arrow::month_day_nano_interval(),
             "[[14, 3, 14706000000000], [14, 3, 14706000000000], [14, 3, 14706000000000], "
             "[14, 3, 14706000000000]]");
  ExpectEval("3000000000", arrow::int64(), "[3000000000, 3000000000, 3000000000, 3000000000]");
}

TEST(ExpressionTest, DateTimeArithmetic) {
  ExpectEval("ts + INTERVAL '1 month'", kTs,
             R"(["2024-03-29 10:30:00", "2024-02-29 00:00:00.250", null, "1970-01-31 23:59:59"])");
  ExpectEval("d + 1", arrow::date32(), "[19783, 7471, null, 0]");
  ExpectEval("d - DATE '1970-01-01'", arrow::int64(), "[19782, 7470, null, -1]");
  ExpectEval("ts - TIMESTAMP '2024-01-01'", arrow::month_day_nano_interval(),
             "[[0, 59, 37800000000000], [0, 30, 250000000], null, [0, -19723, -1000000000]]");
  ExpectEval("d + INTERVAL '1 day'", kTs,
             R"(["2024-03-01 00:00:00", "1990-06-16 00:00:00", null, "1970-01-01 00:00:00"])");
  ExpectEval("ts > now() - INTERVAL '30 days'", arrow::boolean(), "[true, true, null, false]",
             EvalContext{1709251200000000});  // 2024-03-01
}

TEST(ExpressionTest, Extract) {
  ExpectEval("EXTRACT(YEAR FROM ts)", arrow::float64(), "[2024, 2024, null, 1969]");
  ExpectEval("EXTRACT(MONTH FROM d)", arrow::float64(), "[2, 6, null, 12]");
  ExpectEval("EXTRACT(DOW FROM d)", arrow::float64(), "[4, 5, null, 3]");
  ExpectEval("EXTRACT(DOY FROM ts)", arrow::float64(), "[60, 31, null, 365]");
  ExpectEval("EXTRACT(SECOND FROM ts)", arrow::float64(), "[0, 0.25, null, 59]");
  ExpectEval("EXTRACT(EPOCH FROM ts)", arrow::float64(), "[1709202600, 1706659200.25, null, -1]");
  ExpectEval("EXTRACT(QUARTER FROM ts)", arrow::float64(), "[1, 1, null, 4]");
  ExpectEval("EXTRACT(HOUR FROM INTERVAL '1 day 05:00')", arrow::float64(), "[5, 5, 5, 5]");
  ExpectCompileError("EXTRACT(HOUR FROM d)", ErrorCode::kInvalidArgument,
                     "unit \"hour\" not supported for type date", 1);
}

TEST(ExpressionTest, AgeUsesTheClock) {
  // PostgreSQL: age('2024-01-01', '1990-06-15') = 33 years 6 mons 16 days.
  ExpectEval("EXTRACT(YEAR FROM AGE(DATE '2024-01-01', d))", arrow::float64(),
             "[-0.0, 33, null, 54]");
  EvalContext ctx{1704067200000000 + 5 * kMicrosPerHour};  // 2024-01-01T05:00Z
  ExpectEval("AGE(d)", arrow::month_day_nano_interval(),
             "[[-1, -28, 0], [402, 16, 0], null, [648, 1, 0]]", ctx);
  ExpectEval("EXTRACT(YEAR FROM AGE(current_date, d))", arrow::float64(), "[-0.0, 33, null, 54]",
             ctx);
  ExpectEval("current_date", arrow::date32(), "[19723, 19723, 19723, 19723]", ctx);
}

TEST(ExpressionTest, DateTrunc) {
  ExpectEval("DATE_TRUNC('month', ts)", kTs,
             R"(["2024-02-01 00:00:00", "2024-01-01 00:00:00", null, "1969-12-01 00:00:00"])");
  ExpectEval("DATE_TRUNC('week', ts)", kTs,
             R"(["2024-02-26 00:00:00", "2024-01-29 00:00:00", null, "1969-12-29 00:00:00"])");
  ExpectEval("DATE_TRUNC('hour', ts)", kTs,
             R"(["2024-02-29 10:00:00", "2024-01-31 00:00:00", null, "1969-12-31 23:00:00"])");
}

TEST(ExpressionTest, MathFunctions) {
  ExpectEval("ABS(a)", arrow::int64(), "[7, 7, null, 10]");
  ExpectEval("ROUND(x)", arrow::float64(), "[2, -2, null, 0]");  // double: half to even
  ExpectEval("ROUND(2.5)", arrow::float64(), "[3, 3, 3, 3]");    // numeric: half away
  ExpectEval("ROUND(2.675, 2)", arrow::float64(), "[2.68, 2.68, 2.68, 2.68]");
  ExpectEval("ROUND(x::numeric, 0)", arrow::float64(), "[2, -3, null, 0]");
  ExpectEval("FLOOR(x)", arrow::float64(), "[1, -3, null, 0]");
  ExpectEval("CEIL(x)", arrow::float64(), "[2, -2, null, 0]");
  ExpectEval("SIGN(a)", arrow::float64(), "[1, -1, null, 1]");
  ExpectEval("POWER(b, 3)", arrow::float64(), "[8, 8, 0, null]");
  ExpectEval("SQRT(b)", arrow::float64(), "[1.4142135623730951, 1.4142135623730951, 0, null]");
  ExpectRunError("LN(b)", "cannot take logarithm of zero");
  ExpectRunError("SQRT(a)", "cannot take square root of a negative number");
  ExpectEval("LOG(100)", arrow::float64(), "[2, 2, 2, 2]");
}

TEST(ExpressionTest, TextFunctions) {
  ExpectEval("LOWER(s)", arrow::utf8(), R"(["hello", " pad ", null, "abc"])");
  ExpectEval("UPPER(s)", arrow::utf8(), R"(["HELLO", " PAD ", null, "ABC"])");
  ExpectEval("LENGTH(s)", arrow::int64(), "[5, 5, null, 3]");
  ExpectEval("SUBSTRING(s FROM 2 FOR 3)", arrow::utf8(), R"(["ell", "pad", null, "bc"])");
  ExpectEval("SUBSTRING(s, 0, 2)", arrow::utf8(), R"(["H", " ", null, "a"])");
  ExpectEval("TRIM(s)", arrow::utf8(), R"(["Hello", "pad", null, "abc"])");
  ExpectEval("LTRIM(s)", arrow::utf8(), R"(["Hello", "pad ", null, "abc"])");
  ExpectEval("s || '!'", arrow::utf8(), R"(["Hello!", " pad !", null, "abc!"])");
  ExpectEval("CONCAT(s, '-', a)", arrow::utf8(), R"(["Hello-7", " pad --7", "-", "abc-10"])");
  ExpectEval("REPLACE(s, 'l', 'L')", arrow::utf8(), R"(["HeLLo", " pad ", null, "abc"])");
  ExpectEval("POSITION('l' IN s)", arrow::int64(), "[3, 0, null, 0]");
}

// libpg_query 15's JSON output drops the value of a negative integer constant
// ("-3" comes out as {"ival": {}}, which reads as 0); ParseTransformation
// must restore it from the text before this can pass.
TEST(ExpressionTest, NegativeIntegerLiteral) {
  ExpectEval("a + -3", arrow::int64(), "[4, -10, null, 7]");
  ExpectEval("GREATEST(a, -1)", arrow::int64(), "[7, -1, -1, 10]");
}

TEST(ExpressionTest, CompileErrors) {
  ExpectCompileError("amount + 1", ErrorCode::kUnprocessable, "column \"amount\" does not exist",
                     1);
  ExpectCompileError("a + nope", ErrorCode::kUnprocessable, "column \"nope\"", 5);
  ExpectCompileError("s + 1", ErrorCode::kInvalidArgument,
                     "operator does not exist: text + integer", 3);
  ExpectCompileError("a + 'abc'", ErrorCode::kInvalidArgument, "invalid input syntax", 5);
  ExpectCompileError("DATE '2024-02-30'", ErrorCode::kInvalidArgument,
                     "invalid input syntax for type date", std::nullopt);
  ExpectCompileError("COUNT(*) OVER (PARTITION BY s)", ErrorCode::kInvalidArgument,
                     "window function count()", 1);
  ExpectCompileError("CASE WHEN flag THEN 1 ELSE 'x' END", ErrorCode::kInvalidArgument,
                     "invalid input syntax", std::nullopt);
  ExpectCompileError("CASE WHEN flag THEN 1 ELSE s END", ErrorCode::kInvalidArgument,
                     "CASE types integer and text cannot be matched", std::nullopt);
  ExpectCompileError("NOT a", ErrorCode::kInvalidArgument, "argument of NOT must be type boolean",
                     std::nullopt);
  ExpectCompileError("lower(a)", ErrorCode::kInvalidArgument, "function lower(bigint) does not exist",
                     1);
}

Status Check(const std::string& sql) {
  ARROW_ASSIGN_OR_RAISE(auto parsed, ParseTransformation(sql));
  return CheckSupported(parsed);
}

TEST(ExpressionTest, CheckSupported) {
  for (const char* ok : {"a + 1", "EXTRACT(YEAR FROM AGE(current_date, d))",
                         "CASE WHEN x IS NULL THEN 0 ELSE x END", "s::varchar(3) || 'x'",
                         "COUNT(*) OVER (PARTITION BY s ORDER BY ts)",
                         "SUM(amount) OVER (ORDER BY ts RANGE BETWEEN INTERVAL '30 days' "
                         "PRECEDING AND CURRENT ROW) / 2",
                         "avg(x)", "now() - ts", "a IN (1, 2) AND s ILIKE '%x'"}) {
    Status st = Check(ok);
    EXPECT_TRUE(st.ok()) << ok << ": " << st.ToString();
  }
  struct Case {
    const char* sql;
    const char* message;
    int position;
  };
  for (const Case& c : std::vector<Case>{
           {"md5(s)", "function md5() is not supported", 1},
           {"a + random()", "function random() is not supported", 5},
           {"x::money", "type \"money\" is not supported", 4},
           {"a + (SELECT 1)", "subqueries are not supported", 5},
           {"a @> b", "operator @> is not supported", 3},
           {"rank() OVER (ORDER BY ts)", "window function rank() is not supported", 1},
           {"sum(sum(x) OVER ()) OVER ()", "cannot be nested", 5},
           {"ARRAY[1, 2]", "ARRAY[...] is not supported", 1},
           {"s SIMILAR TO 'a'", "SIMILAR TO is not supported", 3},
           {"current_user", "current_user is not supported", 1},
       }) {
    Status st = Check(c.sql);
    ASSERT_FALSE(st.ok()) << c.sql;
    const ErrorDetail* e = ErrorOf(st);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(e->field(), "transformation");
    EXPECT_THAT(ErrorMessageOf(st), HasSubstr(c.message)) << c.sql;
    EXPECT_EQ(e->position(), c.position) << c.sql;
  }
}

TEST(ExpressionTest, InputColumnsAndTypes) {
  ASSERT_OK_AND_ASSIGN(auto compiled, CompileSql("COALESCE(b, a) + a + LENGTH(s)"));
  EXPECT_THAT(compiled.input_columns(), ::testing::ElementsAre("b", "a", "s"));
  EXPECT_TRUE(compiled.type()->Equals(*arrow::int64()));
  ASSERT_OK_AND_ASSIGN(compiled, CompileSql("AGE(ts)"));
  EXPECT_TRUE(compiled.type()->Equals(*arrow::month_day_nano_interval()));
}

TEST(ExpressionTest, EmptyBatchAndOtherInputTypes) {
  auto schema = arrow::schema({arrow::field("n", arrow::int32()),
                               arrow::field("t", arrow::timestamp(arrow::TimeUnit::NANO))});
  ASSERT_OK_AND_ASSIGN(auto parsed, ParseTransformation("n * 2 + EXTRACT(YEAR FROM t)"));
  ASSERT_OK_AND_ASSIGN(auto compiled, CompiledExpression::Compile(parsed, schema));
  auto batch = arrow::RecordBatch::Make(
      schema, 2,
      {Json(arrow::int32(), "[1, null]"),
       Json(arrow::timestamp(arrow::TimeUnit::NANO), R"(["2020-05-01 00:00:00.000000001", null])")});
  ASSERT_OK_AND_ASSIGN(auto out, compiled.Evaluate(*batch, {}));
  EXPECT_TRUE(out->Equals(*Json(arrow::float64(), "[2022, null]"))) << out->ToString();
  ASSERT_OK_AND_ASSIGN(auto empty, compiled.Evaluate(*batch->Slice(0, 0), {}));
  EXPECT_EQ(empty->length(), 0);
}

// Random expressions from a small grammar over every column type: each either
// fails to compile or evaluates to an error or a full column -- never a crash.
TEST(ExpressionTest, RandomExpressionsDoNotCrash) {
  std::mt19937 rng(std::getenv("FSTORE_EXPR_SEED") ? std::atoi(std::getenv("FSTORE_EXPR_SEED")) : 20240229);
  const std::vector<std::string> atoms = {
      "a", "b", "x", "s", "flag", "d", "ts", "small", "0", "1", "2147483647", "9223372036854775807",
      "2.5", "1e308", "'abc'", "''", "NULL", "true", "INTERVAL '1 mon 2 days'", "DATE '2024-02-29'",
      "TIMESTAMP '2024-01-31 10:00'", "now()", "current_date"};
  const std::vector<std::string> binary = {"+", "-", "*", "/", "%", "^", "=", "<>", "<", ">=",
                                           "AND", "OR", "||", "LIKE", "IS DISTINCT FROM"};
  const std::vector<std::string> unary = {
      "-(@)", "NOT (@)", "(@) IS NULL", "(@) IS TRUE", "ABS(@)", "ROUND(@)", "ROUND(@, 2)",
      "FLOOR(@)", "LN(@)", "SQRT(@)", "EXP(@)", "LOWER(@)", "LENGTH(@)", "SUBSTRING(@, 2, 3)",
      "LEFT(@, 0 - 9223372036854775807)", "TRIM(@)", "CAST(@ AS int)", "CAST(@ AS text)",
      "(@)::date", "(@)::timestamp", "(@)::interval", "(@)::boolean", "(@)::numeric(5, 2)",
      "EXTRACT(YEAR FROM @)", "EXTRACT(EPOCH FROM @)", "AGE(@)", "DATE_TRUNC('month', @)",
      "COALESCE(@, NULL)", "NULLIF(@, @)", "GREATEST(@, @)", "CASE WHEN @ THEN @ END",
      "(@) IN (1, NULL)", "(@) BETWEEN 0 AND 10", "CONCAT(@, @)", "(@) * INTERVAL '1 day'"};
  std::function<std::string(int)> gen = [&](int depth) -> std::string {
    int choice = depth <= 0 ? 0 : static_cast<int>(rng() % 3);
    if (choice == 0) return atoms[rng() % atoms.size()];
    if (choice == 1) {
      return "(" + gen(depth - 1) + " " + binary[rng() % binary.size()] + " " + gen(depth - 1) + ")";
    }
    std::string form = unary[rng() % unary.size()];
    std::string out;
    for (char c : form) out += c == '@' ? gen(depth - 1) : std::string(1, c);
    return out;
  };
  int evaluated = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string sql = gen(3);
    auto parsed = ParseTransformation(sql);
    if (!parsed.ok()) continue;
    (void)CheckSupported(*parsed);
    auto compiled = CompiledExpression::Compile(*parsed, TestBatch()->schema());
    if (!compiled.ok()) continue;
    auto result = compiled->Evaluate(*TestBatch()->Slice(1), EvalContext{1709251200000000});
    if (!result.ok()) {
      const ErrorDetail* e = ErrorOf(result.status());
      ASSERT_NE(e, nullptr) << sql << ": " << result.status().ToString();
      EXPECT_NE(e->code(), ErrorCode::kInternal) << sql << ": " << result.status().ToString();
      continue;
    }
    ASSERT_EQ((*result)->length(), 3) << sql;
    ASSERT_TRUE((*result)->type()->Equals(*compiled->type())) << sql;
    ASSERT_OK((*result)->ValidateFull());
    ++evaluated;
  }
  EXPECT_GT(evaluated, 300);
}

}  // namespace
}  // namespace fstore
