// What the online hot path touches: one multi-get per feature set per
// request, and never the registry (issue #4). The stores are real (SQLite
// registry, RocksDB online store); the online store is seen through a
// counting decorator, and the registry is closed once the snapshot is loaded.

#include "fstore/service/online_serving.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include <gmock/gmock.h>
#include <boost/json/parse.hpp>

#include "fstore/registry/registry.h"
#include "fstore/service/feature_store.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

/// Forwards to a real store and records every read: (feature set, keys).
class CountingOnlineStore : public OnlineStore {
 public:
  explicit CountingOnlineStore(OnlineStore* store) : store_(store) {}

  struct Call {
    std::string feature_set;
    std::vector<EntityKey> keys;
  };

  Status CheckHealth() override { return store_->CheckHealth(); }
  Status Close() override { return Status::OK(); }
  using OnlineStore::Write;
  Result<WriteResult> Write(const std::string& feature_set,
                            const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
                            const OnlineWriteOptions& options) override {
    return store_->Write(feature_set, records, options);
  }
  Result<std::vector<std::optional<OnlineRecord>>> Read(const std::string& feature_set,
                                                        const std::vector<EntityKey>& keys,
                                                        int64_t ttl_micros,
                                                        TimestampMicros now) override {
    Record(&reads_, feature_set, keys);
    return store_->Read(feature_set, keys, ttl_micros, now);
  }
  Result<std::vector<std::shared_ptr<const SharedRecord>>> ReadShared(
      const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
      TimestampMicros now) override {
    Record(&shared_reads_, feature_set, keys);
    return store_->ReadShared(feature_set, keys, ttl_micros, now);
  }
  Status DeleteFeatureSet(const std::string& feature_set) override {
    return store_->DeleteFeatureSet(feature_set);
  }
  Status Sync() override { return store_->Sync(); }
  Result<std::optional<std::vector<int64_t>>> WriteVersions(
      const std::vector<std::string>& feature_sets) override {
    return store_->WriteVersions(feature_sets);
  }

  /// Every multi-get since the last call (Read and ReadShared alike).
  std::vector<Call> TakeCalls() {
    std::lock_guard lock(mutex_);
    std::vector<Call> calls = std::move(shared_reads_);
    calls.insert(calls.end(), reads_.begin(), reads_.end());
    shared_reads_.clear();
    reads_.clear();
    return calls;
  }
  /// Calls of Read (the decoding path the hot path is not to take).
  size_t ReadCalls() {
    std::lock_guard lock(mutex_);
    return reads_.size();
  }

 private:
  void Record(std::vector<Call>* calls, const std::string& feature_set,
              const std::vector<EntityKey>& keys) {
    std::lock_guard lock(mutex_);
    calls->push_back(Call{feature_set, keys});
  }

  OnlineStore* store_;
  std::mutex mutex_;
  std::vector<Call> shared_reads_;
  std::vector<Call> reads_;
};

/// Feature set -> number of multi-gets of it, and the keys each one asked for.
std::map<std::string, std::vector<size_t>> KeysPerRead(
    const std::vector<CountingOnlineStore::Call>& calls) {
  std::map<std::string, std::vector<size_t>> out;
  for (const auto& c : calls) out[c.feature_set].push_back(c.keys.size());
  return out;
}

constexpr TimestampMicros kEventTime = 1'704'067'200'000'000;  // 2024-01-01T00:00:00Z
constexpr TimestampMicros kNow = kEventTime + 3'600'000'000;

class OnlineServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fstore_online_serving_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir_ / "registry.db").string();
    options.offline_store_uri = "file://" + (dir_ / "offline").string();
    options.online_store_uri = "rocksdb://" + (dir_ / "online").string();
    ASSERT_OK_AND_ASSIGN(store_, FeatureStore::Open(options));

    // Sets a, b, c over one entity, two stored features each; c also has a
    // derived feature over a's a_x.
    for (std::string s : {"a", "b", "c"}) {
      ASSERT_OK(store_->CreateFeatureSet(
                          json::parse(R"({"name": ")" + s + R"(", "entities": ["user"]})"))
                    .status());
      ASSERT_OK(store_->CreateFeature(json::parse(R"({"feature_set_id": ")" + s +
                                                  R"(", "name": ")" + s +
                                                  R"(_x", "data_type": "float"})"))
                    .status());
      ASSERT_OK(store_->CreateFeature(json::parse(R"({"feature_set_id": ")" + s +
                                                  R"(", "name": ")" + s +
                                                  R"(_n", "data_type": "int"})"))
                    .status());
    }
    ASSERT_OK(store_->CreateFeature(json::parse(R"({"feature_set_id": "c", "name": "c_sum",
        "data_type": "float", "source_features": ["a:a_x", "c_x"],
        "transformation": "a_x + c_x"})"))
                  .status());

    // Entities u0..u49; set b lacks every fifth one.
    for (std::string s : {"a", "b", "c"}) {
      std::vector<std::pair<EntityKey, OnlineRecord>> records;
      for (int i = 0; i < 50; ++i) {
        if (s == "b" && i % 5 == 0) continue;
        OnlineRecord r;
        r.event_time = kEventTime;
        r.values.emplace_back(s + "_x", FeatureValue(i + 0.5));
        r.values.emplace_back(s + "_n", FeatureValue(int64_t{i}));
        records.emplace_back(EntityKey{"u" + std::to_string(i)}, std::move(r));
      }
      ASSERT_OK(store_->online_store()->Write(s, records).status());
    }
    counting_ = std::make_unique<CountingOnlineStore>(store_->online_store());
  }

  void TearDown() override {
    serving_.reset();
    counting_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  /// An OnlineServing over the counting store and a registry of its own.
  void StartServing(OnlineServingOptions options) {
    options.poll_interval = std::chrono::milliseconds(0);
    ASSERT_OK_AND_ASSIGN(registry_,
                         RegistryFromUri("sqlite://" + (dir_ / "registry.db").string()));
    serving_ = std::make_unique<OnlineServing>(registry_.get(), counting_.get(), options);
    ASSERT_OK(serving_->Start());
    counting_->TakeCalls();
  }

  json::value Serve(const std::string& body) {
    auto r = serving_->Serve(json::parse(body), kNow);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? json::parse(*r) : json::value();
  }

  static std::string Users(int from, int to) {
    std::string out;
    for (int i = from; i < to; ++i) out += (out.empty() ? "\"u" : ",\"u") + std::to_string(i) + "\"";
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<FeatureStore> store_;
  std::unique_ptr<CountingOnlineStore> counting_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<OnlineServing> serving_;
};

TEST_F(OnlineServingTest, OneMultiGetPerFeatureSetPerRequest) {
  StartServing({});
  // 50 known entities, an unknown one, and duplicates: each set is read once,
  // with each distinct key once.
  json::value got = Serve(R"({"feature_sets": ["a", "b", "c"], "entities": {"user": [)" +
                          Users(0, 50) + R"(, "nobody", "u3", "u3"]},
                          "features": ["a_x", "b_n", "c_x", "c_n"]})");
  EXPECT_EQ(got.at("features").as_object().size(), 51u);
  EXPECT_EQ(got.at("features").at("u7").at("b_n").as_int64(), 7);
  EXPECT_TRUE(got.at("features").at("u5").at("b_n").is_null());
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(51u)), Pair("b", ElementsAre(51u)),
                                   Pair("c", ElementsAre(51u))));

  // One set: one read.
  Serve(R"({"feature_sets": ["b"], "entities": {"user": ["u1", "u2"]}})");
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("b", ElementsAre(2u))));

  // A set named only through a qualified feature is read once too.
  Serve(R"({"feature_sets": ["a"], "entities": {"user": ["u1", "u2", "u3"]},
            "features": ["a_x", "b:b_x", "b:b_n"]})");
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(3u)), Pair("b", ElementsAre(3u))));
  // Every read took the shared-record path, none the decoding Read.
  EXPECT_EQ(counting_->ReadCalls(), 0u);
}

TEST_F(OnlineServingTest, ACrossSetDerivedFeatureReadsItsInputSetOnce) {
  StartServing({});
  json::value got = Serve(R"({"feature_sets": ["c"], "entities": {"user": ["u1", "u2", "zz"]},
                             "features": ["c_sum", "c_x"]})");
  EXPECT_DOUBLE_EQ(got.at("features").at("u1").at("c_sum").as_double(), 1.5 + 1.5);
  EXPECT_DOUBLE_EQ(got.at("features").at("u2").at("c_sum").as_double(), 2.5 + 2.5);
  EXPECT_TRUE(got.at("features").at("zz").at("c_sum").is_null());
  // c for its own features, a once for the derived feature's input.
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(3u)), Pair("c", ElementsAre(3u))));

  // Asking for a's features as well still reads a once.
  Serve(R"({"feature_sets": ["a", "c"], "entities": {"user": ["u1", "u2"]},
            "features": ["c_sum", "a_n"]})");
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(2u)), Pair("c", ElementsAre(2u))));
}

TEST_F(OnlineServingTest, TheHotPathNeverQueriesTheRegistry) {
  StartServing({});
  const std::string body = R"({"feature_sets": ["a", "b", "c"], "entities": {"user": [)" +
                           Users(0, 20) + R"(, "nobody"]}, "features": ["a_x", "b_n", "c_sum"]})";
  json::value before = Serve(body);

  // The registry closed: every query of it fails from now on ...
  ASSERT_OK(registry_->Close());
  EXPECT_FALSE(registry_->ListFeatureSets(false).ok());
  EXPECT_FALSE(serving_->Refresh().ok());
  // ... and serving answers as before, from its snapshot, every name
  // resolved (bare, qualified, derived, all of a set's features) and every
  // error for an unknown name found without the registry.
  for (int i = 0; i < 20; ++i) {
    json::value again = Serve(body);
    EXPECT_EQ(again.at("features"), before.at("features"));
    EXPECT_EQ(again.at("metadata").at("missing_entities"),
              before.at("metadata").at("missing_entities"));
  }
  json::value all = Serve(R"({"feature_sets": ["c"], "entities": {"user": ["u9"]}})");
  EXPECT_EQ(all.at("features").at("u9").as_object().size(), 3u);
  EXPECT_DOUBLE_EQ(all.at("features").at("u9").at("c_sum").as_double(), 9.5 + 9.5);
  Serve(R"({"feature_sets": ["a"], "entities": {"user": ["u9"]}, "features": ["b:b_x"]})");
  auto unknown = serving_->Serve(
      json::parse(R"({"feature_sets": ["a"], "entities": {"user": ["u1"]}, "features": ["nope"]})"),
      kNow);
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.status().IsInvalid()) << unknown.status().ToString();
  EXPECT_THAT(unknown.status().message(), HasSubstr("nope"));
  auto unknown_set = serving_->Serve(
      json::parse(R"({"feature_sets": ["zzz"], "entities": {"user": ["u1"]}})"), kNow);
  ASSERT_FALSE(unknown_set.ok());
  EXPECT_THAT(unknown_set.status().message(), HasSubstr("zzz"));
}

TEST_F(OnlineServingTest, WithTheServingCacheOnlyTheMissesAreReadOncePerSet) {
  OnlineServingOptions options;
  options.cache_enabled = true;
  StartServing(options);
  const std::string first = R"({"feature_sets": ["a", "b"], "entities": {"user": [)" +
                            Users(0, 10) + R"(]}})";
  json::value cold = Serve(first);
  EXPECT_FALSE(cold.at("metadata").at("cache_hit").as_bool());
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(10u)), Pair("b", ElementsAre(10u))));

  // The same entities again: no read at all, the same answer.
  json::value warm = Serve(first);
  EXPECT_TRUE(warm.at("metadata").at("cache_hit").as_bool());
  EXPECT_TRUE(counting_->TakeCalls().empty());
  EXPECT_EQ(warm.at("features"), cold.at("features"));

  // Three new entities among cached ones: one read per set, of the new ones.
  Serve(R"({"feature_sets": ["a", "b"], "entities": {"user": [)" + Users(5, 13) + R"(]}})");
  auto calls = counting_->TakeCalls();
  EXPECT_THAT(KeysPerRead(calls),
              UnorderedElementsAre(Pair("a", ElementsAre(3u)), Pair("b", ElementsAre(3u))));
  for (const auto& c : calls) {
    EXPECT_THAT(c.keys, ElementsAre(EntityKey{"u10"}, EntityKey{"u11"}, EntityKey{"u12"}));
  }

  // A write to b invalidates b's records only: the next request reads b alone.
  serving_->InvalidateFeatureSet("b");
  Serve(first);
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("b", ElementsAre(10u))));
}

// Another process (another server, the CLI) writes to a shared Redis: its
// writes reach this server's serving cache through the store's write
// versions, which the poll thread checks every poll_interval.
TEST_F(OnlineServingTest, WritesByAnotherProcessDropTheCachedRecordsOfTheirSet) {
  const char* url = std::getenv("FSTORE_TEST_REDIS_URL");
  if (url == nullptr || *url == '\0') GTEST_SKIP() << "FSTORE_TEST_REDIS_URL is not set";
  std::string uri = url;
  uri += (uri.find('?') == std::string::npos ? "?" : "&");
  uri += "prefix=online_serving_test_" + std::to_string(::getpid()) + ":";
  ASSERT_OK_AND_ASSIGN(auto mine, OnlineStoreFromUri(uri));
  ASSERT_OK_AND_ASSIGN(auto theirs, OnlineStoreFromUri(uri));
  auto write = [&](const std::string& set, double x) {
    OnlineRecord r;
    r.event_time = kEventTime + static_cast<int64_t>(x);
    r.values.emplace_back(set + "_x", FeatureValue(x));
    ASSERT_OK(theirs->Write(set, {{EntityKey{"u1"}, std::move(r)}}).status());
  };
  write("a", 1);
  write("b", 1);
  counting_ = std::make_unique<CountingOnlineStore>(mine.get());
  OnlineServingOptions options;
  options.cache_enabled = true;
  StartServing(options);
  const std::string body =
      R"({"feature_sets": ["a", "b"], "entities": {"user": ["u1"]}, "features": ["a_x", "b_x"]})";
  auto a_x = [](const json::value& v) { return v.at("features").at("u1").at("a_x").as_double(); };
  EXPECT_EQ(a_x(Serve(body)), 1.0);
  EXPECT_TRUE(Serve(body).at("metadata").at("cache_hit").as_bool());
  counting_->TakeCalls();

  // The other process writes a: until the versions are checked this server
  // answers from its cache (bounded by SERVING_CACHE_TTL without them) ...
  write("a", 2);
  json::value stale = Serve(body);
  EXPECT_EQ(a_x(stale), 1.0);
  EXPECT_TRUE(stale.at("metadata").at("cache_hit").as_bool());
  // ... after the check a is read again, b still comes from the cache.
  serving_->CheckWriteVersions();
  json::value fresh = Serve(body);
  EXPECT_EQ(a_x(fresh), 2.0);
  EXPECT_FALSE(fresh.at("metadata").at("cache_hit").as_bool());
  EXPECT_THAT(KeysPerRead(counting_->TakeCalls()),
              UnorderedElementsAre(Pair("a", ElementsAre(1u))));
  // Nothing written since: the next check drops nothing.
  serving_->CheckWriteVersions();
  EXPECT_TRUE(Serve(body).at("metadata").at("cache_hit").as_bool());
  EXPECT_TRUE(counting_->TakeCalls().empty());

  // A feature set deleted by the other process is dropped too.
  ASSERT_OK(theirs->DeleteFeatureSet("b"));
  serving_->CheckWriteVersions();
  json::value after_delete = Serve(body);
  EXPECT_TRUE(after_delete.at("features").at("u1").at("b_x").is_null());
  EXPECT_EQ(a_x(after_delete), 2.0);

  serving_.reset();
  counting_.reset();
  ASSERT_OK(theirs->DeleteFeatureSet("a"));
}

}  // namespace
}  // namespace fstore
