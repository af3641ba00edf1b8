// The OnlineStore conformance suite (online_store_conformance.h). Backends
// instantiate it next to their own tests (rocksdb/rocksdb_online_store_test.cc).

#include "fstore/online/online_store_conformance.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "fstore/online/shared_record.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {

// ---------------------------------------------------------------------------
// Printing and the fixture

void PrintTo(const FeatureValue& value, std::ostream* os) {
  switch (value.index()) {
    case 0: *os << "null"; break;
    case 1: *os << std::get<int64_t>(value); break;
    case 2: *os << std::get<double>(value) << "f"; break;
    case 3: *os << '"' << std::get<std::string>(value) << '"'; break;
    case 4: *os << (std::get<bool>(value) ? "true" : "false"); break;
    case 5: *os << "ts(" << std::get<TimestampValue>(value).micros << ")"; break;
    case 6: {
      *os << "[";
      const char* sep = "";
      for (const auto& item : std::get<ListValue>(value).items) {
        *os << sep;
        PrintTo(item, os);
        sep = ", ";
      }
      *os << "]";
      break;
    }
  }
}

void PrintTo(const OnlineRecord& record, std::ostream* os) {
  *os << "{event " << record.event_time << ", created " << record.created_time << ":";
  for (const auto& [name, value] : record.values) {
    *os << " " << name << "=";
    PrintTo(value, os);
  }
  *os << "}";
}

void PrintTo(const OnlineStoreBackend& backend, std::ostream* os) { *os << backend.name; }

std::string OnlineStoreBackendName(const ::testing::TestParamInfo<OnlineStoreBackend>& info) {
  return info.param.name;
}

void OnlineStoreConformanceTest::SetUp() {
  if (GetParam().skip_reason) {
    std::string reason = GetParam().skip_reason();
    if (!reason.empty()) GTEST_SKIP() << reason;
  }
  ASSERT_OK_AND_ASSIGN(instance_, GetParam().new_store());
  ASSERT_OK_AND_ASSIGN(store_, instance_.open());
}

void OnlineStoreConformanceTest::TearDown() {
  if (store_) EXPECT_OK(store_->Close());
  store_.reset();
  if (instance_.drop) instance_.drop();
}

Status OnlineStoreConformanceTest::Reopen() {
  ARROW_RETURN_NOT_OK(store_->Close());
  store_.reset();
  ARROW_ASSIGN_OR_RAISE(store_, instance_.open());
  return Status::OK();
}

namespace {

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;  // 2023-11-14T22:13:20Z

OnlineRecord Rec(TimestampMicros event, TimestampMicros created,
                 std::vector<std::pair<std::string, FeatureValue>> values) {
  OnlineRecord r;
  r.event_time = event;
  r.created_time = created;
  r.values = std::move(values);
  return r;
}

EntityKey Key(std::string s) { return EntityKey{std::move(s)}; }

ListValue List(std::vector<FeatureValue> items) { return ListValue{std::move(items)}; }

#define EXPECT_ERROR(code, expr)                                                       \
  do {                                                                                 \
    ::arrow::Status _st = ::arrow::ToStatus(expr);                                     \
    ASSERT_FALSE(_st.ok()) << "'" #expr "' succeeded";                                 \
    EXPECT_EQ(ErrorCodeName(ErrorCodeOf(_st)), ErrorCodeName(code)) << _st.ToString(); \
  } while (false)

}  // namespace

// ---------------------------------------------------------------------------
// Round trips

TEST_P(OnlineStoreConformanceTest, RoundTripsEveryValueType) {
  OnlineRecord record = Rec(
      -1'234'567, -7,
      {{"null", std::monostate{}},
       {"int", int64_t{42}},
       {"int_min", std::numeric_limits<int64_t>::min()},
       {"int_max", std::numeric_limits<int64_t>::max()},
       {"neg", int64_t{-1}},
       {"float", 3.25},
       {"float_neg_zero", -0.0},
       {"float_inf", -std::numeric_limits<double>::infinity()},
       {"float_tiny", std::numeric_limits<double>::denorm_min()},
       {"empty", std::string()},
       {"unicode", std::string("héllo wörld \xF0\x9F\x8C\x8D 日本")},
       {"nul_inside", std::string("a\0b", 3)},
       {"true", true},
       {"false", false},
       {"ts", TimestampValue{kT0}},
       {"ts_neg", TimestampValue{-86'400'000'001}},
       {"ints", List({int64_t{1}, std::monostate{}, int64_t{-3}})},
       {"floats", List({1.5, -2.0})},
       {"strings", List({std::string("x"), std::string(), std::string("ü")})},
       {"bools", List({true, false, std::monostate{}})},
       {"timestamps", List({TimestampValue{0}, TimestampValue{-1}})},
       {"empty_list", List({})},
       {"", int64_t{0}}});
  ASSERT_OK_AND_ASSIGN(auto written, store_->Write("fs", {{Key("u1"), record}}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u1")}, 0, kT0));
  ASSERT_EQ(read.size(), 1u);
  ASSERT_TRUE(read[0].has_value());
  EXPECT_EQ(*read[0], record);
  // -0.0 == 0.0 compares equal: check the sign bit survived.
  EXPECT_TRUE(std::signbit(std::get<double>(read[0]->values[6].second)));
}

TEST_P(OnlineStoreConformanceTest, NaNSurvives) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(1, 1, {{"x", std::nan("")}})}}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  ASSERT_TRUE(read[0].has_value());
  EXPECT_TRUE(std::isnan(std::get<double>(read[0]->values[0].second)));
}

TEST_P(OnlineStoreConformanceTest, RecordWithoutValues) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(5, 6, {})}}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  ASSERT_TRUE(read[0].has_value());
  EXPECT_EQ(*read[0], Rec(5, 6, {}));
}

TEST_P(OnlineStoreConformanceTest, MissingKeysAreNullopt) {
  ASSERT_OK(store_->Write("fs", {{Key("a"), Rec(kT0, kT0, {{"x", int64_t{1}}})},
                                 {Key("c"), Rec(kT0, kT0, {{"x", int64_t{3}}})}}));
  ASSERT_OK_AND_ASSIGN(auto read,
                       store_->Read("fs", {Key("b"), Key("a"), Key("zz"), Key("c"), Key("a")}, 0, kT0));
  ASSERT_EQ(read.size(), 5u);
  EXPECT_FALSE(read[0].has_value());
  ASSERT_TRUE(read[1].has_value());
  EXPECT_EQ(read[1]->values[0].second, FeatureValue(int64_t{1}));
  EXPECT_FALSE(read[2].has_value());
  ASSERT_TRUE(read[3].has_value());
  EXPECT_EQ(read[3]->values[0].second, FeatureValue(int64_t{3}));
  ASSERT_TRUE(read[4].has_value());  // a key asked twice is answered twice
  EXPECT_EQ(*read[4], *read[1]);

  ASSERT_OK_AND_ASSIGN(auto none, store_->Read("fs", {}, 0, kT0));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto other, store_->Read("never_written", {Key("a")}, 0, kT0));
  ASSERT_EQ(other.size(), 1u);
  EXPECT_FALSE(other[0].has_value());
  ASSERT_OK_AND_ASSIGN(auto empty_write, store_->Write("fs", {}));
  EXPECT_EQ(empty_write, (WriteResult{0, 0}));
}

TEST_P(OnlineStoreConformanceTest, ReadSharedAnswersAsReadDoes) {
  ASSERT_OK(store_->Write("fs", {{Key("a"), Rec(kT0, kT0, {{"x", int64_t{1}}, {"s", "one"}})},
                                 {Key("old"), Rec(kT0 - 100, 0, {{"x", int64_t{2}}})},
                                 {Key("c"), Rec(kT0, 0, {{"l", List({1.5, {}})}})}}));
  const std::vector<EntityKey> keys = {Key("b"), Key("a"), Key("old"), Key("c"), Key("a")};
  // Twice each: the second read may come from a cache.
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t ttl : {int64_t{0}, int64_t{50}}) {
      ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", keys, ttl, kT0 + 10));
      ASSERT_OK_AND_ASSIGN(auto shared, store_->ReadShared("fs", keys, ttl, kT0 + 10));
      ASSERT_EQ(shared.size(), keys.size());
      for (size_t i = 0; i < keys.size(); ++i) {
        ASSERT_EQ(shared[i] != nullptr, read[i].has_value()) << pass << " " << ttl << " " << i;
        if (shared[i]) {
          EXPECT_EQ(shared[i]->ToRecord(), *read[i]) << i;
        }
      }
      EXPECT_EQ(shared[2] != nullptr, ttl == 0);  // expired with the ttl
    }
  }
  // A record a reader holds does not change when the key is rewritten;
  // the next read sees the new one.
  ASSERT_OK_AND_ASSIGN(auto before, store_->ReadShared("fs", {Key("a")}, 0, kT0));
  ASSERT_OK(store_->Write("fs", {{Key("a"), Rec(kT0 + 1, 0, {{"x", int64_t{9}}})}}));
  ASSERT_OK_AND_ASSIGN(auto after, store_->ReadShared("fs", {Key("a")}, 0, kT0));
  ASSERT_TRUE(before[0] && after[0]);
  EXPECT_EQ(before[0]->ToRecord().values[0].second, FeatureValue(int64_t{1}));
  EXPECT_EQ(after[0]->ToRecord().values[0].second, FeatureValue(int64_t{9}));
  ASSERT_OK_AND_ASSIGN(auto none, store_->ReadShared("fs", {}, 0, kT0));
  EXPECT_TRUE(none.empty());
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->ReadShared("", {Key("u")}, 0, kT0));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->ReadShared("fs", {EntityKey{}}, 0, kT0));
  ASSERT_OK(store_->Close());
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->ReadShared("fs", {Key("u")}, 0, kT0));
}

// ---------------------------------------------------------------------------
// Newer wins

TEST_P(OnlineStoreConformanceTest, OlderEventIsIgnored) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(100, 1, {{"v", int64_t{1}}})}}));
  ASSERT_OK_AND_ASSIGN(auto older,
                       store_->Write("fs", {{Key("u"), Rec(99, 1000, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(older, (WriteResult{0, 1}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(100, 1, {{"v", int64_t{1}}}));

  ASSERT_OK_AND_ASSIGN(auto newer, store_->Write("fs", {{Key("u"), Rec(101, 0, {{"v", int64_t{3}}})}}));
  EXPECT_EQ(newer, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(101, 0, {{"v", int64_t{3}}}));
}

TEST_P(OnlineStoreConformanceTest, EqualEventGreaterCreatedWins) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(100, 5, {{"v", int64_t{1}}})}}));
  ASSERT_OK_AND_ASSIGN(auto lower, store_->Write("fs", {{Key("u"), Rec(100, 4, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(lower, (WriteResult{0, 1}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(100, 5, {{"v", int64_t{1}}}));

  ASSERT_OK_AND_ASSIGN(auto greater, store_->Write("fs", {{Key("u"), Rec(100, 6, {{"v", int64_t{3}}})}}));
  EXPECT_EQ(greater, (WriteResult{1, 0}));
  // Both equal: the new write wins (a re-run rewrites the same row).
  ASSERT_OK_AND_ASSIGN(auto tie, store_->Write("fs", {{Key("u"), Rec(100, 6, {{"v", int64_t{4}}})}}));
  EXPECT_EQ(tie, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(100, 6, {{"v", int64_t{4}}}));
}

TEST_P(OnlineStoreConformanceTest, NegativeTimesCompareAsNumbers) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(-10, -5, {{"v", int64_t{1}}})}}));
  ASSERT_OK_AND_ASSIGN(auto older, store_->Write("fs", {{Key("u"), Rec(-11, 0, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(older, (WriteResult{0, 1}));
  ASSERT_OK_AND_ASSIGN(auto created, store_->Write("fs", {{Key("u"), Rec(-10, -6, {{"v", int64_t{3}}})}}));
  EXPECT_EQ(created, (WriteResult{0, 1}));
  ASSERT_OK_AND_ASSIGN(auto newer, store_->Write("fs", {{Key("u"), Rec(-9, -100, {{"v", int64_t{4}}})}}));
  EXPECT_EQ(newer, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(-9, -100, {{"v", int64_t{4}}}));
}

TEST_P(OnlineStoreConformanceTest, SeveralRecordsForOneKeyInOneCall) {
  ASSERT_OK_AND_ASSIGN(
      auto result,
      store_->Write("fs", {{Key("u"), Rec(10, 0, {{"v", int64_t{1}}})},
                           {Key("u"), Rec(30, 0, {{"v", int64_t{2}}})},
                           {Key("w"), Rec(1, 0, {{"v", int64_t{9}}})},
                           {Key("u"), Rec(20, 0, {{"v", int64_t{3}}})},
                           {Key("u"), Rec(30, 0, {{"v", int64_t{4}}})}}));  // full tie: later wins
  EXPECT_EQ(result, (WriteResult{2, 3}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u"), Key("w")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(30, 0, {{"v", int64_t{4}}}));
  EXPECT_EQ(*read[1], Rec(1, 0, {{"v", int64_t{9}}}));
}

TEST_P(OnlineStoreConformanceTest, WriteReplacesTheWholeRecord) {
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(1, 0, {{"a", int64_t{1}}, {"b", int64_t{2}}})}}));
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(2, 0, {{"a", int64_t{3}}})}}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(2, 0, {{"a", int64_t{3}}}));
}

// ---------------------------------------------------------------------------
// TTL

TEST_P(OnlineStoreConformanceTest, TtlExpiresAtReadWithAnInclusiveBoundary) {
  const int64_t ttl = 3600 * kMicrosPerSecond;
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(kT0, kT0, {{"v", int64_t{1}}})}}));
  auto read_at = [&](int64_t ttl_micros, TimestampMicros now) {
    auto read = store_->Read("fs", {Key("u")}, ttl_micros, now);
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    return read.ok() && (*read)[0].has_value();
  };
  EXPECT_TRUE(read_at(ttl, kT0));
  EXPECT_TRUE(read_at(ttl, kT0 + ttl - 1));
  EXPECT_TRUE(read_at(ttl, kT0 + ttl));  // event_time == now - ttl: not expired
  EXPECT_FALSE(read_at(ttl, kT0 + ttl + 1));
  EXPECT_TRUE(read_at(ttl, kT0 - 5));  // a record from the future is not expired
  EXPECT_TRUE(read_at(0, kT0 + 100 * ttl));   // 0: no expiry
  EXPECT_TRUE(read_at(-1, kT0 + 100 * ttl));  // negative: no expiry
  // No overflow at the extremes.
  EXPECT_TRUE(read_at(std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()));
  EXPECT_TRUE(read_at(std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()));
  EXPECT_FALSE(read_at(1, std::numeric_limits<int64_t>::max()));
  // Expired records are not deleted: a longer ttl serves them again.
  EXPECT_TRUE(read_at(2 * ttl, kT0 + ttl + 1));
}

TEST_P(OnlineStoreConformanceTest, TtlAppliesPerKey) {
  ASSERT_OK(store_->Write("fs", {{Key("old"), Rec(kT0 - 100, 0, {{"v", int64_t{1}}})},
                                 {Key("new"), Rec(kT0, 0, {{"v", int64_t{2}}})}}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("old"), Key("new")}, 50, kT0 + 10));
  EXPECT_FALSE(read[0].has_value());
  EXPECT_TRUE(read[1].has_value());
}

// ---------------------------------------------------------------------------
// Keys and feature sets

TEST_P(OnlineStoreConformanceTest, KeysAreTypedAndComposite) {
  std::vector<EntityKey> keys = {
      {int64_t{7}},
      {std::string("7")},
      {std::string("a"), std::string("b")},
      {std::string("ab")},
      {std::string("a"), int64_t{1}},
      {int64_t{1}, std::string("a")},
      {std::string("")},
      {std::string(""), std::string("")},
      {std::string("a\0b", 3)},
      {std::string("a")},
      {int64_t{-1}},
      {std::numeric_limits<int64_t>::min()},
      {std::numeric_limits<int64_t>::max()},
      {int64_t{0}},
      {std::string("日本")},
      {std::string(300, 'k')},
  };
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  for (size_t i = 0; i < keys.size(); ++i) {
    records.emplace_back(keys[i], Rec(kT0, 0, {{"i", static_cast<int64_t>(i)}}));
  }
  ASSERT_OK_AND_ASSIGN(auto result, store_->Write("fs", records));
  EXPECT_EQ(result, (WriteResult{static_cast<int64_t>(keys.size()), 0}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", keys, 0, kT0));
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(read[i].has_value()) << i;
    EXPECT_EQ(read[i]->values[0].second, FeatureValue(static_cast<int64_t>(i))) << i;
  }
  ASSERT_OK_AND_ASSIGN(auto missing,
                       store_->Read("fs", {{std::string("b")}, {int64_t{2}}, {std::string("a"), std::string("")}},
                                    0, kT0));
  for (const auto& r : missing) EXPECT_FALSE(r.has_value());
}

TEST_P(OnlineStoreConformanceTest, FeatureSetsAreIsolated) {
  const std::vector<std::string> names = {"a", "ab", "a_b", "b", std::string("a\x01"), "A"};
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_OK(store_->Write(names[i], {{Key("u"), Rec(kT0, 0, {{"i", static_cast<int64_t>(i)}})}}));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto read, store_->Read(names[i], {Key("u")}, 0, kT0));
    ASSERT_TRUE(read[0].has_value()) << names[i];
    EXPECT_EQ(read[0]->values[0].second, FeatureValue(static_cast<int64_t>(i))) << names[i];
  }
  // A newer record in one feature set does not hide an older write in another.
  ASSERT_OK_AND_ASSIGN(auto result, store_->Write("c", {{Key("u"), Rec(kT0 - 1, 0, {})}}));
  EXPECT_EQ(result, (WriteResult{1, 0}));
}

TEST_P(OnlineStoreConformanceTest, DeleteFeatureSetRemovesOnlyItsRecords) {
  const std::vector<std::string> names = {"a", "ab", std::string("a\x01"), "b"};
  for (const auto& name : names) {
    ASSERT_OK(store_->Write(name, {{Key("u"), Rec(kT0, 0, {{"v", int64_t{1}}})},
                                   {{int64_t{5}}, Rec(kT0, 0, {{"v", int64_t{2}}})}}));
  }
  ASSERT_OK(store_->DeleteFeatureSet("a"));
  ASSERT_OK_AND_ASSIGN(auto gone, store_->Read("a", {Key("u"), {int64_t{5}}}, 0, kT0));
  EXPECT_FALSE(gone[0].has_value());
  EXPECT_FALSE(gone[1].has_value());
  for (size_t i = 1; i < names.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto kept, store_->Read(names[i], {Key("u"), {int64_t{5}}}, 0, kT0));
    EXPECT_TRUE(kept[0].has_value()) << names[i];
    EXPECT_TRUE(kept[1].has_value()) << names[i];
  }
  // After a delete, older records can be written again.
  ASSERT_OK_AND_ASSIGN(auto rewrite, store_->Write("a", {{Key("u"), Rec(kT0 - 1, 0, {})}}));
  EXPECT_EQ(rewrite, (WriteResult{1, 0}));
  // Deleting a feature set with no records is fine.
  ASSERT_OK(store_->DeleteFeatureSet("never_written"));
}

// A store several processes share counts each feature set's writes, so that
// a process caching records learns of another's writes.
TEST_P(OnlineStoreConformanceTest, WriteVersionsMoveWithEveryChangeAndAreSeenByAnotherOpening) {
  ASSERT_OK_AND_ASSIGN(auto start, store_->WriteVersions({"fs", "other"}));
  if (!start.has_value()) GTEST_SKIP() << "a store of one process: no write versions";
  EXPECT_EQ(*start, (std::vector<int64_t>{0, 0}));
  // Another opening of the same data stands for another process.
  ASSERT_OK_AND_ASSIGN(auto other, instance_.open());
  auto versions = [](OnlineStore* s) {
    auto v = s->WriteVersions({"fs", "other"});
    EXPECT_TRUE(v.ok() && v->has_value()) << v.status().ToString();
    return v.ok() && v->has_value() ? **v : std::vector<int64_t>{-1, -1};
  };
  ASSERT_OK(store_->Write("fs", {{Key("u"), Rec(kT0, 0, {{"v", int64_t{1}}})},
                                 {Key("w"), Rec(kT0, 0, {})}}));
  const auto written = versions(other.get());
  EXPECT_GT(written[0], 0);
  EXPECT_EQ(written[1], 0);
  // A write that changes nothing (an older record, no records) leaves it.
  ASSERT_OK_AND_ASSIGN(auto ignored, store_->Write("fs", {{Key("u"), Rec(kT0 - 1, 0, {})}}));
  EXPECT_EQ(ignored, (WriteResult{0, 1}));
  ASSERT_OK(store_->Write("fs", {}));
  EXPECT_EQ(versions(other.get()), written);
  // The other's writes and deletes move it for this one, per set.
  ASSERT_OK(other->Write("other", {{Key("u"), Rec(kT0, 0, {})}}));
  const auto other_written = versions(store_.get());
  EXPECT_EQ(other_written[0], written[0]);
  EXPECT_GT(other_written[1], 0);
  ASSERT_OK(other->DeleteFeatureSet("fs"));
  const auto deleted = versions(store_.get());
  EXPECT_GT(deleted[0], other_written[0]);
  EXPECT_EQ(deleted[1], other_written[1]);
  // The count is no record: the set's records are gone, the other set's kept.
  ASSERT_OK_AND_ASSIGN(auto gone, store_->Read("fs", {Key("u"), Key("w")}, 0, kT0));
  EXPECT_FALSE(gone[0].has_value());
  EXPECT_FALSE(gone[1].has_value());
  ASSERT_OK_AND_ASSIGN(auto kept, store_->Read("other", {Key("u")}, 0, kT0));
  EXPECT_TRUE(kept[0].has_value());
  ASSERT_OK_AND_ASSIGN(auto none, store_->WriteVersions({}));
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->WriteVersions({""}));
  ASSERT_OK(other->Close());
  EXPECT_ERROR(ErrorCode::kUnavailable, other->WriteVersions({"fs"}));
}

TEST_P(OnlineStoreConformanceTest, InvalidArguments) {
  OnlineRecord r = Rec(1, 1, {});
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->Write("", {{Key("u"), r}}));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->Write(std::string("a\0b", 3), {{Key("u"), r}}));
  // One bad key refuses the whole call: nothing is written.
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->Write("fs", {{Key("u"), r}, {EntityKey{}, r}}));
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_FALSE(read[0].has_value());
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->Read("", {Key("u")}, 0, kT0));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->Read("fs", {EntityKey{}}, 0, kT0));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, store_->DeleteFeatureSet(""));
}

// ---------------------------------------------------------------------------
// Concurrency, durability, volume

TEST_P(OnlineStoreConformanceTest, ConcurrentWritersEndWithTheNewestRecordPerKey) {
  constexpr int kThreads = 8;
  constexpr int kKeys = 300;
  constexpr int kBatches = 40;
  constexpr int kBatchSize = 50;
  using Times = std::tuple<TimestampMicros, TimestampMicros>;
  // Every write has distinct (event, created): created = thread * 1e6 + sequence.
  std::vector<std::map<int, Times>> newest_by_thread(kThreads);
  std::vector<WriteResult> totals(kThreads);
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      int64_t sequence = 0;
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::pair<EntityKey, OnlineRecord>> batch;
        for (int i = 0; i < kBatchSize; ++i) {
          int k = static_cast<int>(rng() % kKeys);
          TimestampMicros event = kT0 + static_cast<int64_t>(rng() % 20);
          TimestampMicros created = t * 1'000'000 + sequence++;
          batch.emplace_back(EntityKey{std::string("k"), int64_t{k}},
                             Rec(event, created, {{"thread", int64_t{t}}, {"created", created}}));
          Times times{event, created};
          auto [it, inserted] = newest_by_thread[t].try_emplace(k, times);
          if (!inserted && it->second < times) it->second = times;
        }
        auto result = store_->Write("fs", batch);
        if (!result.ok()) {
          failed = true;
          return;
        }
        totals[t].applied += result->applied;
        totals[t].ignored += result->ignored;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_FALSE(failed.load());
  int64_t applied = 0, ignored = 0;
  for (const auto& total : totals) {
    applied += total.applied;
    ignored += total.ignored;
  }
  EXPECT_EQ(applied + ignored, int64_t{kThreads} * kBatches * kBatchSize);

  std::map<int, Times> newest;
  for (const auto& per_thread : newest_by_thread) {
    for (const auto& [k, times] : per_thread) {
      auto [it, inserted] = newest.try_emplace(k, times);
      if (!inserted && it->second < times) it->second = times;
    }
  }
  std::vector<EntityKey> keys;
  for (const auto& [k, times] : newest) keys.push_back({std::string("k"), int64_t{k}});
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", keys, 0, kT0));
  size_t i = 0;
  for (const auto& [k, times] : newest) {
    const auto& record = read[i++];
    ASSERT_TRUE(record.has_value()) << k;
    auto [event, created] = times;
    EXPECT_EQ(*record, Rec(event, created, {{"thread", int64_t{created / 1'000'000}},
                                            {"created", created}}))
        << "key " << k;
  }
}

TEST_P(OnlineStoreConformanceTest, DataSurvivesCloseAndReopenAfterSync) {
  if (!GetParam().persistent) GTEST_SKIP() << "the backend does not persist";
  OnlineRecord record = Rec(kT0, kT0 + 1, {{"s", std::string("kept")}, {"l", List({1.0, 2.0})}});
  ASSERT_OK(store_->Write("fs", {{Key("u"), record}}));
  ASSERT_OK(store_->Sync());
  ASSERT_OK(Reopen());
  ASSERT_OK(store_->CheckHealth());
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", {Key("u")}, 0, kT0));
  ASSERT_TRUE(read[0].has_value());
  EXPECT_EQ(*read[0], record);
  // Newer-wins holds against what was stored before the reopen.
  ASSERT_OK_AND_ASSIGN(auto older, store_->Write("fs", {{Key("u"), Rec(kT0 - 1, 0, {})}}));
  EXPECT_EQ(older, (WriteResult{0, 1}));
}

TEST_P(OnlineStoreConformanceTest, ClosedStoreRefusesCalls) {
  ASSERT_OK(store_->Close());
  ASSERT_OK(store_->Close());
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->CheckHealth());
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->Write("fs", {{Key("u"), Rec(1, 1, {})}}));
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->Read("fs", {Key("u")}, 0, kT0));
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->DeleteFeatureSet("fs"));
  EXPECT_ERROR(ErrorCode::kUnavailable, store_->Sync());
}

TEST_P(OnlineStoreConformanceTest, LargeBatches) {
  constexpr int64_t kRecords = 100'000;
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  records.reserve(kRecords);
  for (int64_t i = 0; i < kRecords; ++i) {
    records.emplace_back(EntityKey{i}, Rec(kT0 + i, 0, {{"f", static_cast<double>(i)},
                                                        {"i", i},
                                                        {"s", std::to_string(i)}}));
  }
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(auto result, store_->Write("fs", records));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ info     ] %s: %lld records in one Write: %.0f records/s\n",
              GetParam().name.c_str(), static_cast<long long>(kRecords), kRecords / seconds);
  EXPECT_EQ(result, (WriteResult{kRecords, 0}));

  std::vector<EntityKey> keys;
  for (int64_t i = 0; i < kRecords; ++i) keys.push_back({i});
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("fs", keys, 0, kT0));
  ASSERT_EQ(read.size(), static_cast<size_t>(kRecords));
  for (int64_t i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(read[i].has_value()) << i;
    ASSERT_EQ(*read[i], records[i].second) << i;
  }
  // The same batch one microsecond older is ignored as a whole.
  for (auto& [key, record] : records) record.event_time -= 1;
  ASSERT_OK_AND_ASSIGN(auto rerun, store_->Write("fs", records));
  EXPECT_EQ(rerun, (WriteResult{0, kRecords}));
}

}  // namespace fstore
