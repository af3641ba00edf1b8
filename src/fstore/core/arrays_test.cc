#include "fstore/core/arrays.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

TEST(Int64ArrayOfTest, HoldsTheValuesAndMayBeEmpty) {
  ASSERT_OK_AND_ASSIGN(auto a, Int64ArrayOf({3, -1, 7}));
  ASSERT_EQ(a->length(), 3);
  EXPECT_EQ(a->Value(0), 3);
  EXPECT_EQ(a->Value(1), -1);
  EXPECT_EQ(a->Value(2), 7);
  EXPECT_EQ(a->null_count(), 0);
  ASSERT_OK_AND_ASSIGN(auto empty, Int64ArrayOf({}));
  EXPECT_EQ(empty->length(), 0);
}

TEST(TimestampsAsInt64Test, SameValuesAndNulls) {
  arrow::TimestampBuilder b(arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"),
                            arrow::default_memory_pool());
  ASSERT_TRUE(b.Append(1'700'000'000'000'000).ok());
  ASSERT_TRUE(b.AppendNull().ok());
  std::shared_ptr<arrow::Array> ts;
  ASSERT_TRUE(b.Finish(&ts).ok());
  auto micros = TimestampsAsInt64(ts);
  EXPECT_EQ(micros->type()->id(), arrow::Type::INT64);
  EXPECT_EQ(micros->Value(0), 1'700'000'000'000'000);
  EXPECT_TRUE(micros->IsNull(1));
}

}  // namespace
}  // namespace fstore
