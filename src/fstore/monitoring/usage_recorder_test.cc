#include "fstore/monitoring/usage_recorder.h"

#include <gtest/gtest.h>

namespace fstore::monitoring {
namespace {

TEST(UsageRecorderTest, SumsCountsAndKeepsThemWhenTheSinkFails) {
  std::vector<std::vector<UsageCount>> written;
  bool fail = true;
  {
    UsageRecorder recorder(
        [&](const std::vector<UsageCount>& counts) -> Status {
          if (fail) return Unavailable("registry down");
          written.push_back(counts);
          return Status::OK();
        },
        std::chrono::hours(1));  // only explicit flushes here
    recorder.Add({{"2026-01-01", "", "fs", "f", 1, 0, 0}, {"2026-01-01", "", "fs", "", 1, 3, 2}});
    recorder.Add({{"2026-01-01", "", "fs", "f", 1, 0, 0}});
    EXPECT_FALSE(recorder.Flush().ok());
    EXPECT_TRUE(written.empty());
    fail = false;
    recorder.Add({{"2026-01-01", "", "fs", "", 1, 5, 5}});
    ASSERT_TRUE(recorder.Flush().ok());
    ASSERT_EQ(written.size(), 1u);
    // Sorted by (day, key, set, feature): the set row, then the feature row.
    ASSERT_EQ(written[0].size(), 2u);
    EXPECT_EQ(written[0][0].feature, "");
    EXPECT_EQ(written[0][0].requests, 2);
    EXPECT_EQ(written[0][0].entities, 8);
    EXPECT_EQ(written[0][0].entities_found, 7);
    EXPECT_EQ(written[0][1].feature, "f");
    EXPECT_EQ(written[0][1].requests, 2);
    // Nothing pending: nothing written.
    ASSERT_TRUE(recorder.Flush().ok());
    EXPECT_EQ(written.size(), 1u);
    recorder.Add({{"2026-01-02", "k", "fs", "f", 1, 0, 0}});
  }
  // Destruction flushed the rest.
  ASSERT_EQ(written.size(), 2u);
  EXPECT_EQ(written[1][0].day, "2026-01-02");
}

TEST(UsageRecorderTest, RequestsAggregateByShapeIntoRows) {
  std::vector<UsageCount> written;
  UsageRecorder recorder(
      [&](const std::vector<UsageCount>& counts) -> Status {
        written.insert(written.end(), counts.begin(), counts.end());
        return Status::OK();
      },
      std::chrono::hours(1));
  const std::vector<std::string> ab{"a", "b", "a"}, a{"a"};
  recorder.AddRequest("2026-01-01", "", {{"fs", &ab, 3, 2, true}});
  recorder.AddRequest("2026-01-01", "", {{"fs", &ab, 1, 1, true}});
  recorder.AddRequest("2026-01-01", "", {{"fs", &a, 4, 0, false}});
  ASSERT_TRUE(recorder.Flush().ok());
  auto row = [&](std::string set, std::string feature) {
    UsageCount sum{"2026-01-01", "", set, feature, 0, 0, 0};
    for (const auto& c : written) {
      if (c.feature_set == set && c.feature == feature) {
        sum.requests += c.requests;
        sum.entities += c.entities;
        sum.entities_found += c.entities_found;
      }
    }
    return sum;
  };
  EXPECT_EQ(row(std::string(kRequestRow), "").requests, 3);
  EXPECT_EQ(row("fs", "").requests, 3);
  EXPECT_EQ(row("fs", "").entities, 8);
  EXPECT_EQ(row("fs", std::string(kOnlineRow)).requests, 2);
  EXPECT_EQ(row("fs", std::string(kOnlineRow)).entities, 4);
  EXPECT_EQ(row("fs", std::string(kOnlineRow)).entities_found, 3);
  EXPECT_EQ(row("fs", "a").requests, 3);  // "a" twice in a request counts once
  EXPECT_EQ(row("fs", "b").requests, 2);
}

TEST(UsageReportTest, DaysSetsFeaturesKeysAndCoverage) {
  std::vector<UsageCount> rows = {
      {"2026-01-01", "", std::string(kRequestRow), "", 3, 0, 0},
      {"2026-01-01", "", "fs", "", 3, 12, 0},
      {"2026-01-01", "", "fs", std::string(kOnlineRow), 2, 8, 6},
      {"2026-01-01", "", "fs", "a", 3, 0, 0},
      {"2026-01-02", "key_1", std::string(kRequestRow), "", 1, 0, 0},
      {"2026-01-02", "key_1", "fs", "", 1, 2, 0},
      {"2026-01-02", "key_1", "fs", "b", 1, 0, 0},
      {"2026-01-03", "", std::string(kRequestRow), "", 9, 0, 0},  // after end_day
  };
  auto report = UsageReport(rows, "2026-01-01", "2026-01-02", "", "");
  const auto& days = report["days"].as_array();
  ASSERT_EQ(days.size(), 2u);
  const auto& d1 = days[0].as_object();
  EXPECT_EQ(d1.at("requests").as_int64(), 3);
  EXPECT_EQ(d1.at("entities_requested").as_int64(), 12);
  EXPECT_DOUBLE_EQ(d1.at("coverage").as_double(), 0.75);
  EXPECT_EQ(d1.at("api_keys").as_object().at("anonymous").as_int64(), 3);
  EXPECT_EQ(d1.at("features").as_object().at("fs:a").as_int64(), 3);
  const auto& totals = report["totals"].as_object();
  EXPECT_EQ(totals.at("requests").as_int64(), 4);
  EXPECT_EQ(totals.at("api_keys").as_object().at("key_1").as_int64(), 1);
  EXPECT_EQ(totals.at("entities_requested").as_int64(), 14);

  auto one_key = UsageReport(rows, "2026-01-01", "2026-01-31", "", "key_1");
  EXPECT_EQ(one_key["totals"].as_object().at("requests").as_int64(), 1);
  EXPECT_TRUE(one_key["totals"].as_object().at("coverage").is_null());
}

}  // namespace
}  // namespace fstore::monitoring
