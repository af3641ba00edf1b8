#include "fstore/service/feature_store.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <gmock/gmock.h>
#include <boost/json/parse.hpp>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FeatureStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fstore_service_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir_ / "registry.db").string();
    options.offline_store_uri = "file://" + (dir_ / "offline").string();
    options.online_store_uri = "rocksdb://" + (dir_ / "online").string();
    ASSERT_OK_AND_ASSIGN(store_, FeatureStore::Open(options));
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  FeatureSet MakeSet(const std::string& name, const std::string& extra = "") {
    auto r = store_->CreateFeatureSet(
        json::parse(R"({"name": ")" + name + R"(", "entities": ["user"])" + extra + "}"));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ValueOr(FeatureSet{});
  }
  Result<Feature> MakeFeature(const std::string& set, const std::string& body) {
    json::value v = json::parse(body);
    v.as_object()["feature_set_id"] = set;
    return store_->CreateFeature(v);
  }

  std::filesystem::path dir_;
  std::unique_ptr<FeatureStore> store_;
};

TEST_F(FeatureStoreTest, UnknownEntityIsCreatedWithJoinKeyNameId) {
  MakeSet("user_profile");
  ASSERT_OK_AND_ASSIGN(Entity user, store_->GetEntity("user"));
  EXPECT_EQ(user.join_keys, std::vector<std::string>{"user_id"});
  EXPECT_EQ(user.value_type, "string");
  // A second feature set on the same entity reuses it.
  MakeSet("user_activity");
  ASSERT_OK_AND_ASSIGN(auto entities, store_->ListEntities());
  EXPECT_EQ(entities.size(), 1u);
}

TEST_F(FeatureStoreTest, DuplicateNamesAreAlreadyExists) {
  MakeSet("s");
  auto r = store_->CreateFeatureSet(json::parse(R"({"name": "s", "entities": ["user"]})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kAlreadyExists);
  ASSERT_OK(MakeFeature("s", R"({"name": "f", "data_type": "int"})").status());
  auto f = MakeFeature("s", R"({"name": "f", "data_type": "int"})");
  EXPECT_EQ(ErrorCodeOf(f.status()), ErrorCode::kAlreadyExists);
}

TEST_F(FeatureStoreTest, PatchMakesVersionsAndOldOnesStayReadable) {
  FeatureSet fs = MakeSet("s", R"(, "description": "first")");
  ASSERT_OK_AND_ASSIGN(auto v2, store_->UpdateFeatureSet("s", json::parse(R"({"description": "second", "ttl": "1d"})")));
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.ttl, "1d");
  ASSERT_OK_AND_ASSIGN(auto v1, store_->GetFeatureSet(fs.id, 1));
  EXPECT_EQ(v1.description, "first");
  EXPECT_EQ(v1.ttl, "");
  ASSERT_OK_AND_ASSIGN(auto history, store_->FeatureSetVersions("s"));
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].description, "second");
  auto missing = store_->GetFeatureSet("s", 3);
  EXPECT_EQ(ErrorCodeOf(missing.status()), ErrorCode::kNotFound);
  // A patch that fails validation changes nothing.
  auto bad = store_->UpdateFeatureSet("s", json::parse(R"({"ttl": "forever"})"));
  EXPECT_EQ(ErrorOf(bad.status())->field(), "ttl");
  ASSERT_OK_AND_ASSIGN(auto current, store_->GetFeatureSet("s"));
  EXPECT_EQ(current.version, 2);
}

TEST_F(FeatureStoreTest, ConcurrentPatchesAllLandAsVersions) {
  MakeSet("s");
  constexpr int kThreads = 6, kEach = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        json::object patch{{"description", "t" + std::to_string(t) + "-" + std::to_string(i)}};
        if (!store_->UpdateFeatureSet("s", patch).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(auto current, store_->GetFeatureSet("s"));
  EXPECT_EQ(current.version, 1 + kThreads * kEach);
}

TEST_F(FeatureStoreTest, SourceFeaturesResolveAndCyclesAreRefused) {
  MakeSet("s");
  ASSERT_OK(MakeFeature("s", R"({"name": "purchases_last_30d", "data_type": "int"})").status());
  ASSERT_OK(MakeFeature("s", R"({"name": "days_since_signup", "data_type": "int"})").status());
  ASSERT_OK_AND_ASSIGN(
      Feature freq,
      MakeFeature("s", R"J({"name": "purchase_frequency", "data_type": "float",
        "transformation": "purchases_last_30d / NULLIF(days_since_signup, 0)",
        "source_features": ["purchases_last_30d", "days_since_signup"]})J"));
  auto unknown = MakeFeature("s", R"({"name": "x", "data_type": "float",
        "transformation": "nope + 1", "source_features": ["nope"]})");
  EXPECT_EQ(ErrorCodeOf(unknown.status()), ErrorCode::kUnprocessable);
  EXPECT_EQ(ErrorOf(unknown.status())->field(), "source_features[0]");

  // days_since_signup -> purchase_frequency -> days_since_signup
  auto cycle = store_->UpdateFeature(
      "s:days_since_signup",
      json::parse(R"({"transformation": "purchase_frequency * 2",
                      "source_features": ["purchase_frequency"]})"));
  ASSERT_FALSE(cycle.ok());
  EXPECT_EQ(ErrorCodeOf(cycle.status()), ErrorCode::kUnprocessable);
  EXPECT_THAT(cycle.status().message(), HasSubstr("cycle"));
  auto self = store_->UpdateFeature(
      "s:days_since_signup",
      json::parse(R"({"transformation": "days_since_signup", "source_features": ["days_since_signup"]})"));
  EXPECT_EQ(ErrorCodeOf(self.status()), ErrorCode::kUnprocessable);
}

TEST_F(FeatureStoreTest, DeletesAreSoftAndRefusedWhileDependedOn) {
  MakeSet("a");
  MakeSet("b");
  ASSERT_OK(MakeFeature("a", R"({"name": "x", "data_type": "int"})").status());
  ASSERT_OK(MakeFeature("b", R"({"name": "y", "data_type": "int", "transformation": "x + 1",
                                  "source_features": ["a:x"]})").status());
  auto refused = store_->DeleteFeatureSet("a");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kConflict);
  EXPECT_THAT(refused.status().message(), HasSubstr("b:y"));
  auto refused_feature = store_->DeleteFeature("a:x");
  EXPECT_EQ(ErrorCodeOf(refused_feature.status()), ErrorCode::kConflict);

  ASSERT_OK(store_->DeleteFeature("b:y").status());
  ASSERT_OK_AND_ASSIGN(FeatureSet deleted, store_->DeleteFeatureSet("a"));
  EXPECT_TRUE(deleted.deleted_at.has_value());
  EXPECT_EQ(ErrorCodeOf(store_->GetFeatureSet("a").status()), ErrorCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto history, store_->FeatureSetVersions(deleted.id));
  EXPECT_EQ(history.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto live, store_->ListFeatures(FeatureFilter{}));
  EXPECT_TRUE(live.empty());  // a's features went with it; b:y was deleted
  // The name can be used again.
  MakeSet("a");
}

TEST_F(FeatureStoreTest, BareNamesResolveUniquelyOrAreAmbiguous) {
  MakeSet("a");
  MakeSet("b");
  ASSERT_OK(MakeFeature("a", R"({"name": "x", "data_type": "int"})").status());
  ASSERT_OK_AND_ASSIGN(Feature x, store_->GetFeature("x"));
  EXPECT_EQ(x.name, "x");
  ASSERT_OK(MakeFeature("b", R"({"name": "x", "data_type": "int"})").status());
  auto ambiguous = store_->GetFeature("x");
  EXPECT_EQ(ErrorCodeOf(ambiguous.status()), ErrorCode::kInvalidArgument);
  EXPECT_THAT(ambiguous.status().message(), HasSubstr("a:x, b:x"));
  ASSERT_OK(store_->GetFeature("b:x").status());
  EXPECT_EQ(ErrorCodeOf(store_->GetFeature("c:x").status()), ErrorCode::kNotFound);
}

TEST_F(FeatureStoreTest, LineageUpstreamAndTransitiveDownstream) {
  MakeSet("s", R"(, "source": {"type": "push"})");
  ASSERT_OK(MakeFeature("s", R"({"name": "a", "data_type": "int", "transformation": "amount * 2"})").status());
  ASSERT_OK(MakeFeature("s", R"({"name": "b", "data_type": "int", "transformation": "a + 1", "source_features": ["a"]})").status());
  ASSERT_OK(MakeFeature("s", R"({"name": "c", "data_type": "int", "transformation": "b + 1", "source_features": ["b"]})").status());
  ASSERT_OK_AND_ASSIGN(json::object lineage, store_->FeatureLineage("s:a"));
  EXPECT_EQ(lineage["upstream"].as_object()["columns"], json::parse(R"(["amount"])"));
  EXPECT_EQ(lineage["upstream"].as_object()["source"], json::parse(R"({"type": "push"})"));
  const auto& down = lineage["downstream"].as_array();
  ASSERT_EQ(down.size(), 2u);
  EXPECT_EQ(down[0].as_object().at("name"), "b");
  EXPECT_EQ(down[0].as_object().at("depth"), 1);
  EXPECT_EQ(down[1].as_object().at("name"), "c");
  EXPECT_EQ(down[1].as_object().at("depth"), 2);
  ASSERT_OK_AND_ASSIGN(json::object lc, store_->FeatureLineage("s:c"));
  EXPECT_EQ(lc["upstream"].as_object()["source_features"].as_array()[0].as_object().at("name"), "b");
  EXPECT_TRUE(lc["upstream"].as_object()["columns"].as_array().empty());
}

TEST_F(FeatureStoreTest, SearchRanksNameOverDescription) {
  MakeSet("user_profile", R"(, "description": "demographics", "owner": "data-team", "tags": ["pii"])");
  MakeSet("orders", R"(, "description": "order history per user profile")");
  ASSERT_OK_AND_ASSIGN(auto hits, store_->Search("profile", 10));
  ASSERT_GE(hits.size(), 2u);
  EXPECT_EQ(hits[0].name, "user_profile");
  EXPECT_THAT(hits[0].matched, ElementsAre("name"));
  EXPECT_EQ(hits[1].name, "orders");
  ASSERT_OK_AND_ASSIGN(auto by_tag, store_->Search("pii", 10));
  ASSERT_EQ(by_tag.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto by_owner, store_->Search("data-team", 10));
  ASSERT_EQ(by_owner.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto entity, store_->Search("user", 10));
  bool found_entity = false;
  for (const auto& h : entity) found_entity |= h.kind == "entity";
  EXPECT_TRUE(found_entity);
  EXPECT_EQ(ErrorCodeOf(store_->Search("  ", 10).status()), ErrorCode::kInvalidArgument);
}

TEST_F(FeatureStoreTest, ReadyWhenRegistryAndStoresAreUp) {
  ASSERT_OK(store_->CheckReady());
  ASSERT_OK(store_->Close());
  EXPECT_FALSE(store_->CheckReady().ok());
}

}  // namespace
}  // namespace fstore
