// The point-in-time join on a real offline store: exact boundaries (an event
// at t is seen at t, not at t - 1us), ttl edges, time travel with as_of, ties,
// duplicate and unknown entity rows, several partitions, several feature sets
// with different ttls, int and string keys, and windows evaluated between
// events from the source (checked against a brute-force frame, also over a
// range read in several chunks); the same results whatever the thread count;
// and the scenario files of testdata/join_scenarios/ (JoinScenarios).

#include "fstore/retrieval/point_in_time_join.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include <arrow/api.h>
#include <arrow/filesystem/localfs.h>
#include <arrow/io/api.h>
#include <arrow/json/from_string.h>
#include <boost/json/parse.hpp>
#include <parquet/arrow/writer.h>

#include "fstore/core/ids.h"
#include "fstore/core/time.h"
#include "fstore/offline/fault_injecting_filesystem.h"
#include "fstore/testing/gtest_util.h"

#ifndef FSTORE_SOURCE_DIR
#error "FSTORE_SOURCE_DIR must be defined by the build"
#endif

namespace fstore {
namespace {

namespace fs = std::filesystem;

constexpr TimestampMicros kJan1 = 1'704'067'200'000'000;  // 2024-01-01T00:00:00Z
const auto kTs = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

struct Row {
  std::string key;  // an int key is its decimal text
  TimestampMicros event;
  TimestampMicros created;
  std::optional<double> amount;
};

using Values = std::vector<std::optional<double>>;

class PointInTimeJoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("fstore_pit_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_OK_AND_ASSIGN(offline_, OfflineStore::Open("file://" + (dir_ / "offline").string()));
  }
  void TearDown() override {
    offline_.reset();
    fs::remove_all(dir_);
  }

  std::shared_ptr<arrow::Array> Keys(const std::vector<std::string>& keys) {
    if (int_keys_) {
      arrow::Int64Builder b;
      for (const auto& k : keys) EXPECT_OK(b.Append(std::stoll(k)));
      return b.Finish().ValueOrDie();
    }
    arrow::StringBuilder b;
    for (const auto& k : keys) EXPECT_OK(b.Append(k));
    return b.Finish().ValueOrDie();
  }

  // Source rows (user_id, event_timestamp, amount) as Parquet; returns its path.
  std::string WriteSource(const std::string& name, const std::vector<Row>& rows) {
    std::vector<std::string> keys;
    arrow::TimestampBuilder t(kTs, arrow::default_memory_pool());
    arrow::DoubleBuilder a;
    for (const auto& r : rows) {
      keys.push_back(r.key);
      EXPECT_OK(t.Append(r.event));
      EXPECT_OK(r.amount ? a.Append(*r.amount) : a.AppendNull());
    }
    auto table = arrow::Table::Make(
        arrow::schema({arrow::field("user_id", int_keys_ ? arrow::int64() : arrow::utf8()),
                       arrow::field("event_timestamp", kTs), arrow::field("amount", arrow::float64())}),
        {Keys(keys), t.Finish().ValueOrDie(), a.Finish().ValueOrDie()});
    std::string path = (dir_ / (name + ".parquet")).string();
    auto out = arrow::io::FileOutputStream::Open(path).ValueOrDie();
    EXPECT_OK(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 1000));
    EXPECT_OK(out->Close());
    return path;
  }

  // The entity "user", keyed by user_id of `value_type`.
  static Entity User(const std::string& value_type) {
    Entity user;
    user.name = "user";
    user.join_keys = {"user_id"};
    user.value_type = value_type;
    return user;
  }

  // A feature set of "user" named `name` over the Parquet file `source`.
  static FeatureSet SetOver(const std::string& name, const std::string& source,
                            const std::string& ttl = "") {
    FeatureSet set;
    set.id = NewUuid();
    set.name = name;
    set.entities = {"user"};
    set.ttl = ttl;
    set.source = SourceDefinition{"file", source, "parquet", "", "", ""};
    return set;
  }

  // A feature set over a source of `rows`, with features `amount` (the
  // column; default_value `amount_default` when given) and `spend_1h`
  // (SUM(amount) over 1 hour) and `n_1h` (COUNT(*) over 1 hour).
  FeaturePlan Plan(const std::string& name, const std::vector<Row>& rows, const std::string& ttl,
                   std::optional<double> amount_default = std::nullopt) {
    Entity user = User(int_keys_ ? "int" : "string");
    FeatureSet set = SetOver(name, WriteSource(name, rows), ttl);
    std::vector<Feature> features(3);
    features[0].name = "amount";
    features[0].data_type = "float";
    if (amount_default) features[0].default_value = boost::json::value(*amount_default);
    features[1].name = "spend_1h";
    features[1].data_type = "float";
    features[1].transformation = "SUM(amount)";
    features[1].window_size = "1h";
    features[2].name = "n_1h";
    features[2].data_type = "int";
    features[2].transformation = "COUNT(*)";
    features[2].window_size = "1h";
    auto schema = arrow::schema({arrow::field("user_id", int_keys_ ? arrow::int64() : arrow::utf8()),
                                 arrow::field("event_timestamp", kTs),
                                 arrow::field("amount", arrow::float64())});
    auto plan = PlanMaterialization(set, features, {user}, schema);
    EXPECT_OK(plan.status());
    return *plan;
  }

  // Writes `rows` to the offline store as feature `amount` (the other
  // features are not read from it by these tests).
  void WriteOffline(const std::string& name, const std::vector<Row>& rows) {
    std::vector<std::string> keys;
    arrow::TimestampBuilder e(kTs, arrow::default_memory_pool()), c(kTs, arrow::default_memory_pool());
    arrow::DoubleBuilder a;
    TimestampMicros lo = rows.front().event, hi = rows.front().event;
    for (const auto& r : rows) {
      keys.push_back(r.key);
      EXPECT_OK(e.Append(r.event));
      EXPECT_OK(c.Append(r.created));
      EXPECT_OK(r.amount ? a.Append(*r.amount) : a.AppendNull());
      lo = std::min(lo, r.event);
      hi = std::max(hi, r.event);
    }
    auto table = arrow::Table::Make(
        arrow::schema({arrow::field("user_id", int_keys_ ? arrow::int64() : arrow::utf8()),
                       arrow::field("event_timestamp", kTs), arrow::field("created_timestamp", kTs),
                       arrow::field("amount", arrow::float64())}),
        {Keys(keys), e.Finish().ValueOrDie(), c.Finish().ValueOrDie(), a.Finish().ValueOrDie()});
    TimestampMicros start = lo - ((lo % kMicrosPerDay) + kMicrosPerDay) % kMicrosPerDay;
    EXPECT_OK(offline_->ReplaceRange(name, kOfflineSchemaVersion, {"user_id"}, start,
                                     hi + 1, table, "job")
                  .status());
  }

  std::vector<Values> Query(const FeaturePlan& plan, const std::vector<std::string>& features,
                            const std::vector<std::pair<std::string, TimestampMicros>>& entity_rows,
                            std::optional<TimestampMicros> as_of = std::nullopt) {
    std::vector<std::string> keys;
    arrow::Int64Builder t;
    for (const auto& [k, time] : entity_rows) {
      keys.push_back(k);
      EXPECT_OK(t.Append(time));
    }
    PointInTimeQuery q;
    q.plan = &plan;
    q.features = features;
    auto key_array = Keys(keys);
    q.entity_keys = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("user_id", key_array->type())}), key_array->length(), {key_array});
    std::shared_ptr<arrow::Int64Array> times;
    EXPECT_OK(t.Finish(&times));
    q.times = times;
    q.as_of = as_of;
    q.threads = threads_;
    auto result = RetrievePointInTime(offline_.get(), q);
    EXPECT_OK(result.status());
    std::vector<Values> out;
    if (!result.ok()) return out;
    for (const auto& array : *result) {
      EXPECT_EQ(array->length(), static_cast<int64_t>(entity_rows.size()));
      Values v;
      for (int64_t i = 0; i < array->length(); ++i) {
        if (array->IsNull(i)) {
          v.push_back(std::nullopt);
        } else if (array->type_id() == arrow::Type::INT64) {
          v.push_back(static_cast<double>(static_cast<const arrow::Int64Array&>(*array).Value(i)));
        } else {
          v.push_back(static_cast<const arrow::DoubleArray&>(*array).Value(i));
        }
      }
      out.push_back(v);
    }
    return out;
  }

  fs::path dir_;
  std::unique_ptr<OfflineStore> offline_;
  bool int_keys_ = false;
  int threads_ = 0;  // PointInTimeQuery::threads of Query
};

constexpr TimestampMicros H = kMicrosPerHour;
const std::nullopt_t kNull = std::nullopt;

TEST_F(PointInTimeJoinTest, ExactBoundariesAndNothingLeaks) {
  std::vector<Row> rows{{"u1", kJan1 + 10 * H, kJan1 + 100 * H, 1.0},
                        {"u1", kJan1 + 11 * H, kJan1 + 100 * H, 2.0}};
  auto plan = Plan("fs", rows, "");
  WriteOffline("fs", rows);
  auto got = Query(plan, {"amount"},
                   {{"u1", kJan1 + 10 * H - 1}, {"u1", kJan1 + 10 * H}, {"u1", kJan1 + 11 * H - 1},
                    {"u1", kJan1 + 11 * H}, {"u1", kJan1 + 400 * H}});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (Values{kNull, 1.0, 1.0, 2.0, 2.0}));
}

TEST_F(PointInTimeJoinTest, TtlIncludesExactlyTMinusTtl) {
  std::vector<Row> rows{{"u1", kJan1 + 10 * H, kJan1, 1.0}};
  auto plan = Plan("fs", rows, "1h");
  WriteOffline("fs", rows);
  auto got = Query(plan, {"amount"},
                   {{"u1", kJan1 + 10 * H}, {"u1", kJan1 + 11 * H}, {"u1", kJan1 + 11 * H + 1}});
  EXPECT_EQ(got[0], (Values{1.0, 1.0, kNull}));
}

TEST_F(PointInTimeJoinTest, AsOfHidesRowsCreatedLater) {
  std::vector<Row> rows{{"u1", kJan1 + 10 * H, kJan1 + 20 * H, 1.0},
                        {"u1", kJan1 + 11 * H, kJan1 + 30 * H, 2.0}};
  auto plan = Plan("fs", rows, "");
  WriteOffline("fs", rows);
  std::vector<std::pair<std::string, TimestampMicros>> q{{"u1", kJan1 + 12 * H}};
  EXPECT_EQ(Query(plan, {"amount"}, q)[0], (Values{2.0}));
  EXPECT_EQ(Query(plan, {"amount"}, q, kJan1 + 30 * H)[0], (Values{2.0}));
  EXPECT_EQ(Query(plan, {"amount"}, q, kJan1 + 30 * H - 1)[0], (Values{1.0}));
  EXPECT_EQ(Query(plan, {"amount"}, q, kJan1 + 20 * H - 1)[0], (Values{kNull}));
}

TEST_F(PointInTimeJoinTest, TiesGoToTheGreaterCreatedTime) {
  std::vector<Row> rows{{"u1", kJan1 + 10 * H, kJan1 + 30 * H, 2.0},
                        {"u1", kJan1 + 10 * H, kJan1 + 20 * H, 1.0}};
  auto plan = Plan("fs", rows, "");
  WriteOffline("fs", rows);
  EXPECT_EQ(Query(plan, {"amount"}, {{"u1", kJan1 + 10 * H}})[0], (Values{2.0}));
}

TEST_F(PointInTimeJoinTest, DuplicateRowsKeptInOrderAndUnknownEntitiesGetTheDefault) {
  std::vector<Row> rows{{"u1", kJan1 + 1 * H, kJan1, 1.0}, {"u2", kJan1 + 2 * H, kJan1, 5.0},
                        {"u1", kJan1 + 3 * H, kJan1, 3.0}};
  auto with_default = Plan("fs", rows, "", 42.0);
  WriteOffline("fs", rows);
  std::vector<std::pair<std::string, TimestampMicros>> q{
      {"u1", kJan1 + 4 * H}, {"u2", kJan1 + 2 * H}, {"u1", kJan1 + 4 * H},
      {"zz", kJan1 + 4 * H}, {"u1", kJan1 + 2 * H}, {"u2", kJan1 + H}};
  EXPECT_EQ(Query(with_default, {"amount"}, q)[0], (Values{3.0, 5.0, 3.0, 42.0, 1.0, 42.0}));
  auto without = Plan("fs", rows, "");
  EXPECT_EQ(Query(without, {"amount"}, q)[0], (Values{3.0, 5.0, 3.0, kNull, 1.0, kNull}));
}

TEST_F(PointInTimeJoinTest, LooksBackAcrossPartitionsWithIntKeys) {
  int_keys_ = true;
  std::vector<Row> rows{{"7", kJan1 + 1 * H, kJan1, 1.0},
                        {"7", kJan1 + 49 * H, kJan1, 2.0},  // Jan 3
                        {"8", kJan1 + 25 * H, kJan1, 8.0}};  // Jan 2
  auto plan = Plan("fs", rows, "");
  WriteOffline("fs", rows);
  auto got = Query(plan, {"amount"},
                   {{"7", kJan1 + 24 * 10 * H}, {"8", kJan1 + 24 * 10 * H}, {"7", kJan1 + 48 * H},
                    {"8", kJan1 + 25 * H - 1}, {"9", kJan1 + 50 * H}});
  EXPECT_EQ(got[0], (Values{2.0, 8.0, 1.0, kNull, kNull}));
}

// The join reads only the date partitions its entity rows' times need: from
// the earliest time minus the ttl to the latest time (without a ttl, from
// the first partition), never a later one.
TEST_F(PointInTimeJoinTest, ReadsOnlyThePartitionsTheEntityRowsTimesNeed) {
  std::vector<Row> rows;
  for (int day = 0; day < 10; ++day) {  // Jan 1-10, noon
    rows.push_back({"u1", kJan1 + day * 24 * H + 12 * H, kJan1, static_cast<double>(day + 1)});
  }
  auto with_ttl = Plan("ttl", rows, "1d");
  auto without_ttl = Plan("forever", rows, "");
  WriteOffline("ttl", rows);
  WriteOffline("forever", rows);
  // The same files, seen through a filesystem that records what is opened.
  auto watched = std::make_shared<FaultInjectingFileSystem>(
      std::make_shared<arrow::fs::LocalFileSystem>());
  ASSERT_OK_AND_ASSIGN(offline_, OfflineStore::Make(watched, (dir_ / "offline").string()));
  auto dates_opened = [&] {
    std::set<std::string> dates;
    for (const auto& path : watched->opened()) {
      auto at = path.find("/date=");
      EXPECT_NE(at, std::string::npos) << path;
      if (at != std::string::npos) dates.insert(path.substr(at + 6, 10));
    }
    watched->ClearOpened();
    return dates;
  };
  // Jan 5 18:00 and Jan 6 06:00, ttl 1 day: Jan 4 18:00 to Jan 6 06:00.
  const std::vector<std::pair<std::string, TimestampMicros>> q{
      {"u1", kJan1 + 4 * 24 * H + 18 * H}, {"u1", kJan1 + 5 * 24 * H + 6 * H}};
  watched->ClearOpened();
  EXPECT_EQ(Query(with_ttl, {"amount"}, q)[0], (Values{5.0, 5.0}));
  EXPECT_EQ(dates_opened(), (std::set<std::string>{"2024-01-04", "2024-01-05", "2024-01-06"}));
  // Without a ttl any earlier row may match, but nothing after Jan 6.
  EXPECT_EQ(Query(without_ttl, {"amount"}, q)[0], (Values{5.0, 5.0}));
  auto dates = dates_opened();
  ASSERT_FALSE(dates.empty());
  EXPECT_LE(*dates.rbegin(), "2024-01-06");
  EXPECT_EQ(dates.count("2024-01-06"), 1u);
}

TEST_F(PointInTimeJoinTest, SeveralFeatureSetsWithTheirOwnTtls) {
  std::vector<Row> rows{{"u1", kJan1 + 10 * H, kJan1, 1.0}};
  auto short_ttl = Plan("short", rows, "30m");
  auto long_ttl = Plan("long", rows, "1d");
  WriteOffline("short", rows);
  WriteOffline("long", rows);
  std::vector<std::pair<std::string, TimestampMicros>> q{{"u1", kJan1 + 10 * H + H / 2},
                                                        {"u1", kJan1 + 12 * H}};
  EXPECT_EQ(Query(short_ttl, {"amount"}, q)[0], (Values{1.0, kNull}));
  EXPECT_EQ(Query(long_ttl, {"amount"}, q)[0], (Values{1.0, 1.0}));
}

TEST_F(PointInTimeJoinTest, WindowsAreExactBetweenEvents) {
  std::mt19937_64 rng(5);
  std::vector<Row> rows;
  for (int i = 0; i < 300; ++i) {
    std::string key = "u" + std::to_string(rng() % 4);
    TimestampMicros t = kJan1 + static_cast<int64_t>(rng() % (48 * 3600)) * kMicrosPerSecond;
    std::optional<double> amount;
    if (rng() % 10 != 0) amount = static_cast<double>(rng() % 100);
    rows.push_back({key, t, kJan1, amount});
  }
  rows.push_back(rows[3]);  // a peer
  auto plan = Plan("fs", rows, "");
  // The offline store holds u0-u2's rows only: a u3 row (it has events in
  // the source) then has no live row, as an entity online serving does not
  // have, and gets null like u4, which has none anywhere.
  std::vector<Row> stored;
  for (const auto& r : rows) {
    if (r.key != "u3") stored.push_back(r);
  }
  WriteOffline("fs", stored);
  std::vector<std::pair<std::string, TimestampMicros>> q;
  for (int i = 0; i < 200; ++i) {
    q.push_back({"u" + std::to_string(rng() % 5),
                 kJan1 + static_cast<int64_t>(rng() % (50 * 3600)) * kMicrosPerSecond});
  }
  q.push_back({rows[3].key, rows[3].event});
  q.push_back({rows[3].key, rows[3].event - 1});
  q.push_back({rows[3].key, rows[3].event + H});
  auto got = Query(plan, {"spend_1h", "n_1h"}, q);
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < q.size(); ++i) {
    double sum = 0;
    int64_t n = 0, non_null = 0;
    const bool live = std::any_of(stored.begin(), stored.end(), [&](const Row& r) {
      return r.key == q[i].first && r.event <= q[i].second;
    });
    if (!live) {
      EXPECT_EQ(got[1][i], kNull) << i;
      EXPECT_EQ(got[0][i], kNull) << i;
      continue;
    }
    for (const auto& r : rows) {
      if (r.key != q[i].first || r.event > q[i].second || r.event < q[i].second - H) continue;
      ++n;
      if (r.amount) {
        sum += *r.amount;
        ++non_null;
      }
    }
    EXPECT_EQ(got[1][i], std::optional<double>(static_cast<double>(n))) << i;
    if (non_null == 0) {
      EXPECT_EQ(got[0][i], kNull) << i;
    } else {
      ASSERT_TRUE(got[0][i].has_value()) << i;
      EXPECT_NEAR(*got[0][i], sum, 1e-9) << i;
    }
  }
}

// The merge of entity keys with each partition's (key, time) order, against a
// brute-force as-of join: many entities over several partitions, entity rows
// before, between, at and after events, unknown keys, with and without as_of.
// Enough entities for the join to split each partition into key ranges
// joined on separate threads, with versions (equal key and event time,
// several created times), against a brute-force join.
TEST_F(PointInTimeJoinTest, ManyEntitiesMatchABruteForceJoin) {
  // String keys; int keys of a narrow range (grouped by a counting sort);
  // int keys spread over a wide range, negative ones included (grouped
  // through a hash table).
  enum class Keys { kStrings, kDenseInts, kSparseInts };
  for (Keys keys : {Keys::kStrings, Keys::kDenseInts, Keys::kSparseInts}) {
    int_keys_ = keys != Keys::kStrings;
    const std::string name = keys == Keys::kStrings     ? "fs_str"
                             : keys == Keys::kDenseInts ? "fs_int"
                                                        : "fs_sparse";
    auto key_of = [&](uint64_t k) {
      if (keys != Keys::kSparseInts) return std::to_string(k);
      return std::to_string(static_cast<int64_t>(k) * 1'000'000'007LL - 6'000'000'000'000LL);
    };
    std::mt19937_64 rng(11);
    std::vector<Row> rows;
    std::set<std::tuple<std::string, TimestampMicros, TimestampMicros>> seen;
    while (rows.size() < 40000) {
      // Keys whose string order differs from their numeric order.
      std::string key = key_of(rng() % 12000);
      TimestampMicros t = kJan1 + static_cast<int64_t>(rng() % (5 * 24 * 3600)) * kMicrosPerSecond;
      TimestampMicros created = kJan1 + static_cast<int64_t>(rng() % (10 * 24)) * H;
      if (!seen.insert({key, t, created}).second) continue;
      rows.push_back({key, t, created, static_cast<double>(rows.size())});
      if (rng() % 10 == 0) {  // another version of the same row
        TimestampMicros later = created + static_cast<int64_t>(1 + rng() % 48) * H;
        if (seen.insert({key, t, later}).second) {
          rows.push_back({key, t, later, static_cast<double>(rows.size())});
        }
      }
    }
    auto plan = Plan(name, rows, "");
    WriteOffline(name, rows);
    std::vector<std::pair<std::string, TimestampMicros>> q;
    for (int i = 0; i < 20000; ++i) {
      q.push_back({key_of(rng() % 13000),
                   kJan1 - 12 * H +
                       static_cast<int64_t>(rng() % (6 * 24 * 3600)) * kMicrosPerSecond});
    }
    for (int i = 0; i < 500; ++i) q.push_back({rows[i].key, rows[i].event});
    std::map<std::string, std::vector<const Row*>> by_key;
    for (const auto& r : rows) by_key[r.key].push_back(&r);
    for (std::optional<TimestampMicros> as_of :
         {std::optional<TimestampMicros>(), std::optional<TimestampMicros>(kJan1 + 120 * H)}) {
      auto got = Query(plan, {"amount"}, q, as_of);
      ASSERT_EQ(got.size(), 1u);
      int matched = 0;
      for (size_t i = 0; i < q.size(); ++i) {
        std::optional<double> want;
        std::pair<TimestampMicros, TimestampMicros> best;
        for (const Row* r : by_key[q[i].first]) {
          if (r->event > q[i].second) continue;
          if (as_of && r->created > *as_of) continue;
          if (!want || std::make_pair(r->event, r->created) > best) {
            best = {r->event, r->created};
            want = r->amount;
          }
        }
        matched += want.has_value();
        ASSERT_EQ(got[0][i], want) << name << " row " << i << " as_of " << as_of.has_value();
      }
      EXPECT_GT(matched, 5000);
    }
  }
}

// The join's thread count changes how each partition is split into key
// ranges (one per thread: 1, 2, then 3 ranges here, as the entity rows have
// more than 3 * 4096 groups), never what it gives: the same values, windows
// included, with each count, for int and string keys.
TEST_F(PointInTimeJoinTest, ThreadCountsGiveIdenticalResults) {
  for (bool ints : {true, false}) {
    int_keys_ = ints;
    const std::string name = ints ? "threads_int" : "threads_str";
    std::mt19937_64 rng(23);
    std::vector<Row> rows;
    for (int i = 0; i < 60000; ++i) {
      rows.push_back({std::to_string(rng() % 20000),
                      kJan1 + static_cast<int64_t>(rng() % (4 * 24 * 3600)) * kMicrosPerSecond,
                      kJan1, static_cast<double>(i)});
    }
    auto plan = Plan(name, rows, "");
    WriteOffline(name, rows);
    // Every key once (20,000 groups, with 1,000 unknown ones), then more rows.
    std::vector<std::pair<std::string, TimestampMicros>> q;
    for (int k = 0; k < 21000; ++k) {
      q.push_back({std::to_string(k),
                   kJan1 + static_cast<int64_t>(rng() % (5 * 24 * 3600)) * kMicrosPerSecond});
    }
    for (int i = 0; i < 9000; ++i) {
      q.push_back({std::to_string(rng() % 21000),
                   kJan1 + static_cast<int64_t>(rng() % (5 * 24 * 3600)) * kMicrosPerSecond});
    }
    threads_ = 1;
    const std::vector<Values> one = Query(plan, {"amount", "n_1h"}, q);
    ASSERT_EQ(one.size(), 2u);
    const int64_t matched =
        std::count_if(one[0].begin(), one[0].end(), [](const auto& v) { return v.has_value(); });
    EXPECT_GT(matched, 15000) << name;
    for (int threads : {2, 3, 0}) {
      threads_ = threads;
      EXPECT_EQ(Query(plan, {"amount", "n_1h"}, q), one) << name << ", threads " << threads;
    }
  }
}

// Windows recomputed over a range of many days read the source a chunk of
// days at a time (a day, then up to 31: here [start, start + 1d), then 31
// days twice, then the rest, start being the earliest entity row's time
// less the window). Values agree with a brute-force frame, also for events
// and entity rows on the chunks' edges and for peers (equal event times),
// whose order decides first_value and last_value.
TEST_F(PointInTimeJoinTest, WindowsOverManyDaysMatchABruteForceFrame) {
  constexpr TimestampMicros D = kMicrosPerDay;
  const TimestampMicros start = kJan1;  // the earliest entity row is at start + 3 days
  const std::vector<TimestampMicros> edges{start, start + D, start + 32 * D, start + 63 * D};
  std::mt19937_64 rng(31);
  std::vector<Row> rows;
  auto key = [&] { return "u" + std::to_string(rng() % 6); };
  auto amount = [&]() -> std::optional<double> {
    if (rng() % 8 == 0) return std::nullopt;
    return static_cast<double>(rng() % 1000);
  };
  for (int i = 0; i < 4000; ++i) {
    rows.push_back({key(), start - 2 * D + static_cast<int64_t>(rng() % (75 * 24 * 3600)) *
                                              kMicrosPerSecond,
                    kJan1, amount()});
    if (rng() % 5 == 0) rows.push_back({rows.back().key, rows.back().event, kJan1, amount()});
  }
  for (TimestampMicros edge : edges) {  // events on and next to the edges, with peers
    for (TimestampMicros t : {edge - 1, edge, edge, edge + 1}) {
      for (int k = 0; k < 6; ++k) rows.push_back({"u" + std::to_string(k), t, kJan1, amount()});
    }
  }
  std::shuffle(rows.begin(), rows.end(), rng);  // source order is not time order

  Entity user = User("string");
  FeatureSet set = SetOver("long", WriteSource("long", rows));
  const std::string over =
      " OVER (PARTITION BY user_id ORDER BY event_timestamp RANGE BETWEEN INTERVAL '3 days' "
      "PRECEDING AND CURRENT ROW)";
  std::vector<Feature> features(4);
  features[0].name = "n_3d";
  features[0].data_type = "int";
  features[0].transformation = "COUNT(*)";
  features[0].window_size = "3d";
  features[1].name = "spend_3d";
  features[1].data_type = "float";
  features[1].transformation = "SUM(amount)";
  features[1].window_size = "3d";
  features[2].name = "first_3d";
  features[2].data_type = "float";
  features[2].transformation = "first_value(amount)" + over;
  features[3].name = "last_3d";
  features[3].data_type = "float";
  features[3].transformation = "last_value(amount)" + over;
  auto schema = arrow::schema({arrow::field("user_id", arrow::utf8()),
                               arrow::field("event_timestamp", kTs),
                               arrow::field("amount", arrow::float64())});
  ASSERT_OK_AND_ASSIGN(auto plan, PlanMaterialization(set, features, {user}, schema));
  WriteOffline("long", rows);

  std::vector<std::pair<std::string, TimestampMicros>> q{{"u0", start + 3 * D}};
  for (TimestampMicros edge : edges) {
    for (TimestampMicros t : {edge - 1, edge, edge + 1, edge + 3 * D, edge + 3 * D + 1}) {
      if (t < start + 3 * D) continue;
      for (int k = 0; k < 7; ++k) q.push_back({"u" + std::to_string(k), t});
    }
  }
  for (int i = 0; i < 400; ++i) {
    q.push_back({"u" + std::to_string(rng() % 7),
                 start + 3 * D + static_cast<int64_t>(rng() % (68 * 24 * 3600)) * kMicrosPerSecond});
  }
  ASSERT_EQ(std::min_element(q.begin(), q.end(),
                             [](const auto& a, const auto& b) { return a.second < b.second; })
                ->second,
            start + 3 * D);
  auto got = Query(plan, {"n_3d", "spend_3d", "first_3d", "last_3d"}, q);
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < q.size(); ++i) {
    const auto& [k, t] = q[i];
    // The frame's rows in (time, source order).
    std::vector<size_t> frame;
    bool live = false;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (rows[r].key != k || rows[r].event > t) continue;
      live = true;
      if (rows[r].event >= t - 3 * D) frame.push_back(r);
    }
    std::stable_sort(frame.begin(), frame.end(),
                     [&](size_t a, size_t b) { return rows[a].event < rows[b].event; });
    SCOPED_TRACE(k + " at " + FormatTimestamp(t));
    if (!live) {
      for (const auto& values : got) EXPECT_EQ(values[i], kNull);
      continue;
    }
    std::optional<double> sum;
    for (size_t r : frame) {
      if (rows[r].amount) sum = sum.value_or(0) + *rows[r].amount;
    }
    EXPECT_EQ(got[0][i], std::optional<double>(static_cast<double>(frame.size())));
    EXPECT_EQ(got[1][i], sum);
    EXPECT_EQ(got[2][i], frame.empty() ? kNull : rows[frame.front()].amount);
    EXPECT_EQ(got[3][i], frame.empty() ? kNull : rows[frame.back()].amount);
  }
}

TEST_F(PointInTimeJoinTest, IntKeysStoredQueriedAsStringsAreSortedAgain) {
  // Stored as int64 (sorted numerically), asked for as utf8: the cast keys
  // are not in the string order ("10" < "9"), so the partition is re-sorted.
  int_keys_ = true;
  std::vector<Row> rows{{"9", kJan1 + 1 * H, kJan1, 9.0},
                        {"10", kJan1 + 2 * H, kJan1, 10.0},
                        {"100", kJan1 + 3 * H, kJan1, 100.0},
                        {"10", kJan1 + 4 * H, kJan1, 10.5}};
  auto plan = Plan("fs", rows, "");
  WriteOffline("fs", rows);
  int_keys_ = false;
  auto got = Query(plan, {"amount"},
                   {{"100", kJan1 + 5 * H}, {"9", kJan1 + 5 * H}, {"10", kJan1 + 3 * H},
                    {"10", kJan1 + 5 * H}, {"11", kJan1 + 5 * H}});
  EXPECT_EQ(got[0], (Values{100.0, 9.0, 10.0, 10.5, kNull}));
}

TEST_F(PointInTimeJoinTest, StringBoolAndLaterAddedFeatures) {
  // Fixed-width features are gathered value by value, others taken per
  // partition batch; a feature the stored rows lack is null where a row
  // matched (as a null value is), its default where none did.
  Entity user = User("string");
  FeatureSet set = SetOver("mixed", (dir_ / "none.parquet").string());
  std::vector<Feature> features(4);
  features[0].name = "amount";
  features[0].data_type = "float";
  features[1].name = "band";
  features[1].data_type = "string";
  features[2].name = "big";
  features[2].data_type = "bool";
  features[3].name = "late";
  features[3].data_type = "int";
  features[3].default_value = boost::json::value(-1);
  auto schema = arrow::schema({arrow::field("user_id", arrow::utf8()),
                               arrow::field("event_timestamp", kTs),
                               arrow::field("amount", arrow::float64()),
                               arrow::field("band", arrow::utf8()),
                               arrow::field("big", arrow::boolean()),
                               arrow::field("late", arrow::int64())});
  ASSERT_OK_AND_ASSIGN(auto plan, PlanMaterialization(set, features, {user}, schema));
  // Stored without `late`, over two dates.
  arrow::StringBuilder k, band;
  arrow::TimestampBuilder e(kTs, arrow::default_memory_pool()), c(kTs, arrow::default_memory_pool());
  arrow::DoubleBuilder amount;
  arrow::BooleanBuilder big;
  struct Stored {
    const char* key;
    TimestampMicros event;
    std::optional<double> amount;
    std::optional<std::string> band;
    std::optional<bool> big;
  };
  std::vector<Stored> stored{{"a", kJan1 + H, 1.0, "low", false},
                             {"a", kJan1 + 30 * H, std::nullopt, "high", true},
                             {"b", kJan1 + 2 * H, 2.0, std::nullopt, std::nullopt}};
  for (const auto& r : stored) {
    ASSERT_OK(k.Append(r.key));
    ASSERT_OK(e.Append(r.event));
    ASSERT_OK(c.Append(kJan1));
    ASSERT_OK(r.amount ? amount.Append(*r.amount) : amount.AppendNull());
    ASSERT_OK(r.band ? band.Append(*r.band) : band.AppendNull());
    ASSERT_OK(r.big ? big.Append(*r.big) : big.AppendNull());
  }
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("user_id", arrow::utf8()), arrow::field("event_timestamp", kTs),
                     arrow::field("created_timestamp", kTs), arrow::field("amount", arrow::float64()),
                     arrow::field("band", arrow::utf8()), arrow::field("big", arrow::boolean())}),
      {k.Finish().ValueOrDie(), e.Finish().ValueOrDie(), c.Finish().ValueOrDie(),
       amount.Finish().ValueOrDie(), band.Finish().ValueOrDie(), big.Finish().ValueOrDie()});
  ASSERT_OK(offline_->ReplaceRange("mixed", kOfflineSchemaVersion, {"user_id"}, kJan1,
                                   kJan1 + 48 * H, table, "job")
                .status());
  PointInTimeQuery q;
  q.plan = &plan;
  q.features = {"band", "late", "amount", "big"};
  arrow::StringBuilder keys;
  arrow::Int64Builder times;
  for (const auto& [key, t] : std::vector<std::pair<std::string, TimestampMicros>>{
           {"a", kJan1 + 40 * H}, {"b", kJan1 + 40 * H}, {"a", kJan1 + 2 * H}, {"a", kJan1},
           {"c", kJan1 + 40 * H}}) {
    ASSERT_OK(keys.Append(key));
    ASSERT_OK(times.Append(t));
  }
  auto key_array = keys.Finish().ValueOrDie();
  q.entity_keys = arrow::RecordBatch::Make(arrow::schema({arrow::field("user_id", arrow::utf8())}),
                                           5, {key_array});
  std::shared_ptr<arrow::Int64Array> time_array;
  ASSERT_OK(times.Finish(&time_array));
  q.times = time_array;
  ASSERT_OK_AND_ASSIGN(auto got, RetrievePointInTime(offline_.get(), q));
  ASSERT_EQ(got.size(), 4u);
  auto expect = [](const std::shared_ptr<arrow::Array>& a, const std::string& json) {
    auto want = arrow::json::ArrayFromJSONString(a->type(), json).ValueOrDie();
    EXPECT_TRUE(a->Equals(*want)) << a->ToString() << " vs " << json;
  };
  expect(got[0], R"(["high", null, "low", null, null])");
  expect(got[1], "[null, null, null, -1, -1]");
  expect(got[2], "[null, 2.0, 1.0, null, null]");
  expect(got[3], "[true, null, false, null, null]");

  // Nothing matches: all null (or the default).
  arrow::StringBuilder early_keys;
  ASSERT_OK(early_keys.Append("a"));
  auto early = early_keys.Finish().ValueOrDie();
  q.entity_keys = arrow::RecordBatch::Make(arrow::schema({arrow::field("user_id", arrow::utf8())}),
                                           1, {early});
  arrow::Int64Builder early_time;
  ASSERT_OK(early_time.Append(kJan1));
  ASSERT_OK(early_time.Finish(&time_array));
  q.times = time_array;
  ASSERT_OK_AND_ASSIGN(got, RetrievePointInTime(offline_.get(), q));
  expect(got[0], "[null]");
  expect(got[1], "[-1]");
  expect(got[2], "[null]");
  expect(got[3], "[null]");
}

TEST_F(PointInTimeJoinTest, FixedWidthFeaturesReadRawAgreeWithTheBatchPath) {
  // With int keys and only fixed-width features the partitions are decoded
  // raw (OfflineStore::ReadFixedWidth); asking for a string feature too
  // reads them as record batches. Both give the same values: nulls, a
  // feature the stored rows lack, a value from an earlier partition.
  Entity user = User("int");
  FeatureSet set = SetOver("raw", (dir_ / "none.parquet").string());
  std::vector<Feature> features(4);
  features[0].name = "amount";
  features[0].data_type = "float";
  features[1].name = "clicks";
  features[1].data_type = "int";
  features[2].name = "band";
  features[2].data_type = "string";
  features[3].name = "late";
  features[3].data_type = "float";
  features[3].default_value = boost::json::value(-1.5);
  auto schema = arrow::schema({arrow::field("user_id", arrow::int64()),
                               arrow::field("event_timestamp", kTs),
                               arrow::field("amount", arrow::float64()),
                               arrow::field("clicks", arrow::int64()),
                               arrow::field("band", arrow::utf8()),
                               arrow::field("late", arrow::float64())});
  ASSERT_OK_AND_ASSIGN(auto plan, PlanMaterialization(set, features, {user}, schema));
  // Stored without `late`, over two dates.
  arrow::Int64Builder k, clicks;
  arrow::TimestampBuilder e(kTs, arrow::default_memory_pool()), c(kTs, arrow::default_memory_pool());
  arrow::DoubleBuilder amount;
  arrow::StringBuilder band;
  struct Stored {
    int64_t key;
    TimestampMicros event;
    std::optional<double> amount;
    std::optional<int64_t> clicks;
  };
  std::vector<Stored> stored{{1, kJan1 + H, 1.0, 10},
                             {1, kJan1 + 30 * H, std::nullopt, 11},
                             {2, kJan1 + 2 * H, 2.0, std::nullopt},
                             {3, kJan1 + 26 * H, 3.0, 30}};
  for (const auto& r : stored) {
    ASSERT_OK(k.Append(r.key));
    ASSERT_OK(e.Append(r.event));
    ASSERT_OK(c.Append(kJan1));
    ASSERT_OK(r.amount ? amount.Append(*r.amount) : amount.AppendNull());
    ASSERT_OK(r.clicks ? clicks.Append(*r.clicks) : clicks.AppendNull());
    ASSERT_OK(band.Append("b" + std::to_string(r.key)));
  }
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("user_id", arrow::int64()), arrow::field("event_timestamp", kTs),
                     arrow::field("created_timestamp", kTs), arrow::field("amount", arrow::float64()),
                     arrow::field("clicks", arrow::int64()), arrow::field("band", arrow::utf8())}),
      {k.Finish().ValueOrDie(), e.Finish().ValueOrDie(), c.Finish().ValueOrDie(),
       amount.Finish().ValueOrDie(), clicks.Finish().ValueOrDie(), band.Finish().ValueOrDie()});
  ASSERT_OK(offline_->ReplaceRange("raw", kOfflineSchemaVersion, {"user_id"}, kJan1,
                                   kJan1 + 48 * H, table, "job")
                .status());
  PointInTimeQuery q;
  q.plan = &plan;
  arrow::Int64Builder keys, times;
  for (const auto& [key, t] : std::vector<std::pair<int64_t, TimestampMicros>>{
           {1, kJan1 + 40 * H}, {2, kJan1 + 40 * H}, {1, kJan1 + 2 * H}, {1, kJan1},
           {4, kJan1 + 40 * H}, {3, kJan1 + 47 * H}, {3, kJan1 + 25 * H}}) {
    ASSERT_OK(keys.Append(key));
    ASSERT_OK(times.Append(t));
  }
  q.entity_keys = arrow::RecordBatch::Make(arrow::schema({arrow::field("user_id", arrow::int64())}),
                                           7, {keys.Finish().ValueOrDie()});
  std::shared_ptr<arrow::Int64Array> time_array;
  ASSERT_OK(times.Finish(&time_array));
  q.times = time_array;
  auto expect = [](const std::shared_ptr<arrow::Array>& a, const std::string& json) {
    auto want = arrow::json::ArrayFromJSONString(a->type(), json).ValueOrDie();
    EXPECT_TRUE(a->Equals(*want)) << a->ToString() << " vs " << json;
  };
  q.features = {"late", "amount", "clicks"};
  ASSERT_OK_AND_ASSIGN(auto raw, RetrievePointInTime(offline_.get(), q));
  q.features = {"late", "amount", "clicks", "band"};
  ASSERT_OK_AND_ASSIGN(auto batches, RetrievePointInTime(offline_.get(), q));
  for (const auto& got : {raw, batches}) {
    ASSERT_GE(got.size(), 3u);
    expect(got[0], "[null, null, null, -1.5, -1.5, null, -1.5]");
    expect(got[1], "[null, 2.0, 1.0, null, null, 3.0, null]");
    expect(got[2], "[11, null, 10, null, null, 30, null]");
  }
  expect(batches[3], R"(["b1", "b2", "b1", null, null, "b3", null])");
}

TEST_F(PointInTimeJoinTest, AnUnreadablePartitionFailsTheJoinWithoutHanging) {
  // A read failing in the middle of the join (its reads and merges run as
  // tasks on two threads) ends it with the error, whichever path reads.
  for (bool ints : {true, false}) {
    int_keys_ = ints;
    const std::string name = ints ? "bad_int" : "bad_str";
    std::vector<Row> rows;
    for (int day = 0; day < 6; ++day) {
      for (int key = 0; key < 50; ++key) {
        rows.push_back({std::to_string(key), kJan1 + day * 24 * H + key, kJan1, 1.0 * day});
      }
    }
    auto plan = Plan(name, rows, "");
    WriteOffline(name, rows);
    // Jan 3's file is overwritten with bytes that are not Parquet.
    int corrupted = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_ / "offline" / name)) {
      if (e.path().extension() == ".parquet" &&
          e.path().string().find("date=2024-01-03") != std::string::npos) {
        std::ofstream(e.path(), std::ios::trunc) << std::string(4096, 'x');
        ++corrupted;
      }
    }
    ASSERT_EQ(corrupted, 1);
    std::vector<std::string> keys;
    arrow::Int64Builder t;
    for (int i = 0; i < 2000; ++i) {
      keys.push_back(std::to_string(i % 60));
      ASSERT_OK(t.Append(kJan1 + (i % 144) * H));
    }
    PointInTimeQuery q;
    q.plan = &plan;
    q.features = {"amount"};
    auto key_array = Keys(keys);
    q.entity_keys = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("user_id", key_array->type())}), key_array->length(),
        {key_array});
    std::shared_ptr<arrow::Int64Array> times;
    ASSERT_OK(t.Finish(&times));
    q.times = times;
    auto result = RetrievePointInTime(offline_.get(), q);
    ASSERT_FALSE(result.ok()) << name;
    EXPECT_EQ(ErrorCodeOf(result.status()), ErrorCode::kInternal) << result.status().ToString();
    EXPECT_NE(result.status().ToString().find("date=2024-01-03"), std::string::npos)
        << name << ": " << result.status().ToString();
  }
}

TEST_F(PointInTimeJoinTest, UnknownFeatureIsRefused) {
  std::vector<Row> rows{{"u1", kJan1, kJan1, 1.0}};
  auto plan = Plan("fs", rows, "");
  PointInTimeQuery q;
  q.plan = &plan;
  q.features = {"nope"};
  arrow::StringBuilder k;
  ASSERT_OK(k.Append("u1"));
  auto keys = k.Finish().ValueOrDie();
  q.entity_keys = arrow::RecordBatch::Make(arrow::schema({arrow::field("user_id", arrow::utf8())}), 1,
                                           {keys});
  arrow::Int64Builder t;
  ASSERT_OK(t.Append(kJan1));
  std::shared_ptr<arrow::Int64Array> times;
  ASSERT_OK(t.Finish(&times));
  q.times = times;
  auto r = RetrievePointInTime(offline_.get(), q);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kInvalidArgument);
}

TEST_F(PointInTimeJoinTest, EmptyStoreGivesDefaults) {
  // Nothing materialized: a windowed feature, though computed from the
  // source, is null too (what the store knew: nothing), as online.
  std::vector<Row> rows{{"u1", kJan1, kJan1, 1.0}};
  auto plan = Plan("fs", rows, "", 7.0);
  EXPECT_EQ(Query(plan, {"amount", "n_1h"}, {{"u1", kJan1}, {"u2", kJan1}}),
            (std::vector<Values>{{7.0, 7.0}, {kNull, kNull}}));
}

TEST_F(PointInTimeJoinTest, AWindowWithoutALiveRowIsTheDefaultAsOnline) {
  // Windowed features follow the feature set's match, as online serving
  // does for an entity it lacks or holds past the ttl: no row with event
  // time <= t within the ttl gives the default (or null), a live row the
  // exact window, 0 for an empty count. ttl 30 min, window 1 hour.
  std::vector<Row> rows{{"u1", kJan1, kJan1, 1.0}, {"u1", kJan1 + 10 * 60 * kMicrosPerSecond, kJan1, 2.0}};
  auto plan = Plan("fs", rows, "30m");
  WriteOffline("fs", rows);
  const TimestampMicros m = 60 * kMicrosPerSecond;
  auto got = Query(plan, {"n_1h", "spend_1h"},
                   {{"u1", kJan1 - 1},         // before u1's first event
                    {"u1", kJan1 + 20 * m},    // both events in the window, a live row
                    {"u1", kJan1 + 40 * m},    // the latest row exactly ttl old: still live
                    {"u1", kJan1 + 40 * m + 1},  // one us past the ttl: no live row
                    {"u2", kJan1 + 20 * m}});  // an entity never seen
  EXPECT_EQ(got, (std::vector<Values>{{kNull, 2.0, 2.0, kNull, kNull},
                                      {kNull, 3.0, 3.0, kNull, kNull}}));
  // With a default, the default where nothing is live.
  auto n = std::find_if(plan.features.begin(), plan.features.end(),
                        [](const auto& p) { return p.feature.name == "n_1h"; });
  ASSERT_NE(n, plan.features.end());
  n->feature.default_value = boost::json::value(0);
  got = Query(plan, {"n_1h"}, {{"u1", kJan1 - 1}, {"u1", kJan1 + 20 * m}, {"u2", kJan1}});
  EXPECT_EQ(got, (std::vector<Values>{{0.0, 2.0, 0.0}}));
}

// ------------------------------------------------------------ scenario files
// testdata/join_scenarios/*.json (their README says the format): each file
// defines feature sets by their rows and queries with the values expected.

/// The scenario's time text as UTC microseconds (fails the test if bad).
TimestampMicros ScenarioTime(const boost::json::value& v) {
  auto t = ParseTimestamp(std::string(v.as_string()));
  EXPECT_OK(t.status());
  return t.ok() ? *t : 0;
}

/// A key as text: integer keys are JSON integers, string keys strings.
std::string ScenarioKey(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : std::to_string(v.to_number<int64_t>());
}

std::optional<double> ScenarioValue(const boost::json::value& v) {
  if (v.is_null()) return std::nullopt;
  return v.to_number<double>();
}

TEST_F(PointInTimeJoinTest, JoinScenarios) {
  const fs::path dir = fs::path(FSTORE_SOURCE_DIR) / "src/fstore/retrieval/testdata/join_scenarios";
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 7u) << dir;
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.filename().string());
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    boost::json::value scenario = boost::json::parse(text.str());
    const auto& doc = scenario.as_object();
    int_keys_ = doc.contains("int_keys") && doc.at("int_keys").as_bool();
    // Each scenario in its own offline store.
    offline_.reset();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_OK_AND_ASSIGN(offline_, OfflineStore::Open("file://" + (dir_ / "offline").string()));

    std::map<std::string, FeaturePlan> plans;
    for (const auto& set_value : doc.at("feature_sets").as_array()) {
      const auto& set = set_value.as_object();
      const std::string name(set.at("name").as_string());
      std::vector<Row> rows;
      for (const auto& r : set.at("rows").as_array()) {
        const auto& cells = r.as_array();
        rows.push_back({ScenarioKey(cells.at(0)), ScenarioTime(cells.at(1)),
                        ScenarioTime(cells.at(2)), ScenarioValue(cells.at(3))});
      }
      const std::string ttl = set.contains("ttl") ? std::string(set.at("ttl").as_string()) : "";
      std::optional<double> fallback;
      if (set.contains("default")) fallback = set.at("default").to_number<double>();
      plans.emplace(name, Plan(name, rows, ttl, fallback));
      WriteOffline(name, rows);
    }
    int query_number = 0;
    for (const auto& query_value : doc.at("queries").as_array()) {
      SCOPED_TRACE("query " + std::to_string(query_number++));
      const auto& query = query_value.as_object();
      const std::string set_name(query.at("feature_set").as_string());
      ASSERT_TRUE(plans.count(set_name)) << set_name;
      std::vector<std::string> features;
      for (const auto& f : query.at("features").as_array()) features.emplace_back(f.as_string());
      std::vector<std::pair<std::string, TimestampMicros>> entity_rows;
      for (const auto& r : query.at("entity_rows").as_array()) {
        entity_rows.push_back({ScenarioKey(r.as_array().at(0)), ScenarioTime(r.as_array().at(1))});
      }
      std::optional<TimestampMicros> as_of;
      if (query.contains("as_of")) as_of = ScenarioTime(query.at("as_of"));
      std::vector<Values> got = Query(plans.at(set_name), features, entity_rows, as_of);
      ASSERT_EQ(got.size(), features.size());
      const auto& expected = query.at("expected").as_object();
      ASSERT_EQ(expected.size(), features.size());
      for (size_t f = 0; f < features.size(); ++f) {
        Values want;
        for (const auto& v : expected.at(features[f]).as_array()) want.push_back(ScenarioValue(v));
        EXPECT_EQ(got[f], want) << features[f];
      }
    }
  }
}

}  // namespace
}  // namespace fstore
