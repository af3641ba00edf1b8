#include "fstore/compute/transformation.h"

#include <gmock/gmock.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TransformationTest, SeedAgeExpression) {
  ASSERT_OK_AND_ASSIGN(auto p, ParseTransformation(
                                   "EXTRACT(YEAR FROM AGE(current_date, date_of_birth))"));
  EXPECT_THAT(p.column_refs, ElementsAre("date_of_birth"));
  EXPECT_THAT(p.functions, ElementsAre("extract", "age"));
  EXPECT_TRUE(p.reads_clock);
  EXPECT_FALSE(p.is_window);
}

TEST(TransformationTest, SeedWindowExpression) {
  ASSERT_OK_AND_ASSIGN(
      auto p, ParseTransformation("COUNT(*) OVER (PARTITION BY user_id ORDER BY timestamp RANGE "
                                  "BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW)"));
  EXPECT_TRUE(p.is_window);
  EXPECT_FALSE(p.reads_clock);
  EXPECT_THAT(p.column_refs, ElementsAre("user_id", "timestamp"));
  EXPECT_THAT(p.functions, ElementsAre("count"));
}

TEST(TransformationTest, DerivedExpression) {
  ASSERT_OK_AND_ASSIGN(auto p, ParseTransformation(
                                   "purchases_last_30d / NULLIF(days_since_signup, 0)"));
  EXPECT_THAT(p.column_refs, ElementsAre("purchases_last_30d", "days_since_signup"));
}

TEST(TransformationTest, ClockFunctions) {
  for (const char* sql : {"now()", "current_timestamp", "localtimestamp", "NOW() - ts"}) {
    ASSERT_OK_AND_ASSIGN(auto p, ParseTransformation(sql));
    EXPECT_TRUE(p.reads_clock) << sql;
  }
  ASSERT_OK_AND_ASSIGN(auto p, ParseTransformation("a + 1"));
  EXPECT_FALSE(p.reads_clock);
}

TEST(TransformationTest, SyntaxErrorHasMessageAndPosition) {
  auto result = ParseTransformation("amount * / 2");
  ASSERT_FALSE(result.ok());
  const ErrorDetail* e = ErrorOf(result.status());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->field(), "transformation");
  EXPECT_THAT(result.status().message(), HasSubstr("syntax error at or near \"/\""));
  ASSERT_TRUE(e->position().has_value());
  EXPECT_EQ(*e->position(), 10);  // 1-based offset of '/' in the expression
}

TEST(TransformationTest, ErrorAtEndOfInput) {
  auto result = ParseTransformation("a +");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("end of input"));
  ASSERT_TRUE(ErrorOf(result.status())->position().has_value());
}

TEST(TransformationTest, RefusesWhatIsNotOneExpression) {
  for (const char* sql : {"a, b", "a FROM t", "a; DROP TABLE users", "a AS b",
                          "(SELECT 1)", "a WHERE b", "$1 + 1", "", "   ", "t.*"}) {
    auto result = ParseTransformation(sql);
    EXPECT_FALSE(result.ok()) << sql;
    if (!result.ok()) {
      ASSERT_NE(ErrorOf(result.status()), nullptr) << sql;
      EXPECT_EQ(ErrorOf(result.status())->field(), "transformation") << sql;
      EXPECT_EQ(ErrorOf(result.status())->code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(TransformationTest, RefusesNulBytes) {
  std::string sql("a", 1);
  sql.push_back('\0');
  sql += "b";
  EXPECT_FALSE(ParseTransformation(sql).ok());
}

}  // namespace
}  // namespace fstore
