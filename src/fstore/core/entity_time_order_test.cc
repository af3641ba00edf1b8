#include "fstore/core/entity_time_order.h"

#include <random>

#include <arrow/api.h>
#include <arrow/compute/api.h>

#include "fstore/core/compute_init.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

// The fast order equals Arrow's stable SortIndices (nulls first) on random
// data with many ties, for int and string keys.
TEST(EntityTimeOrderTest, EqualsArrowsStableSort) {
  ASSERT_OK(InitializeCompute());
  std::mt19937 rng(42);
  for (bool string_keys : {false, true}) {
    arrow::Int64Builder ikeys;
    arrow::StringBuilder skeys;
    arrow::TimestampBuilder times(arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"),
                                  arrow::default_memory_pool());
    arrow::Int64Builder created;
    const int n = 5000;
    for (int i = 0; i < n; ++i) {
      int k = static_cast<int>(rng() % 50);
      if (rng() % 97 == 0) {
        ASSERT_OK(ikeys.AppendNull());
        ASSERT_OK(skeys.AppendNull());
      } else {
        ASSERT_OK(ikeys.Append(k - 25));
        ASSERT_OK(skeys.Append("k" + std::to_string(k)));
      }
      ASSERT_OK(times.Append(static_cast<int64_t>(rng() % 40) - 20));
      ASSERT_OK(created.Append(static_cast<int64_t>(rng() % 3)));
    }
    std::shared_ptr<arrow::Array> key, time, cr;
    if (string_keys) {
      ASSERT_OK(skeys.Finish(&key));
    } else {
      ASSERT_OK(ikeys.Finish(&key));
    }
    ASSERT_OK(times.Finish(&time));
    ASSERT_OK(created.Finish(&cr));
    auto batch = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("k", key->type()), arrow::field("t", time->type()),
                       arrow::field("c", cr->type())}),
        n, {key, time, cr});
    ASSERT_OK_AND_ASSIGN(auto fast, EntityTimeOrder(*batch, {"k"}, {"t", "c"}));
    constexpr auto kAsc = arrow::compute::SortOrder::Ascending;
    constexpr auto kNullsFirst = arrow::compute::NullPlacement::AtStart;
    arrow::compute::SortOptions options({arrow::compute::SortKey("k", kAsc, kNullsFirst),
                                         arrow::compute::SortKey("t", kAsc, kNullsFirst),
                                         arrow::compute::SortKey("c", kAsc, kNullsFirst)});
    ASSERT_OK_AND_ASSIGN(auto reference, arrow::compute::SortIndices(arrow::Datum(batch), options));
    EXPECT_TRUE(fast->Equals(*reference)) << (string_keys ? "string keys" : "int keys");
  }
}

TEST(EntityTimeOrderTest, EmptyAndUnknownColumns) {
  auto batch = arrow::RecordBatch::Make(arrow::schema({arrow::field("k", arrow::int64())}), 0,
                                        {std::make_shared<arrow::Int64Array>(0, nullptr)});
  ASSERT_OK_AND_ASSIGN(auto order, EntityTimeOrder(*batch, {"k"}, {}));
  EXPECT_EQ(order->length(), 0);
  EXPECT_FALSE(EntityTimeOrder(*batch, {"nope"}, {}).ok());
}

}  // namespace
}  // namespace fstore
