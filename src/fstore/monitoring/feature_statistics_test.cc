#include "fstore/monitoring/feature_statistics.h"

#include <cmath>

#include <arrow/api.h>
#include <gtest/gtest.h>

namespace fstore::monitoring {
namespace json = boost::json;
namespace {

std::shared_ptr<arrow::Array> Doubles(const std::vector<std::optional<double>>& values) {
  arrow::DoubleBuilder b;
  for (const auto& v : values) {
    if (v) {
      (void)b.Append(*v);
    } else {
      (void)b.AppendNull();
    }
  }
  return b.Finish().ValueOrDie();
}

std::shared_ptr<arrow::Array> Strings(const std::vector<std::string>& values) {
  arrow::StringBuilder b;
  for (const auto& v : values) (void)b.Append(v);
  return b.Finish().ValueOrDie();
}

TEST(HyperLogLogTest, EstimatesWithinThreeStandardErrors) {
  for (int n : {10, 1000, 100000}) {
    HyperLogLog hll;
    for (int i = 0; i < n; ++i) hll.AddHash(HashBytes("user_" + std::to_string(i)));
    // Repeats change nothing.
    for (int i = 0; i < n; ++i) hll.AddHash(HashBytes("user_" + std::to_string(i)));
    const double error = std::fabs(hll.Estimate() - n) / n;
    EXPECT_LT(error, 3 * 1.04 / std::sqrt(HyperLogLog::kRegisters)) << n << " " << hll.Estimate();
  }
}

TEST(HyperLogLogTest, MergedRegistersEstimateTheUnion) {
  HyperLogLog a, b;
  for (int i = 0; i < 5000; ++i) a.AddHash(HashNumber(i));
  for (int i = 2500; i < 7500; ++i) b.AddHash(HashNumber(i));
  auto restored = HyperLogLog::FromHex(b.ToHex());
  ASSERT_TRUE(restored.ok());
  a.Merge(*restored);
  EXPECT_NEAR(a.Estimate(), 7500, 7500 * 0.05);
  EXPECT_FALSE(HyperLogLog::FromHex("zz").ok());
}

TEST(PsiTest, IdenticalIsZeroAndAShiftHasItsKnownValue) {
  EXPECT_DOUBLE_EQ(PopulationStabilityIndex({10, 20, 30, 40}, {1, 2, 3, 4}), 0);
  // Half the mass moves from bin 0 to bin 1: (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5).
  const double expected = (0.25 - 0.5) * std::log(0.25 / 0.5) + (0.75 - 0.5) * std::log(0.75 / 0.5);
  EXPECT_NEAR(PopulationStabilityIndex({50, 50}, {25, 75}), expected, 1e-12);
  // An emptied bin is floored at 1e-4, not infinite.
  const double floored = (1e-4 - 0.5) * std::log(1e-4 / 0.5) + (1 - 0.5) * std::log(1 / 0.5);
  EXPECT_NEAR(PopulationStabilityIndex({50, 50}, {0, 100}), floored, 1e-12);
}

TEST(FeatureStatisticsTest, NumericColumnHasExactStatistics) {
  FeatureStatisticsBuilder builder(arrow::float64());
  builder.Add(*Doubles({1, 2, 3, 4, std::nullopt}));
  builder.Add(*Doubles({5, 6, 7, 8, 9, 10}));
  json::object s = builder.Finish(nullptr, "");
  EXPECT_EQ(s["type"].as_string(), "numeric");
  EXPECT_EQ(s["count"].as_int64(), 11);
  EXPECT_EQ(s["null_count"].as_int64(), 1);
  EXPECT_DOUBLE_EQ(s["null_rate"].as_double(), 1.0 / 11);
  EXPECT_DOUBLE_EQ(s["min"].as_double(), 1);
  EXPECT_DOUBLE_EQ(s["max"].as_double(), 10);
  EXPECT_DOUBLE_EQ(s["mean"].as_double(), 5.5);
  EXPECT_NEAR(s["stddev"].as_double(), 3.0276503540974917, 1e-12);  // numpy std(ddof=1)
  EXPECT_DOUBLE_EQ(s["quantiles"].as_object()["p50"].as_double(), 5.5);
  EXPECT_NEAR(s["quantiles"].as_object()["p25"].as_double(), 3.25, 1e-12);  // numpy linear
  EXPECT_NEAR(s["quantiles"].as_object()["p99"].as_double(), 9.91, 1e-12);
  EXPECT_EQ(s["distinct_estimate"].as_int64(), 10);
  const auto& counts = s["histogram"].as_object()["counts"].as_array();
  ASSERT_EQ(counts.size(), 10u);
  // Edges 1, 1.9, ..., 10: one value per bin, the last closed.
  for (const auto& c : counts) EXPECT_EQ(c.as_int64(), 1);
  EXPECT_FALSE(s.contains("drift"));
}

TEST(FeatureStatisticsTest, NanAndInfinitiesCountAsNullsAndBigIntegersAreKept) {
  FeatureStatisticsBuilder builder(arrow::float64());
  builder.Add(*Doubles({1, std::nan(""), 1.0 / 0.0, -1.0 / 0.0, 3}));
  json::object s = builder.Finish(nullptr, "");
  EXPECT_EQ(s["count"].as_int64(), 5);
  EXPECT_EQ(s["null_count"].as_int64(), 3);
  EXPECT_DOUBLE_EQ(s["mean"].as_double(), 2);
  EXPECT_DOUBLE_EQ(s["max"].as_double(), 3);

  arrow::Int64Builder ints;
  ASSERT_TRUE(ints.AppendValues({(int64_t{1} << 60) + 1, 5}).ok());
  FeatureStatisticsBuilder big(arrow::int64());
  big.Add(*ints.Finish().ValueOrDie());
  s = big.Finish(nullptr, "");
  EXPECT_EQ(s["null_count"].as_int64(), 0);
  EXPECT_DOUBLE_EQ(s["max"].as_double(), std::ldexp(1.0, 60));
  EXPECT_EQ(s["distinct_estimate"].as_int64(), 2);
}

TEST(FeatureStatisticsTest, DriftAgainstThePreviousRunsBins) {
  std::vector<std::optional<double>> base, same, shifted;
  for (int i = 0; i < 100; ++i) {
    base.push_back(i);
    same.push_back(i);
    shifted.push_back(i + 50);
  }
  FeatureStatisticsBuilder first(arrow::float64());
  first.Add(*Doubles(base));
  json::object previous = first.Finish(nullptr, "");

  FeatureStatisticsBuilder again(arrow::float64());
  again.Add(*Doubles(same));
  json::object s = again.Finish(&previous, "job-1");
  EXPECT_EQ(s["drift"].as_object()["previous_job_id"].as_string(), "job-1");
  EXPECT_NEAR(s["drift"].as_object()["psi"].as_double(), 0, 1e-12);

  // Shifted by half the range: previous bins 0..4 empty (floored), bins 5..8
  // hold 10% each and the open last bin 60%.
  FeatureStatisticsBuilder moved(arrow::float64());
  moved.Add(*Doubles(shifted));
  s = moved.Finish(&previous, "job-1");
  double expected = 5 * (1e-4 - 0.1) * std::log(1e-4 / 0.1) + (0.6 - 0.1) * std::log(0.6 / 0.1);
  EXPECT_NEAR(s["drift"].as_object()["psi"].as_double(), expected, 1e-9);
}

TEST(FeatureStatisticsTest, CategoricalTopValuesAndDrift) {
  FeatureStatisticsBuilder first(arrow::utf8());
  first.Add(*Strings({"a", "a", "a", "b"}));
  json::object previous = first.Finish(nullptr, "");
  EXPECT_EQ(previous["distinct_estimate"].to_number<int64_t>(), 2);
  const auto& top = previous["top_values"].as_array();
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].as_object().at("value").as_string(), "a");
  EXPECT_EQ(top[0].as_object().at("count").as_int64(), 3);

  FeatureStatisticsBuilder next(arrow::utf8());
  next.Add(*Strings({"a", "b", "b", "c"}));
  json::object s = next.Finish(&previous, "job-1");
  // Categories a, b, other: expected .75/.25/0, actual .25/.5/.25.
  const double psi = (0.25 - 0.75) * std::log(0.25 / 0.75) + (0.5 - 0.25) * std::log(0.5 / 0.25) +
                     (0.25 - 1e-4) * std::log(0.25 / 1e-4);
  EXPECT_NEAR(s["drift"].as_object()["psi"].as_double(), psi, 1e-9);
}

TEST(FeatureStatisticsTest, RunsMergeExactly) {
  FeatureStatisticsBuilder a(arrow::float64()), b(arrow::float64());
  a.Add(*Doubles({1, 2, 3, std::nullopt}));
  b.Add(*Doubles({4, 5, 6, 7, 8, 9, 10}));
  json::object first = a.Finish(nullptr, "");
  json::object second = b.Finish(&first, "j1");
  json::object merged = MergeStatistics({{"j1", 0, first}, {"j2", 1, second}}, 0.2);
  EXPECT_EQ(merged["runs"].as_int64(), 2);
  EXPECT_EQ(merged["count"].as_int64(), 11);
  EXPECT_EQ(merged["null_count"].as_int64(), 1);
  EXPECT_DOUBLE_EQ(merged["min"].as_double(), 1);
  EXPECT_DOUBLE_EQ(merged["max"].as_double(), 10);
  EXPECT_NEAR(merged["mean"].as_double(), 5.5, 1e-12);
  EXPECT_NEAR(merged["stddev"].as_double(), 3.0276503540974917, 1e-12);
  EXPECT_EQ(merged["distinct_estimate"].to_number<int64_t>(), 10);
  EXPECT_EQ(merged["latest_job_id"].as_string(), "j2");
  // The latest run (4..10) lies in the first run's last bin: drifted.
  EXPECT_TRUE(merged["drift"].as_object()["drifted"].as_bool());
}

}  // namespace
}  // namespace fstore::monitoring
