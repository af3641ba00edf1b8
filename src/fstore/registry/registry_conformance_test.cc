// The Registry conformance suite (registry_conformance.h), and its SQLite
// instantiations: a file database and a private in-memory one.

#include "fstore/registry/registry_conformance.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fstore/core/ids.h"
#include "fstore/registry/codec.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;  // 2023-11-14T22:13:20Z

template <typename T>
std::string Json(const T& definition) {
  return boost::json::serialize(ToJson(definition));
}

template <typename T>
std::vector<std::string> Names(const std::vector<T>& definitions) {
  std::vector<std::string> out;
  for (const auto& d : definitions) out.push_back(d.name);
  return out;
}

template <typename T>
std::vector<int64_t> Versions(const std::vector<T>& definitions) {
  std::vector<int64_t> out;
  for (const auto& d : definitions) out.push_back(d.version);
  return out;
}

#define EXPECT_ERROR(code, expr)                                        \
  do {                                                                  \
    ::arrow::Status _st = ::arrow::ToStatus(expr);                      \
    ASSERT_FALSE(_st.ok()) << "'" #expr "' succeeded";                  \
    EXPECT_EQ(ErrorCodeName(ErrorCodeOf(_st)), ErrorCodeName(code)) << _st.ToString(); \
  } while (false)

RegistryWrite EntitiesWrite(std::vector<Entity> entities) {
  RegistryWrite write;
  write.new_entities = std::move(entities);
  return write;
}

RegistryWrite FeatureSetsWrite(std::vector<VersionedPut<FeatureSet>> feature_sets,
                               std::vector<VersionedPut<Feature>> features = {}) {
  RegistryWrite write;
  write.feature_sets = std::move(feature_sets);
  write.features = std::move(features);
  return write;
}

RegistryWrite FeaturesWrite(std::vector<VersionedPut<Feature>> features) {
  RegistryWrite write;
  write.features = std::move(features);
  return write;
}

std::string FieldOf(const Status& status) {
  const ErrorDetail* detail = ErrorOf(status);
  return detail != nullptr ? detail->field() : "<no detail>";
}

}  // namespace

// ---------------------------------------------------------------------------
// Fixture

void PrintTo(const RegistryBackend& backend, std::ostream* os) { *os << backend.name; }

std::string RegistryBackendName(const ::testing::TestParamInfo<RegistryBackend>& info) {
  return info.param.name;
}

void RegistryConformanceTest::SetUp() {
  ASSERT_OK_AND_ASSIGN(store_, GetParam().new_store());
  ASSERT_OK_AND_ASSIGN(registry_, store_.open());
  ASSERT_OK(registry_->Migrate());
}

void RegistryConformanceTest::TearDown() {
  if (registry_) EXPECT_OK(registry_->Close());
  registry_.reset();
  if (store_.drop) store_.drop();
}

Result<std::unique_ptr<Registry>> RegistryConformanceTest::OpenAnother() { return store_.open(); }

Entity RegistryConformanceTest::NewEntity(const std::string& name) {
  Entity e;
  e.id = NewUuid();
  e.name = name;
  e.join_keys = {name + "_id"};
  e.value_type = "string";
  e.description = "the " + name;
  e.created_at = kT0;
  e.updated_at = kT0;
  return e;
}

FeatureSet RegistryConformanceTest::NewFeatureSet(const std::string& name) {
  FeatureSet fs;
  fs.id = NewUuid();
  fs.name = name;
  fs.description = "features of " + name;
  fs.owner = "team-ml";
  fs.tags = {"tier1", "pii"};
  fs.entities = {"user"};
  fs.source.emplace();
  fs.source->type = "file";
  fs.source->path = "/data/" + name + ".parquet";
  fs.source->format = "parquet";
  fs.created_timestamp_field = "created";
  fs.ttl = "30d";
  fs.online_enabled = false;
  fs.materialization_schedule = "0 * * * *";
  fs.on_invalid = "drop";
  fs.created_at = kT0;
  fs.updated_at = kT0;
  return fs;
}

Feature RegistryConformanceTest::NewFeature(const FeatureSet& feature_set,
                                            const std::string& name) {
  Feature f;
  f.id = NewUuid();
  f.name = name;
  f.feature_set_id = feature_set.id;
  f.description = "the " + name;
  f.data_type = "float";
  f.transformation = "amount * 2";
  f.window_size = "7d";
  f.source_features = {"amount"};
  f.validation_rules.min_value = 0.0;
  f.validation_rules.max_value = 100.5;
  f.default_value = boost::json::value(1.5);
  f.tags = {"money"};
  f.owner = "alice";
  f.created_at = kT0;
  f.updated_at = kT0;
  return f;
}

VersionedPut<FeatureSet> RegistryConformanceTest::NextVersion(const FeatureSet& current) {
  VersionedPut<FeatureSet> put{current, current.version};
  put.value.version = current.version + 1;
  put.value.updated_at = current.updated_at + 1000;
  return put;
}

VersionedPut<Feature> RegistryConformanceTest::NextVersion(const Feature& current) {
  VersionedPut<Feature> put{current, current.version};
  put.value.version = current.version + 1;
  put.value.updated_at = current.updated_at + 1000;
  return put;
}

Status RegistryConformanceTest::CreateFeatureSet(const FeatureSet& feature_set,
                                                 const std::vector<Feature>& features) {
  RegistryWrite write;
  write.feature_sets.push_back({feature_set, 0});
  for (const auto& f : features) write.features.push_back({f, 0});
  return registry_->Commit(write);
}

// ---------------------------------------------------------------------------
// Schema and health

TEST_P(RegistryConformanceTest, MigrateIsIdempotentAndReportsTheSchemaVersion) {
  ASSERT_OK_AND_ASSIGN(int version, registry_->Migrate());
  EXPECT_GE(version, 1);
  ASSERT_OK_AND_ASSIGN(int again, registry_->Migrate());
  EXPECT_EQ(again, version);
  ASSERT_OK_AND_ASSIGN(int reported, registry_->SchemaVersion());
  EXPECT_EQ(reported, version);
}

TEST_P(RegistryConformanceTest, FreshStoreHasSchemaVersionZeroUntilMigrated) {
  ASSERT_OK_AND_ASSIGN(RegistryStore fresh, GetParam().new_store());
  {
    ASSERT_OK_AND_ASSIGN(auto registry, fresh.open());
    ASSERT_OK_AND_ASSIGN(int before, registry->SchemaVersion());
    EXPECT_EQ(before, 0);
    ASSERT_OK_AND_ASSIGN(int migrated, registry->Migrate());
    ASSERT_OK_AND_ASSIGN(int after, registry->SchemaVersion());
    EXPECT_EQ(after, migrated);
    ASSERT_OK_AND_ASSIGN(auto sets, registry->ListFeatureSets(true));
    EXPECT_TRUE(sets.empty());
    ASSERT_OK(registry->Close());
  }
  if (fresh.drop) fresh.drop();
}

TEST_P(RegistryConformanceTest, PingSucceeds) { ASSERT_OK(registry_->Ping()); }

TEST_P(RegistryConformanceTest, EmptyRegistryListsNothing) {
  ASSERT_OK_AND_ASSIGN(auto entities, registry_->ListEntities());
  EXPECT_TRUE(entities.empty());
  ASSERT_OK_AND_ASSIGN(auto sets, registry_->ListFeatureSets(true));
  EXPECT_TRUE(sets.empty());
  ASSERT_OK_AND_ASSIGN(auto features, registry_->ListFeatures(true));
  EXPECT_TRUE(features.empty());
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeatureSet("nothing", true));
  EXPECT_FALSE(found.has_value());
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(NewUuid()));
  EXPECT_TRUE(history.empty());
  ASSERT_OK_AND_ASSIGN(auto feature_history, registry_->FeatureHistory(NewUuid()));
  EXPECT_TRUE(feature_history.empty());
}

// ---------------------------------------------------------------------------
// Entities

TEST_P(RegistryConformanceTest, CreatesAndFindsEntitiesByIdAndName) {
  Entity user = NewEntity("user");
  Entity merchant = NewEntity("merchant");
  merchant.join_keys = {"merchant_id", "country"};
  merchant.value_type = "int";
  ASSERT_OK(registry_->Commit(EntitiesWrite({user, merchant})));

  ASSERT_OK_AND_ASSIGN(auto by_id, registry_->FindEntity(user.id));
  ASSERT_TRUE(by_id.has_value());
  EXPECT_EQ(Json(*by_id), Json(user));
  ASSERT_OK_AND_ASSIGN(auto by_name, registry_->FindEntity("merchant"));
  ASSERT_TRUE(by_name.has_value());
  EXPECT_EQ(Json(*by_name), Json(merchant));
  ASSERT_OK_AND_ASSIGN(auto missing, registry_->FindEntity("nobody"));
  EXPECT_FALSE(missing.has_value());

  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListEntities());
  EXPECT_EQ(Names(all), (std::vector<std::string>{"merchant", "user"}));
}

TEST_P(RegistryConformanceTest, DuplicateEntityNameIsAlreadyExists) {
  ASSERT_OK(registry_->Commit(EntitiesWrite({NewEntity("user")})));
  Status status = registry_->Commit(EntitiesWrite({NewEntity("user")}));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
  EXPECT_NE(ErrorMessageOf(status).find("user"), std::string::npos) << status.ToString();

  // Twice in one write: refused too, and the first is not kept.
  status = registry_->Commit(EntitiesWrite({NewEntity("item"), NewEntity("item")}));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListEntities());
  EXPECT_EQ(Names(all), (std::vector<std::string>{"user"}));
}

// ---------------------------------------------------------------------------
// Feature sets and features

TEST_P(RegistryConformanceTest, CreatesAndFindsFeatureSetsByIdAndName) {
  FeatureSet fs = NewFeatureSet("user_profile");
  ASSERT_OK(CreateFeatureSet(fs));

  ASSERT_OK_AND_ASSIGN(auto by_id, registry_->FindFeatureSet(fs.id, false));
  ASSERT_TRUE(by_id.has_value());
  EXPECT_EQ(Json(*by_id), Json(fs));
  ASSERT_OK_AND_ASSIGN(auto by_name, registry_->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(by_name.has_value());
  EXPECT_EQ(Json(*by_name), Json(fs));
  ASSERT_OK_AND_ASSIGN(auto missing, registry_->FindFeatureSet("user_profile_2", true));
  EXPECT_FALSE(missing.has_value());

  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fs.id));
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(Json(history[0]), Json(fs));
}

TEST_P(RegistryConformanceTest, MinimalFeatureSetRoundTrips) {
  FeatureSet fs;
  fs.id = NewUuid();
  fs.name = "bare";
  fs.entities = {"user"};
  ASSERT_OK(CreateFeatureSet(fs));
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeatureSet("bare", false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(fs));
}

TEST_P(RegistryConformanceTest, ListsFeatureSetsByName) {
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("charlie")));
  RegistryWrite write;
  write.feature_sets.push_back({NewFeatureSet("bravo"), 0});
  write.feature_sets.push_back({NewFeatureSet("alpha"), 0});
  ASSERT_OK(registry_->Commit(write));

  ASSERT_OK_AND_ASSIGN(auto live, registry_->ListFeatureSets(false));
  EXPECT_EQ(Names(live), (std::vector<std::string>{"alpha", "bravo", "charlie"}));
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureSets(true));
  EXPECT_EQ(Names(all), (std::vector<std::string>{"alpha", "bravo", "charlie"}));
}

TEST_P(RegistryConformanceTest, DuplicateFeatureSetNameIsAlreadyExists) {
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("user_profile")));
  Status status = CreateFeatureSet(NewFeatureSet("user_profile"));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
  EXPECT_NE(ErrorMessageOf(status).find("feature set 'user_profile' already exists"),
            std::string::npos)
      << status.ToString();

  // Two new ones with one name in a single write.
  RegistryWrite write;
  write.feature_sets.push_back({NewFeatureSet("twin"), 0});
  write.feature_sets.push_back({NewFeatureSet("twin"), 0});
  status = registry_->Commit(write);
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureSets(true));
  EXPECT_EQ(Names(all), (std::vector<std::string>{"user_profile"}));
}

TEST_P(RegistryConformanceTest, RenamingOntoALiveNameIsAlreadyExists) {
  FeatureSet a = NewFeatureSet("a");
  ASSERT_OK(CreateFeatureSet(a));
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("b")));
  auto put = NextVersion(a);
  put.value.name = "b";
  Status status = registry_->Commit(FeatureSetsWrite({put}));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
}

TEST_P(RegistryConformanceTest, CreatesFindsAndListsFeatures) {
  FeatureSet users = NewFeatureSet("users");
  FeatureSet orders = NewFeatureSet("orders");
  Feature age = NewFeature(users, "age");
  age.data_type = "int";
  age.default_value.reset();
  age.validation_rules = {};
  age.allowed_values = boost::json::array{18, 21, 65};
  age.validation_rules.not_null = true;
  Feature score = NewFeature(users, "score");
  Feature total = NewFeature(orders, "total");
  ASSERT_OK(CreateFeatureSet(users, {score, age}));
  ASSERT_OK(CreateFeatureSet(orders, {total}));

  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeature(age.id, false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(age));
  ASSERT_OK_AND_ASSIGN(found, registry_->FindFeature(score.id, false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(score));
  ASSERT_OK_AND_ASSIGN(auto missing, registry_->FindFeature(NewUuid(), true));
  EXPECT_FALSE(missing.has_value());

  // Ordered by feature set id, then name.
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatures(false));
  ASSERT_EQ(all.size(), 3u);
  std::vector<std::string> expected =
      users.id < orders.id ? std::vector<std::string>{"age", "score", "total"}
                           : std::vector<std::string>{"total", "age", "score"};
  EXPECT_EQ(Names(all), expected);
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureHistory(total.id));
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(Json(history[0]), Json(total));
}

TEST_P(RegistryConformanceTest, SameFeatureNameIsAllowedInTwoFeatureSets) {
  FeatureSet users = NewFeatureSet("users");
  FeatureSet orders = NewFeatureSet("orders");
  ASSERT_OK(CreateFeatureSet(users, {NewFeature(users, "amount")}));
  ASSERT_OK(CreateFeatureSet(orders, {NewFeature(orders, "amount")}));
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatures(false));
  EXPECT_EQ(Names(all), (std::vector<std::string>{"amount", "amount"}));

  // But not twice in one feature set.
  Status status = registry_->Commit(FeaturesWrite({{NewFeature(users, "amount"), 0}}));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
  EXPECT_NE(ErrorMessageOf(status).find("amount"), std::string::npos) << status.ToString();
}

TEST_P(RegistryConformanceTest, FeatureOfAnUnknownFeatureSetIsInvalidArgument) {
  FeatureSet ghost = NewFeatureSet("ghost");
  Status status = registry_->Commit(FeaturesWrite({{NewFeature(ghost, "x"), 0}}));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "feature_set_id");
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatures(true));
  EXPECT_TRUE(all.empty());
}

// ---------------------------------------------------------------------------
// Versions and optimistic concurrency

TEST_P(RegistryConformanceTest, UpdatesAppendHistoryAndOldVersionsKeepTheirContent) {
  FeatureSet v1 = NewFeatureSet("user_profile");
  Feature f1 = NewFeature(v1, "age");
  ASSERT_OK(CreateFeatureSet(v1, {f1}));

  auto put2 = NextVersion(v1);
  put2.value.description = "second";
  put2.value.tags = {"changed"};
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({put2})));
  auto put3 = NextVersion(put2.value);
  put3.value.description = "third";
  put3.value.ttl = "";
  auto fput2 = NextVersion(f1);
  fput2.value.transformation = "age + 1";
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({put3}, {fput2})));

  ASSERT_OK_AND_ASSIGN(auto current, registry_->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->version, 3);
  EXPECT_EQ(Json(*current), Json(put3.value));

  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(v1.id));
  ASSERT_EQ(Versions(history), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Json(history[0]), Json(v1));
  EXPECT_EQ(Json(history[1]), Json(put2.value));
  EXPECT_EQ(Json(history[2]), Json(put3.value));
  EXPECT_EQ(history[0].description, "features of user_profile");
  EXPECT_EQ(history[1].description, "second");

  ASSERT_OK_AND_ASSIGN(auto feature, registry_->FindFeature(f1.id, false));
  ASSERT_TRUE(feature.has_value());
  EXPECT_EQ(Json(*feature), Json(fput2.value));
  ASSERT_OK_AND_ASSIGN(auto feature_history, registry_->FeatureHistory(f1.id));
  ASSERT_EQ(Versions(feature_history), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(feature_history[0].transformation, "amount * 2");
  EXPECT_EQ(feature_history[1].transformation, "age + 1");
}

TEST_P(RegistryConformanceTest, StaleExpectedVersionIsConflictAndWritesNothing) {
  FeatureSet v1 = NewFeatureSet("user_profile");
  ASSERT_OK(CreateFeatureSet(v1));
  auto winner = NextVersion(v1);
  winner.value.description = "winner";
  auto loser = NextVersion(v1);
  loser.value.description = "loser";
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({winner})));
  ASSERT_OK_AND_ASSIGN(int64_t seq_before, registry_->ChangeSequence());

  Status status = registry_->Commit(FeatureSetsWrite({loser}));
  EXPECT_ERROR(ErrorCode::kConflict, status);
  EXPECT_NE(ErrorMessageOf(status).find("user_profile"), std::string::npos) << status.ToString();

  ASSERT_OK_AND_ASSIGN(auto current, registry_->FindFeatureSet(v1.id, false));
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->description, "winner");
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(v1.id));
  EXPECT_EQ(Versions(history), (std::vector<int64_t>{1, 2}));
  ASSERT_OK_AND_ASSIGN(int64_t seq_after, registry_->ChangeSequence());
  EXPECT_EQ(seq_after, seq_before);

  // Features too.
  Feature f = NewFeature(v1, "age");
  ASSERT_OK(registry_->Commit(FeaturesWrite({{f, 0}})));
  ASSERT_OK(registry_->Commit(FeaturesWrite({NextVersion(f)})));
  EXPECT_ERROR(ErrorCode::kConflict, registry_->Commit(FeaturesWrite({NextVersion(f)})));
}

TEST_P(RegistryConformanceTest, VersionMustFollowTheExpectedVersion) {
  FeatureSet fs = NewFeatureSet("user_profile");
  fs.version = 2;
  EXPECT_ERROR(ErrorCode::kInvalidArgument, CreateFeatureSet(fs));
  fs.version = 1;
  ASSERT_OK(CreateFeatureSet(fs));

  auto skip = NextVersion(fs);
  skip.value.version = 3;
  EXPECT_ERROR(ErrorCode::kInvalidArgument, registry_->Commit(FeatureSetsWrite({skip})));
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fs.id));
  EXPECT_EQ(Versions(history), (std::vector<int64_t>{1}));

  // Creating an object whose id is taken is refused, not an update.
  FeatureSet same_id = NewFeatureSet("other");
  same_id.id = fs.id;
  EXPECT_FALSE(CreateFeatureSet(same_id).ok());
}

TEST_P(RegistryConformanceTest, AFailingCommitWritesNothing) {
  FeatureSet existing = NewFeatureSet("existing");
  ASSERT_OK(CreateFeatureSet(existing));
  auto current = NextVersion(existing);
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({current})));
  ASSERT_OK_AND_ASSIGN(int64_t seq_before, registry_->ChangeSequence());

  // Everything in this write is fine except the last put, which is stale.
  FeatureSet fresh = NewFeatureSet("fresh");
  RegistryWrite write;
  write.new_entities = {NewEntity("user")};
  write.feature_sets.push_back({fresh, 0});
  write.features.push_back({NewFeature(fresh, "a"), 0});
  write.features.push_back({NewFeature(fresh, "b"), 0});
  auto stale = NextVersion(existing);  // expects version 1; 2 is stored
  stale.value.description = "stale";
  write.feature_sets.push_back(stale);
  EXPECT_ERROR(ErrorCode::kConflict, registry_->Commit(write));

  ASSERT_OK_AND_ASSIGN(auto entities, registry_->ListEntities());
  EXPECT_TRUE(entities.empty());
  ASSERT_OK_AND_ASSIGN(auto sets, registry_->ListFeatureSets(true));
  EXPECT_EQ(Names(sets), (std::vector<std::string>{"existing"}));
  EXPECT_EQ(sets[0].version, 2);
  ASSERT_OK_AND_ASSIGN(auto features, registry_->ListFeatures(true));
  EXPECT_TRUE(features.empty());
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fresh.id));
  EXPECT_TRUE(history.empty());
  ASSERT_OK_AND_ASSIGN(int64_t seq_after, registry_->ChangeSequence());
  EXPECT_EQ(seq_after, seq_before);

  // The same write without the stale put goes through.
  write.feature_sets.pop_back();
  ASSERT_OK(registry_->Commit(write));
  ASSERT_OK_AND_ASSIGN(features, registry_->ListFeatures(false));
  EXPECT_EQ(Names(features), (std::vector<std::string>{"a", "b"}));
}

// ---------------------------------------------------------------------------
// Soft deletion

TEST_P(RegistryConformanceTest, SoftDeletedFeatureSetsAreHiddenButKeepTheirHistory) {
  FeatureSet fs = NewFeatureSet("user_profile");
  ASSERT_OK(CreateFeatureSet(fs));
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("other")));
  auto del = NextVersion(fs);
  del.value.deleted_at = kT0 + 5000;
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({del})));

  ASSERT_OK_AND_ASSIGN(auto live, registry_->ListFeatureSets(false));
  EXPECT_EQ(Names(live), (std::vector<std::string>{"other"}));
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureSets(true));
  EXPECT_EQ(Names(all), (std::vector<std::string>{"other", "user_profile"}));

  ASSERT_OK_AND_ASSIGN(auto hidden, registry_->FindFeatureSet(fs.id, false));
  EXPECT_FALSE(hidden.has_value());
  ASSERT_OK_AND_ASSIGN(hidden, registry_->FindFeatureSet("user_profile", false));
  EXPECT_FALSE(hidden.has_value());
  ASSERT_OK_AND_ASSIGN(auto deleted, registry_->FindFeatureSet("user_profile", true));
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(deleted->deleted_at, kT0 + 5000);
  EXPECT_EQ(Json(*deleted), Json(del.value));

  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fs.id));
  ASSERT_EQ(Versions(history), (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(history[0].deleted_at.has_value());
  EXPECT_TRUE(history[1].deleted_at.has_value());
}

TEST_P(RegistryConformanceTest, ADeletedNameCanBeReused) {
  FeatureSet first = NewFeatureSet("user_profile");
  ASSERT_OK(CreateFeatureSet(first));
  auto del = NextVersion(first);
  del.value.deleted_at = kT0 + 1000;
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({del})));

  FeatureSet second = NewFeatureSet("user_profile");
  second.description = "second";
  ASSERT_OK(CreateFeatureSet(second));

  // By name: the live one, even with include_deleted.
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, second.id);
  ASSERT_OK_AND_ASSIGN(found, registry_->FindFeatureSet("user_profile", true));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, second.id);
  // By id: the deleted one is still there.
  ASSERT_OK_AND_ASSIGN(found, registry_->FindFeatureSet(first.id, true));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, first.id);
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureSets(true));
  EXPECT_EQ(all.size(), 2u);

  // With both deleted, the name finds the most recently deleted.
  auto del2 = NextVersion(second);
  del2.value.deleted_at = kT0 + 9000;
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({del2})));
  ASSERT_OK_AND_ASSIGN(found, registry_->FindFeatureSet("user_profile", true));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, second.id);

  // Undeleting the first now clashes with nothing; undeleting both would.
  auto undelete_first = NextVersion(del.value);
  undelete_first.value.deleted_at.reset();
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({undelete_first})));
  auto undelete_second = NextVersion(del2.value);
  undelete_second.value.deleted_at.reset();
  Status status = registry_->Commit(FeatureSetsWrite({undelete_second}));
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "name");
}

TEST_P(RegistryConformanceTest, SoftDeletedFeaturesAreHiddenAndTheirNameReusable) {
  FeatureSet fs = NewFeatureSet("users");
  Feature age = NewFeature(fs, "age");
  ASSERT_OK(CreateFeatureSet(fs, {age}));
  auto del = NextVersion(age);
  del.value.deleted_at = kT0 + 1000;
  ASSERT_OK(registry_->Commit(FeaturesWrite({del})));

  ASSERT_OK_AND_ASSIGN(auto live, registry_->ListFeatures(false));
  EXPECT_TRUE(live.empty());
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatures(true));
  EXPECT_EQ(Names(all), (std::vector<std::string>{"age"}));
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeature(age.id, false));
  EXPECT_FALSE(found.has_value());
  ASSERT_OK_AND_ASSIGN(found, registry_->FindFeature(age.id, true));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->deleted_at, kT0 + 1000);
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureHistory(age.id));
  EXPECT_EQ(Versions(history), (std::vector<int64_t>{1, 2}));

  Feature again = NewFeature(fs, "age");
  ASSERT_OK(registry_->Commit(FeaturesWrite({{again, 0}})));
  ASSERT_OK_AND_ASSIGN(live, registry_->ListFeatures(false));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, again.id);
}

// ---------------------------------------------------------------------------
// Change sequence

TEST_P(RegistryConformanceTest, ChangeSequenceIncreasesWithEveryCommit) {
  ASSERT_OK_AND_ASSIGN(int64_t s0, registry_->ChangeSequence());
  FeatureSet fs = NewFeatureSet("a");
  ASSERT_OK(CreateFeatureSet(fs));
  ASSERT_OK_AND_ASSIGN(int64_t s1, registry_->ChangeSequence());
  EXPECT_GT(s1, s0);
  ASSERT_OK(registry_->Commit(EntitiesWrite({NewEntity("user")})));
  ASSERT_OK_AND_ASSIGN(int64_t s2, registry_->ChangeSequence());
  EXPECT_GT(s2, s1);
  // A failed commit changes nothing.
  EXPECT_FALSE(CreateFeatureSet(NewFeatureSet("a")).ok());
  ASSERT_OK_AND_ASSIGN(int64_t s3, registry_->ChangeSequence());
  EXPECT_EQ(s3, s2);
  // Several puts in one commit: still one step (monotonic, so at least +1).
  RegistryWrite write;
  write.feature_sets.push_back({NewFeatureSet("b"), 0});
  write.feature_sets.push_back({NewFeatureSet("c"), 0});
  ASSERT_OK(registry_->Commit(write));
  ASSERT_OK_AND_ASSIGN(int64_t s4, registry_->ChangeSequence());
  EXPECT_GT(s4, s3);
}

// ---------------------------------------------------------------------------
// Concurrency

namespace {

// Read-modify-write of one feature set until the commit lands; counts the
// Conflicts it had to retry.
void UpdateUntilLanded(Registry* registry, const std::string& id, const std::string& tag,
                       std::atomic<int>* conflicts, std::atomic<int>* failures) {
  for (int attempt = 0; attempt < 10'000; ++attempt) {
    auto current = registry->FindFeatureSet(id, false);
    if (!current.ok() || !current->has_value()) {
      ++*failures;
      return;
    }
    FeatureSet next = **current;
    next.version += 1;
    next.tags.push_back(tag);
    Status status = registry->Commit(FeatureSetsWrite({{next, (*current)->version}}));
    if (status.ok()) return;
    if (ErrorCodeOf(status) == ErrorCode::kConflict) {
      ++*conflicts;
      continue;
    }
    if (ErrorCodeOf(status) == ErrorCode::kUnavailable) continue;  // busy: retry
    ADD_FAILURE() << status.ToString();
    ++*failures;
    return;
  }
  ++*failures;
}

}  // namespace

TEST_P(RegistryConformanceTest, ConcurrentReadModifyWriteCommitsAllLand) {
  constexpr int kThreads = 8;
  constexpr int kUpdatesPerThread = 10;
  FeatureSet fs = NewFeatureSet("hot");
  fs.tags.clear();
  ASSERT_OK(CreateFeatureSet(fs));

  std::atomic<int> conflicts{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kUpdatesPerThread; ++i) {
        UpdateUntilLanded(registry_.get(), fs.id, std::to_string(t) + "." + std::to_string(i),
                          &conflicts, &failures);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0);
  RecordProperty("conflicts_retried", conflicts.load());
  ASSERT_OK_AND_ASSIGN(auto final_fs, registry_->FindFeatureSet(fs.id, false));
  ASSERT_TRUE(final_fs.has_value());
  EXPECT_EQ(final_fs->version, 1 + kThreads * kUpdatesPerThread);
  EXPECT_EQ(final_fs->tags.size(), static_cast<size_t>(kThreads * kUpdatesPerThread));
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fs.id));
  EXPECT_EQ(history.size(), static_cast<size_t>(1 + kThreads * kUpdatesPerThread));
}

TEST_P(RegistryConformanceTest, ConcurrentCommitsFromSeparateConnectionsAllLand) {
  if (!GetParam().shared_between_connections) {
    GTEST_SKIP() << "connections of this backend do not share a store";
  }
  constexpr int kThreads = 8;
  constexpr int kUpdatesPerThread = 5;
  FeatureSet fs = NewFeatureSet("hot");
  fs.tags.clear();
  ASSERT_OK(CreateFeatureSet(fs));

  std::vector<std::unique_ptr<Registry>> connections;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(auto connection, OpenAnother());
    ASSERT_OK(connection->Migrate());  // already migrated: a no-op
    connections.push_back(std::move(connection));
  }
  std::atomic<int> conflicts{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kUpdatesPerThread; ++i) {
        UpdateUntilLanded(connections[t].get(), fs.id,
                          std::to_string(t) + "." + std::to_string(i), &conflicts, &failures);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (auto& connection : connections) EXPECT_OK(connection->Close());

  EXPECT_EQ(failures.load(), 0);
  RecordProperty("conflicts_retried", conflicts.load());
  ASSERT_OK_AND_ASSIGN(auto final_fs, registry_->FindFeatureSet(fs.id, false));
  ASSERT_TRUE(final_fs.has_value());
  EXPECT_EQ(final_fs->version, 1 + kThreads * kUpdatesPerThread);
}

// ---------------------------------------------------------------------------
// Lifecycle

TEST_P(RegistryConformanceTest, DataSurvivesCloseAndReopen) {
  if (!GetParam().persistent) GTEST_SKIP() << "this backend's stores do not outlive a connection";
  FeatureSet fs = NewFeatureSet("user_profile");
  Feature f = NewFeature(fs, "age");
  Entity user = NewEntity("user");
  RegistryWrite write = FeatureSetsWrite({{fs, 0}}, {{f, 0}});
  write.new_entities = {user};
  ASSERT_OK(registry_->Commit(write));
  auto v2 = NextVersion(fs);
  ASSERT_OK(registry_->Commit(FeatureSetsWrite({v2})));
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry_->ChangeSequence());
  ASSERT_OK(registry_->Close());

  ASSERT_OK_AND_ASSIGN(registry_, OpenAnother());
  ASSERT_OK_AND_ASSIGN(int version, registry_->SchemaVersion());
  EXPECT_GE(version, 1);
  ASSERT_OK(registry_->Migrate());
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(v2.value));
  ASSERT_OK_AND_ASSIGN(auto history, registry_->FeatureSetHistory(fs.id));
  EXPECT_EQ(Versions(history), (std::vector<int64_t>{1, 2}));
  ASSERT_OK_AND_ASSIGN(auto feature, registry_->FindFeature(f.id, false));
  ASSERT_TRUE(feature.has_value());
  EXPECT_EQ(Json(*feature), Json(f));
  ASSERT_OK_AND_ASSIGN(auto entity, registry_->FindEntity("user"));
  ASSERT_TRUE(entity.has_value());
  ASSERT_OK_AND_ASSIGN(int64_t seq_after, registry_->ChangeSequence());
  EXPECT_EQ(seq_after, seq);
}

TEST_P(RegistryConformanceTest, CloseIsIdempotentAndLaterCallsAreUnavailable) {
  ASSERT_OK(registry_->Close());
  ASSERT_OK(registry_->Close());
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->Ping());
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->Migrate());
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListFeatureSets(false));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->FindFeatureSet("x", true));
  EXPECT_ERROR(ErrorCode::kUnavailable, CreateFeatureSet(NewFeatureSet("x")));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ChangeSequence());
}

// ---------------------------------------------------------------------------
// SQLite instantiations

namespace {

Result<RegistryStore> NewSqliteFileStore() {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fstore-registry-test-" + NewUuid());
  // The directory does not exist yet: RegistryFromUri creates it.
  std::string path = (dir / "registry.db").string();
  std::string uri = "sqlite://" + path;
  return RegistryStore{
      .open = [uri] { return RegistryFromUri(uri); },
      .drop = [dir] {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      },
      .run_sql = [path](const std::string& sql) -> Status {
        sqlite3* db = nullptr;
        int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
        Status status = rc == SQLITE_OK ? Status::OK() : Internal(sql + ": " + sqlite3_errmsg(db));
        sqlite3_close(db);
        return status;
      }};
}

Result<RegistryStore> NewSqliteMemoryStore() {
  // Private to its connection: nothing else can reach it (no run_sql).
  return RegistryStore{
      .open = [] { return RegistryFromUri("sqlite::memory:"); }, .drop = {}, .run_sql = {}};
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(
    Sqlite, RegistryConformanceTest,
    ::testing::Values(RegistryBackend{.name = "File", .new_store = NewSqliteFileStore},
                      RegistryBackend{.name = "Memory",
                                      .new_store = NewSqliteMemoryStore,
                                      .persistent = false,
                                      .shared_between_connections = false}),
    RegistryBackendName);

}  // namespace fstore

namespace fstore {
namespace {

TEST_P(RegistryConformanceTest, ExpectedChangeSequenceGuardsTheCommit) {
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry_->ChangeSequence());
  FeatureSet a = NewFeatureSet("a");
  RegistryWrite first;
  first.feature_sets.push_back({a, 0});
  first.expected_change_sequence = seq;
  ASSERT_OK(registry_->Commit(first));

  // A write planned against `seq` is refused now that another commit landed,
  // and writes nothing.
  FeatureSet b = NewFeatureSet("b");
  RegistryWrite stale;
  stale.feature_sets.push_back({b, 0});
  stale.expected_change_sequence = seq;
  Status st = registry_->Commit(stale);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kConflict);
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindFeatureSet("b", true));
  EXPECT_FALSE(found.has_value());

  ASSERT_OK_AND_ASSIGN(int64_t now, registry_->ChangeSequence());
  EXPECT_GT(now, seq);
  stale.expected_change_sequence = now;
  ASSERT_OK(registry_->Commit(stale));
}

}  // namespace
}  // namespace fstore

// ---------------------------------------------------------------------------
// Materialization jobs, watermarks and schedule slots

namespace fstore {
namespace {

/// A job of `feature_set_id` created at `created_at`, with every field set.
MaterializationJob NewJob(const std::string& feature_set_id, TimestampMicros created_at,
                          JobStatus status = JobStatus::kSucceeded) {
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = feature_set_id;
  job.feature_set_name = "user_profile";
  job.feature_set_version = 2;
  job.status = status;
  job.trigger = "api";
  job.incremental = true;
  job.start = kT0 - kMicrosPerDay;
  job.end = kT0;
  job.completed_until = kT0 - kMicrosPerHour + 7;
  job.created_at = created_at;
  job.started_at = created_at + 1'500'000;
  job.finished_at = created_at + 90'250'001;
  job.rows_read = 1'000;
  job.rows_written_offline = 990;
  job.rows_written_online = 400;
  job.rows_rejected = 10;
  job.bytes_read = int64_t{5} << 33;
  job.bytes_written = 77'777;
  job.duration_seconds = 88.75;
  job.cpu_seconds = 0.3;
  job.quality_report =
      boost::json::parse(R"({"age": {"max_value": {"count": 2, "samples": [151, 1e3]}},
                             "city": {"not_null": {"count": 8, "samples": [null, null]}}})")
          .as_object();
  job.error = "2 rows over max_value";
  return job;
}

std::vector<std::string> Ids(const std::vector<MaterializationJob>& jobs) {
  std::vector<std::string> out;
  for (const auto& job : jobs) out.push_back(job.id);
  return out;
}

}  // namespace

TEST_P(RegistryConformanceTest, PutsAndFindsJobsWithEveryField) {
  MaterializationJob full = NewJob("fs-1", kT0);
  MaterializationJob bare;  // unset optionals, empty report, no error
  bare.id = NewUuid();
  bare.feature_set_id = "fs-1";
  bare.created_at = kT0 + 1;
  ASSERT_OK(registry_->PutJob(full));
  ASSERT_OK(registry_->PutJob(bare));

  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindJob(full.id));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(full));
  EXPECT_EQ(found->status, JobStatus::kSucceeded);
  EXPECT_EQ(found->started_at, full.started_at);
  EXPECT_EQ(found->finished_at, full.finished_at);
  EXPECT_EQ(found->completed_until, full.completed_until);
  EXPECT_EQ(found->bytes_read, full.bytes_read);
  EXPECT_EQ(found->cpu_seconds, full.cpu_seconds);
  EXPECT_EQ(found->quality_report, full.quality_report);
  EXPECT_EQ(found->error, full.error);

  ASSERT_OK_AND_ASSIGN(auto found_bare, registry_->FindJob(bare.id));
  ASSERT_TRUE(found_bare.has_value());
  EXPECT_EQ(Json(*found_bare), Json(bare));
  EXPECT_EQ(found_bare->status, JobStatus::kQueued);
  EXPECT_FALSE(found_bare->started_at.has_value());
  EXPECT_FALSE(found_bare->finished_at.has_value());
  EXPECT_TRUE(found_bare->quality_report.empty());
  EXPECT_TRUE(found_bare->error.empty());

  ASSERT_OK_AND_ASSIGN(auto missing, registry_->FindJob(NewUuid()));
  EXPECT_FALSE(missing.has_value());
}

TEST_P(RegistryConformanceTest, PutJobReplacesTheRecordById) {
  MaterializationJob job = NewJob("fs-1", kT0, JobStatus::kRunning);
  job.finished_at.reset();
  job.error.clear();
  ASSERT_OK(registry_->PutJob(job));
  job.status = JobStatus::kFailed;
  job.finished_at = kT0 + 5 * kMicrosPerSecond;
  job.rows_read = 2'000;
  job.error = "source unreachable";
  ASSERT_OK(registry_->PutJob(job));

  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindJob(job.id));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(job));
  ASSERT_OK_AND_ASSIGN(auto listed, registry_->ListJobs("fs-1", 10));
  EXPECT_EQ(Ids(listed), std::vector<std::string>{job.id});
  ASSERT_OK_AND_ASSIGN(auto running, registry_->ListJobsByStatus(JobStatus::kRunning));
  EXPECT_TRUE(running.empty());  // the status column follows the record
  ASSERT_OK_AND_ASSIGN(auto failed, registry_->ListJobsByStatus(JobStatus::kFailed));
  EXPECT_EQ(Ids(failed), std::vector<std::string>{job.id});
}

TEST_P(RegistryConformanceTest, PutJobRefusesAJobWithoutIds) {
  MaterializationJob no_id = NewJob("fs-1", kT0);
  no_id.id.clear();
  Status status = registry_->PutJob(no_id);
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "id");
  MaterializationJob no_set = NewJob("", kT0);
  status = registry_->PutJob(no_set);
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "feature_set_id");
}

TEST_P(RegistryConformanceTest, ListJobsIsNewestFirstLimitedAndPerFeatureSet) {
  MaterializationJob oldest = NewJob("fs-1", kT0);
  MaterializationJob middle = NewJob("fs-1", kT0 + kMicrosPerHour);
  MaterializationJob newest = NewJob("fs-1", kT0 + 2 * kMicrosPerHour);
  MaterializationJob other = NewJob("fs-2", kT0 + 3 * kMicrosPerHour);
  // Same created_at as `middle`: ties go by id, descending.
  MaterializationJob twin = NewJob("fs-1", kT0 + kMicrosPerHour);
  for (const auto& job : {middle, other, oldest, twin, newest}) ASSERT_OK(registry_->PutJob(job));
  auto [low, high] = std::minmax(middle.id, twin.id);

  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListJobs("fs-1", 100));
  EXPECT_EQ(Ids(all), (std::vector<std::string>{newest.id, high, low, oldest.id}));
  ASSERT_OK_AND_ASSIGN(auto two, registry_->ListJobs("fs-1", 2));
  EXPECT_EQ(Ids(two), (std::vector<std::string>{newest.id, high}));
  ASSERT_OK_AND_ASSIGN(auto none, registry_->ListJobs("fs-1", 0));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto unlimited, registry_->ListJobs("fs-1", SIZE_MAX));
  EXPECT_EQ(unlimited.size(), 4u);
  ASSERT_OK_AND_ASSIGN(auto others, registry_->ListJobs("fs-2", 100));
  EXPECT_EQ(Ids(others), std::vector<std::string>{other.id});
  ASSERT_OK_AND_ASSIGN(auto unknown, registry_->ListJobs("fs-3", 100));
  EXPECT_TRUE(unknown.empty());
}

TEST_P(RegistryConformanceTest, ListJobsByStatusIsOldestFirstAcrossFeatureSets) {
  MaterializationJob q2 = NewJob("fs-2", kT0 + 2, JobStatus::kQueued);
  MaterializationJob q1 = NewJob("fs-1", kT0 + 1, JobStatus::kQueued);
  MaterializationJob r1 = NewJob("fs-1", kT0, JobStatus::kRunning);
  MaterializationJob s1 = NewJob("fs-1", kT0 - 1, JobStatus::kSucceeded);
  for (const auto& job : {q2, r1, s1, q1}) ASSERT_OK(registry_->PutJob(job));

  ASSERT_OK_AND_ASSIGN(auto queued, registry_->ListJobsByStatus(JobStatus::kQueued));
  EXPECT_EQ(Ids(queued), (std::vector<std::string>{q1.id, q2.id}));
  ASSERT_OK_AND_ASSIGN(auto running, registry_->ListJobsByStatus(JobStatus::kRunning));
  EXPECT_EQ(Ids(running), std::vector<std::string>{r1.id});
  ASSERT_OK_AND_ASSIGN(auto failed, registry_->ListJobsByStatus(JobStatus::kFailed));
  EXPECT_TRUE(failed.empty());
}

TEST_P(RegistryConformanceTest, WatermarkIsAbsentUntilCommittedAndOnlyMovesForward) {
  ASSERT_OK_AND_ASSIGN(auto none, registry_->Watermark("fs-1"));
  EXPECT_FALSE(none.has_value());

  MaterializationJob first = NewJob("fs-1", kT0);
  ASSERT_OK(registry_->CommitJobAndWatermark(first, kT0));
  ASSERT_OK_AND_ASSIGN(auto w1, registry_->Watermark("fs-1"));
  EXPECT_EQ(w1, std::optional<TimestampMicros>(kT0));

  // A backfill of an earlier range records its job but leaves the watermark.
  MaterializationJob backfill = NewJob("fs-1", kT0 + 1);
  backfill.incremental = false;
  ASSERT_OK(registry_->CommitJobAndWatermark(backfill, kT0 - kMicrosPerDay));
  ASSERT_OK_AND_ASSIGN(auto w2, registry_->Watermark("fs-1"));
  EXPECT_EQ(w2, std::optional<TimestampMicros>(kT0));
  ASSERT_OK_AND_ASSIGN(auto backfill_found, registry_->FindJob(backfill.id));
  ASSERT_TRUE(backfill_found.has_value());
  EXPECT_EQ(Json(*backfill_found), Json(backfill));

  // The same watermark again: unchanged; a later one moves it.
  ASSERT_OK(registry_->CommitJobAndWatermark(NewJob("fs-1", kT0 + 2), kT0));
  ASSERT_OK(registry_->CommitJobAndWatermark(NewJob("fs-1", kT0 + 3), kT0 + kMicrosPerHour));
  ASSERT_OK_AND_ASSIGN(auto w3, registry_->Watermark("fs-1"));
  EXPECT_EQ(w3, std::optional<TimestampMicros>(kT0 + kMicrosPerHour));

  // Per feature set.
  ASSERT_OK_AND_ASSIGN(auto other, registry_->Watermark("fs-2"));
  EXPECT_FALSE(other.has_value());
  ASSERT_OK_AND_ASSIGN(auto jobs, registry_->ListJobs("fs-1", 100));
  EXPECT_EQ(jobs.size(), 4u);
}

TEST_P(RegistryConformanceTest, JobAndWatermarkCommitTogether) {
  MaterializationJob job = NewJob("fs-1", kT0, JobStatus::kRunning);
  job.finished_at.reset();
  ASSERT_OK(registry_->PutJob(job));

  // The run's last step: the finished record and the watermark, at once.
  job.status = JobStatus::kSucceeded;
  job.finished_at = kT0 + kMicrosPerMinute;
  job.completed_until = job.end;
  ASSERT_OK(registry_->CommitJobAndWatermark(job, job.end));
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindJob(job.id));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(job));
  ASSERT_OK_AND_ASSIGN(auto watermark, registry_->Watermark("fs-1"));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(job.end));

  // A job the registry refuses moves no watermark either.
  MaterializationJob bad = NewJob("fs-1", kT0 + 1);
  bad.id.clear();
  EXPECT_ERROR(ErrorCode::kInvalidArgument,
               registry_->CommitJobAndWatermark(bad, job.end + kMicrosPerDay));
  ASSERT_OK_AND_ASSIGN(auto unchanged, registry_->Watermark("fs-1"));
  EXPECT_EQ(unchanged, std::optional<TimestampMicros>(job.end));
  ASSERT_OK_AND_ASSIGN(auto jobs, registry_->ListJobs("fs-1", 100));
  EXPECT_EQ(Ids(jobs), std::vector<std::string>{job.id});
}

TEST_P(RegistryConformanceTest, WatermarkAndScheduleSlotAreIndependent) {
  ASSERT_OK_AND_ASSIGN(auto none, registry_->LastScheduledSlot("fs-1"));
  EXPECT_FALSE(none.has_value());

  ASSERT_OK(registry_->SetLastScheduledSlot("fs-1", kT0));
  ASSERT_OK_AND_ASSIGN(auto slot, registry_->LastScheduledSlot("fs-1"));
  EXPECT_EQ(slot, std::optional<TimestampMicros>(kT0));
  ASSERT_OK_AND_ASSIGN(auto no_watermark, registry_->Watermark("fs-1"));
  EXPECT_FALSE(no_watermark.has_value());  // a slot is not a watermark

  ASSERT_OK(registry_->CommitJobAndWatermark(NewJob("fs-1", kT0), kT0 - kMicrosPerHour));
  ASSERT_OK_AND_ASSIGN(auto watermark, registry_->Watermark("fs-1"));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0 - kMicrosPerHour));

  ASSERT_OK(registry_->SetLastScheduledSlot("fs-1", kT0 + kMicrosPerHour));
  ASSERT_OK_AND_ASSIGN(auto later, registry_->LastScheduledSlot("fs-1"));
  EXPECT_EQ(later, std::optional<TimestampMicros>(kT0 + kMicrosPerHour));
  ASSERT_OK_AND_ASSIGN(auto kept, registry_->Watermark("fs-1"));
  EXPECT_EQ(kept, watermark);

  ASSERT_OK_AND_ASSIGN(auto other_slot, registry_->LastScheduledSlot("fs-2"));
  EXPECT_FALSE(other_slot.has_value());
  ASSERT_OK(registry_->CommitJobAndWatermark(NewJob("fs-2", kT0), kT0));
  ASSERT_OK_AND_ASSIGN(auto still_none, registry_->LastScheduledSlot("fs-2"));
  EXPECT_FALSE(still_none.has_value());  // a watermark is not a slot
}

TEST_P(RegistryConformanceTest, JobWritesDoNotBumpTheChangeSequence) {
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("user_profile")));
  ASSERT_OK_AND_ASSIGN(int64_t before, registry_->ChangeSequence());
  MaterializationJob job = NewJob("fs-1", kT0);
  ASSERT_OK(registry_->PutJob(job));
  ASSERT_OK(registry_->CommitJobAndWatermark(job, kT0));
  ASSERT_OK(registry_->SetLastScheduledSlot("fs-1", kT0));
  ASSERT_OK_AND_ASSIGN(int64_t after, registry_->ChangeSequence());
  EXPECT_EQ(after, before);
}

TEST_P(RegistryConformanceTest, JobsWatermarksAndSlotsSurviveReopen) {
  if (!GetParam().persistent) GTEST_SKIP() << "this backend's stores do not outlive a connection";
  MaterializationJob done = NewJob("fs-1", kT0);
  MaterializationJob queued = NewJob("fs-1", kT0 + 1, JobStatus::kQueued);
  queued.started_at.reset();
  queued.finished_at.reset();
  ASSERT_OK(registry_->CommitJobAndWatermark(done, kT0));
  ASSERT_OK(registry_->PutJob(queued));
  ASSERT_OK(registry_->SetLastScheduledSlot("fs-1", kT0 + kMicrosPerHour));
  ASSERT_OK(registry_->Close());

  ASSERT_OK_AND_ASSIGN(registry_, OpenAnother());
  ASSERT_OK(registry_->Migrate());
  ASSERT_OK_AND_ASSIGN(auto found, registry_->FindJob(done.id));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(Json(*found), Json(done));
  ASSERT_OK_AND_ASSIGN(auto pending, registry_->ListJobsByStatus(JobStatus::kQueued));
  ASSERT_EQ(Ids(pending), std::vector<std::string>{queued.id});
  EXPECT_EQ(Json(pending.front()), Json(queued));
  ASSERT_OK_AND_ASSIGN(auto watermark, registry_->Watermark("fs-1"));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0));
  ASSERT_OK_AND_ASSIGN(auto slot, registry_->LastScheduledSlot("fs-1"));
  EXPECT_EQ(slot, std::optional<TimestampMicros>(kT0 + kMicrosPerHour));
}

TEST_P(RegistryConformanceTest, JobCallsAfterCloseAreUnavailable) {
  ASSERT_OK(registry_->Close());
  MaterializationJob job = NewJob("fs-1", kT0);
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->PutJob(job));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->FindJob(job.id));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListJobs("fs-1", 10));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListJobsByStatus(JobStatus::kQueued));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->Watermark("fs-1"));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->CommitJobAndWatermark(job, kT0));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->LastScheduledSlot("fs-1"));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->SetLastScheduledSlot("fs-1", kT0));
}

// ---------------------------------------------------------------------------
// API keys, the audit log, feature statistics and usage (operations.h)

namespace {

ApiKeyRecord NewApiKey(const std::string& id, TimestampMicros created_at) {
  ApiKeyRecord key;
  key.id = id;
  key.name = "key " + id;
  key.role = "writer";
  key.feature_sets = {"user_profile", "merchant stats"};
  key.salt = "00112233445566778899aabbccddeeff";
  key.hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  key.created_at = created_at;
  return key;
}

/// ListApiKeys' keys; an error when it reports an unreadable row.
Result<std::vector<ApiKeyRecord>> ListKeys(Registry* registry) {
  ARROW_ASSIGN_OR_RAISE(ApiKeyListing listing, registry->ListApiKeys());
  if (!listing.unreadable.empty()) return Internal(listing.unreadable.front().reason);
  return std::move(listing.keys);
}

void ExpectSameKey(const ApiKeyRecord& got, const ApiKeyRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.role, want.role);
  EXPECT_EQ(got.feature_sets, want.feature_sets);
  EXPECT_EQ(got.salt, want.salt);
  EXPECT_EQ(got.hash, want.hash);
  EXPECT_EQ(got.created_at, want.created_at);
  EXPECT_EQ(got.revoked_at, want.revoked_at);
}

AuditEvent NewAudit(TimestampMicros time, std::string key_id, std::string action,
                    std::string target, std::string outcome = "success", int status = 200) {
  AuditEvent event;
  event.time = time;
  event.key_id = std::move(key_id);
  event.action = std::move(action);
  event.target = std::move(target);
  event.outcome = std::move(outcome);
  event.status = status;
  event.detail = event.outcome == "success" ? "" : "not allowed";
  return event;
}

/// The targets of the events, in the order listed.
std::vector<std::string> Targets(const std::vector<AuditEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.target);
  return out;
}

FeatureStatisticsRecord NewStatistics(const std::string& job_id, const std::string& feature,
                                      const std::string& feature_set_id,
                                      TimestampMicros computed_at) {
  FeatureStatisticsRecord record;
  record.job_id = job_id;
  record.feature = feature;
  record.feature_set_id = feature_set_id;
  record.feature_set_name = "name of " + feature_set_id;
  record.computed_at = computed_at;
  record.body = R"({"count":10,"nulls":1,"mean":1e3,"feature":")" + feature + R"("})";
  return record;
}

/// "job/feature" of each record, in the order listed.
std::vector<std::string> StatisticsKeys(const std::vector<FeatureStatisticsRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.job_id + "/" + r.feature);
  return out;
}

UsageCount NewUsage(std::string day, std::string key_id, std::string feature_set,
                    std::string feature, int64_t requests, int64_t entities,
                    int64_t entities_found) {
  return UsageCount{.day = std::move(day),
                    .key_id = std::move(key_id),
                    .feature_set = std::move(feature_set),
                    .feature = std::move(feature),
                    .requests = requests,
                    .entities = entities,
                    .entities_found = entities_found};
}

/// "day|key|feature_set|feature=requests/entities/found" of each row.
std::vector<std::string> UsageRows(const std::vector<UsageCount>& counts) {
  std::vector<std::string> out;
  for (const auto& c : counts) {
    out.push_back(c.day + "|" + c.key_id + "|" + c.feature_set + "|" + c.feature + "=" +
                  std::to_string(c.requests) + "/" + std::to_string(c.entities) + "/" +
                  std::to_string(c.entities_found));
  }
  return out;
}

}  // namespace

TEST_P(RegistryConformanceTest, MigrationsThreeAndFourAreApplied) {
  ASSERT_OK_AND_ASSIGN(int version, registry_->SchemaVersion());
  EXPECT_EQ(version, 4);
  // Every new table answers, empty.
  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  EXPECT_TRUE(keys.empty());
  ASSERT_OK_AND_ASSIGN(auto audit, registry_->ListAudit(AuditFilter{}));
  EXPECT_TRUE(audit.empty());
  ASSERT_OK_AND_ASSIGN(auto stats, registry_->ListFeatureStatistics(0, ""));
  EXPECT_TRUE(stats.empty());
  ASSERT_OK_AND_ASSIGN(auto usage, registry_->ListUsage(""));
  EXPECT_TRUE(usage.empty());
}

TEST_P(RegistryConformanceTest, ApiKeysRoundTripWithEveryFieldOldestFirst) {
  ApiKeyRecord admin = NewApiKey("key_00000000000000a1", kT0 + 2);
  admin.role = "admin";
  admin.feature_sets = {};  // every feature set
  admin.name = "";
  ApiKeyRecord reader = NewApiKey("key_00000000000000b2", kT0 + 1);
  reader.role = "reader";
  reader.name = "dashboards \"ro\" \xc3\xa9";
  reader.revoked_at = kT0 + 50;
  ApiKeyRecord writer = NewApiKey("key_00000000000000c3", kT0 + 3);
  ASSERT_OK(registry_->InsertApiKey(admin));
  ASSERT_OK(registry_->InsertApiKey(reader));
  ASSERT_OK(registry_->InsertApiKey(writer));

  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  ASSERT_EQ(keys.size(), 3u);
  ExpectSameKey(keys[0], reader);
  ExpectSameKey(keys[1], admin);
  ExpectSameKey(keys[2], writer);
  EXPECT_TRUE(keys[1].feature_sets.empty());
  EXPECT_FALSE(keys[1].revoked_at.has_value());
}

TEST_P(RegistryConformanceTest, InsertApiKeyNeverReplacesAStoredKey) {
  ApiKeyRecord key = NewApiKey("key_0000000000000001", kT0);
  ASSERT_OK(registry_->InsertApiKey(key));
  // Another key with the same id (a collision of random ids): refused, and
  // the stored key keeps its hash, role and feature sets.
  ApiKeyRecord other = NewApiKey("key_0000000000000001", kT0 + 1);
  other.role = "admin";
  other.feature_sets = {};
  other.salt = "ffeeddccbbaa99887766554433221100";
  other.hash = std::string(64, 'a');
  Status status = registry_->InsertApiKey(other);
  EXPECT_ERROR(ErrorCode::kAlreadyExists, status);
  EXPECT_EQ(FieldOf(status), "id");
  EXPECT_NE(status.message().find("'key_0000000000000001'"), std::string::npos) << status;
  // Nor does inserting the record again, revoked_at unset, undo a revocation.
  ASSERT_OK_AND_ASSIGN(bool revoked, registry_->RevokeApiKey(key.id, kT0 + 5));
  ASSERT_TRUE(revoked);
  EXPECT_ERROR(ErrorCode::kAlreadyExists, registry_->InsertApiKey(key));

  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  ASSERT_EQ(keys.size(), 1u);
  key.revoked_at = kT0 + 5;
  ExpectSameKey(keys[0], key);
}

TEST_P(RegistryConformanceTest, InsertApiKeyRefusesIncompleteRecords) {
  ApiKeyRecord no_id = NewApiKey("", kT0);
  Status status = registry_->InsertApiKey(no_id);
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "id");
  ApiKeyRecord no_hash = NewApiKey("key_0000000000000001", kT0);
  no_hash.hash.clear();
  status = registry_->InsertApiKey(no_hash);
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "hash");
  ApiKeyRecord no_role = NewApiKey("key_0000000000000001", kT0);
  no_role.role.clear();
  status = registry_->InsertApiKey(no_role);
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "role");
  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  EXPECT_TRUE(keys.empty());
}

TEST_P(RegistryConformanceTest, RevokeApiKeySetsRevokedAtOnceAndNothingElse) {
  ApiKeyRecord key = NewApiKey("key_0000000000000001", kT0);
  ApiKeyRecord other = NewApiKey("key_0000000000000002", kT0 + 1);
  ASSERT_OK(registry_->InsertApiKey(key));
  ASSERT_OK(registry_->InsertApiKey(other));
  ASSERT_OK_AND_ASSIGN(bool revoked, registry_->RevokeApiKey(key.id, kT0 + 10));
  EXPECT_TRUE(revoked);
  // Already revoked: false, and the first revocation's time stays.
  ASSERT_OK_AND_ASSIGN(revoked, registry_->RevokeApiKey(key.id, kT0 + 20));
  EXPECT_FALSE(revoked);
  // No such key: false, and nothing is created.
  ASSERT_OK_AND_ASSIGN(revoked, registry_->RevokeApiKey("key_ffffffffffffffff", kT0 + 30));
  EXPECT_FALSE(revoked);

  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  ASSERT_EQ(keys.size(), 2u);
  key.revoked_at = kT0 + 10;
  ExpectSameKey(keys[0], key);
  ExpectSameKey(keys[1], other);
}

TEST_P(RegistryConformanceTest, ConcurrentRevocationsOfOneKeyHaveOneWinner) {
  constexpr int kThreads = 8;
  constexpr int kKeys = 20;
  auto id_of = [](int k) { return "key_00000000000010" + std::to_string(10 + k); };
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_OK(registry_->InsertApiKey(NewApiKey(id_of(k), kT0 + k)));
  }
  // Each thread its own connection where the backend shares a store between
  // connections (the API and the CLI, several servers), else the one registry.
  std::vector<std::unique_ptr<Registry>> connections(kThreads);
  if (GetParam().shared_between_connections) {
    for (auto& connection : connections) {
      ASSERT_OK_AND_ASSIGN(connection, OpenAnother());
    }
  }
  // Every thread revokes every key, in the same order, each at a time of its
  // own; won[k][t]: thread t's call revoked key k.
  std::vector<std::vector<char>> won(kKeys, std::vector<char>(kThreads, 0));
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Registry* registry = connections[t] ? connections[t].get() : registry_.get();
      for (int k = 0; k < kKeys && results[t].ok(); ++k) {
        auto revoked = registry->RevokeApiKey(id_of(k), kT0 + kMicrosPerHour + t);
        if (revoked.ok()) {
          won[k][t] = *revoked;
        } else {
          results[t] = revoked.status();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) ASSERT_OK(results[t]);
  for (auto& connection : connections) {
    if (connection) ASSERT_OK(connection->Close());
  }

  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  ASSERT_EQ(keys.size(), static_cast<size_t>(kKeys));
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_EQ(std::count(won[k].begin(), won[k].end(), 1), 1) << keys[k].id;
    // The stored time is the winner's: no later call overwrote it.
    const auto winner = std::find(won[k].begin(), won[k].end(), 1) - won[k].begin();
    EXPECT_EQ(keys[k].revoked_at, std::optional<TimestampMicros>(kT0 + kMicrosPerHour + winner))
        << keys[k].id;
  }
}

TEST_P(RegistryConformanceTest, AnUnreadableKeyRowIsReportedAndTheOthersListed) {
  if (!store_.run_sql) GTEST_SKIP() << "this backend's rows cannot be damaged behind its back";
  ApiKeyRecord first = NewApiKey("key_0000000000000001", kT0);
  ApiKeyRecord damaged = NewApiKey("key_0000000000000002", kT0 + 1);
  ApiKeyRecord last = NewApiKey("key_0000000000000003", kT0 + 2);
  for (const ApiKeyRecord* key : {&first, &damaged, &last}) {
    ASSERT_OK(registry_->InsertApiKey(*key));
  }
  // Cut short: not a JSON array any more.
  ASSERT_OK(store_.run_sql("UPDATE api_keys SET feature_sets = '[\"user_profile\"' "
                           "WHERE id = 'key_0000000000000002'"));

  ASSERT_OK_AND_ASSIGN(ApiKeyListing listing, registry_->ListApiKeys());
  ASSERT_EQ(listing.keys.size(), 2u);
  ExpectSameKey(listing.keys[0], first);
  ExpectSameKey(listing.keys[1], last);
  ASSERT_EQ(listing.unreadable.size(), 1u);
  EXPECT_EQ(listing.unreadable[0].id, damaged.id);
  EXPECT_NE(listing.unreadable[0].reason.find("API key 'key_0000000000000002'"),
            std::string::npos)
      << listing.unreadable[0].reason;
  // Said as what it is, a stored column, not a request body.
  EXPECT_NE(listing.unreadable[0].reason.find("not valid JSON"), std::string::npos)
      << listing.unreadable[0].reason;
  EXPECT_EQ(listing.unreadable[0].reason.find("request body"), std::string::npos)
      << listing.unreadable[0].reason;
  // Revoking it reads none of its columns.
  ASSERT_OK_AND_ASSIGN(bool revoked, registry_->RevokeApiKey(damaged.id, kT0 + 10));
  EXPECT_TRUE(revoked);
}

TEST_P(RegistryConformanceTest, AuditEventsRoundTripNewestFirstWithIncreasingSeqs) {
  AuditEvent first = NewAudit(kT0, "key_a", "feature_set.create", "user_profile");
  AuditEvent second = NewAudit(kT0 + 10, "", "auth.denied", "", "denied", 401);
  second.detail = "unknown key \"x\"";
  AuditEvent third = NewAudit(kT0 + 5, "key_b", "materialize", "user_profile", "failure", 0);
  third.seq = 999;  // ignored: the registry assigns seqs
  ASSERT_OK(registry_->AppendAudit(first));
  ASSERT_OK(registry_->AppendAudit(second));
  ASSERT_OK(registry_->AppendAudit(third));

  ASSERT_OK_AND_ASSIGN(auto events, registry_->ListAudit(AuditFilter{}));
  ASSERT_EQ(events.size(), 3u);
  // Newest first by seq, not by time: the third append comes first.
  EXPECT_GT(events[0].seq, events[1].seq);
  EXPECT_GT(events[1].seq, events[2].seq);
  EXPECT_GT(events[2].seq, 0);
  const std::vector<AuditEvent> want = {third, second, first};
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(events[i].time, want[i].time);
    EXPECT_EQ(events[i].key_id, want[i].key_id);
    EXPECT_EQ(events[i].action, want[i].action);
    EXPECT_EQ(events[i].target, want[i].target);
    EXPECT_EQ(events[i].outcome, want[i].outcome);
    EXPECT_EQ(events[i].status, want[i].status);
    EXPECT_EQ(events[i].detail, want[i].detail);
  }
  EXPECT_NE(events[0].seq, 999);

  // A later append gets a higher seq still.
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0, "key_a", "key.revoke", "key_b")));
  ASSERT_OK_AND_ASSIGN(auto again, registry_->ListAudit(AuditFilter{}));
  ASSERT_EQ(again.size(), 4u);
  EXPECT_GT(again[0].seq, events[0].seq);
  EXPECT_EQ(again[0].action, "key.revoke");
}

TEST_P(RegistryConformanceTest, AuditFiltersEachAloneAndCombined) {
  // target names each event, so the lists below say which matched.
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0 + 0, "key_a", "feature_set.create", "e0")));
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0 + 10, "key_b", "feature_set.delete", "e1")));
  ASSERT_OK(registry_->AppendAudit(
      NewAudit(kT0 + 20, "key_a", "feature_set", "e2", "denied", 403)));
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0 + 30, "", "auth.denied", "e3", "denied", 401)));
  ASSERT_OK(registry_->AppendAudit(
      NewAudit(kT0 + 40, "key_a", "materialize", "e4", "failure", 500)));
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0 + 50, "key_b", "feature_setx.create", "e5")));

  auto list = [&](AuditFilter filter) -> std::vector<std::string> {
    auto events = registry_->ListAudit(filter);
    EXPECT_OK(events.status());
    return events.ok() ? Targets(*events) : std::vector<std::string>{"<error>"};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(list({}), (V{"e5", "e4", "e3", "e2", "e1", "e0"}));
  EXPECT_EQ(list({.since = kT0 + 20}), (V{"e5", "e4", "e3", "e2"}));  // inclusive
  EXPECT_EQ(list({.until = kT0 + 20}), (V{"e1", "e0"}));              // exclusive
  EXPECT_EQ(list({.since = kT0 + 10, .until = kT0 + 40}), (V{"e3", "e2", "e1"}));
  EXPECT_EQ(list({.key_id = "key_a"}), (V{"e4", "e2", "e0"}));
  EXPECT_EQ(list({.action = "feature_set.create"}), (V{"e0"}));  // exact
  EXPECT_EQ(list({.action = "feature_set"}), (V{"e2"}));         // exact, not a prefix
  // A prefix ends in '.': "feature_setx.create" and "feature_set" do not match.
  EXPECT_EQ(list({.action = "feature_set."}), (V{"e1", "e0"}));
  EXPECT_EQ(list({.action = "auth."}), (V{"e3"}));
  EXPECT_EQ(list({.target = "e3"}), (V{"e3"}));
  EXPECT_EQ(list({.outcome = "denied"}), (V{"e3", "e2"}));
  EXPECT_EQ(list({.limit = 2}), (V{"e5", "e4"}));
  EXPECT_EQ(list({.limit = 0}), V{});
  EXPECT_EQ(list({.key_id = "nobody"}), V{});
  // Combined: every condition holds.
  EXPECT_EQ(list({.since = kT0 + 10, .key_id = "key_a"}), (V{"e4", "e2"}));
  EXPECT_EQ(list({.key_id = "key_a", .action = "feature_set."}), (V{"e0"}));
  EXPECT_EQ(list({.key_id = "key_a", .outcome = "denied"}), (V{"e2"}));
  EXPECT_EQ(list({.since = kT0, .until = kT0 + 60, .key_id = "key_b",
                  .action = "feature_set.", .target = "e1", .outcome = "success", .limit = 5}),
            (V{"e1"}));
  EXPECT_EQ(list({.since = kT0 + 10, .key_id = "key_a", .limit = 1}), (V{"e4"}));
}

TEST_P(RegistryConformanceTest, AppendAuditRefusesIncompleteEvents) {
  Status status = registry_->AppendAudit(NewAudit(kT0, "k", "", "t"));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "action");
  status = registry_->AppendAudit(NewAudit(kT0, "k", "materialize", "t", ""));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "outcome");
  status = registry_->AppendAudit(NewAudit(kT0, "k", "materialize", "t", "success", -1));
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "status");
  ASSERT_OK_AND_ASSIGN(auto events, registry_->ListAudit(AuditFilter{}));
  EXPECT_TRUE(events.empty());
}

TEST_P(RegistryConformanceTest, ConcurrentAuditAppendsAllLandWithDistinctSeqs) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  // Each thread its own connection where the backend shares a store between
  // connections (several servers), else the one registry from every thread.
  std::vector<std::unique_ptr<Registry>> connections(kThreads);
  if (GetParam().shared_between_connections) {
    for (auto& connection : connections) {
      ASSERT_OK_AND_ASSIGN(connection, OpenAnother());
    }
  }
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Registry* registry = connections[t] ? connections[t].get() : registry_.get();
      for (int i = 0; i < kPerThread && results[t].ok(); ++i) {
        results[t] = registry->AppendAudit(NewAudit(kT0 + i, "key_" + std::to_string(t),
                                                    "materialize", std::to_string(i)));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) ASSERT_OK(results[t]);
  for (auto& connection : connections) {
    if (connection) ASSERT_OK(connection->Close());
  }

  ASSERT_OK_AND_ASSIGN(auto events, registry_->ListAudit(AuditFilter{.limit = 10'000}));
  ASSERT_EQ(events.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> seqs;
  for (size_t i = 0; i < events.size(); ++i) {
    seqs.insert(events[i].seq);
    if (i > 0) {
      EXPECT_LT(events[i].seq, events[i - 1].seq);
    }
  }
  EXPECT_EQ(seqs.size(), events.size());
  // Each thread's own appends are in its order: newest (highest i) first.
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(auto mine, registry_->ListAudit(AuditFilter{
                                        .key_id = "key_" + std::to_string(t), .limit = 1000}));
    ASSERT_EQ(mine.size(), static_cast<size_t>(kPerThread));
    EXPECT_EQ(mine.front().target, std::to_string(kPerThread - 1));
    EXPECT_EQ(mine.back().target, "0");
  }
}

TEST_P(RegistryConformanceTest, FeatureStatisticsRoundTripFilterAndReplace) {
  ASSERT_OK(registry_->PutFeatureStatistics({
      NewStatistics("job-2", "spend", "fs-b", kT0 + 20),
      NewStatistics("job-1", "age", "fs-a", kT0 + 10),
      NewStatistics("job-1", "visits", "fs-a", kT0 + 10),
  }));
  ASSERT_OK(registry_->PutFeatureStatistics({NewStatistics("job-3", "age", "fs-a", kT0 + 30)}));
  ASSERT_OK(registry_->PutFeatureStatistics({}));  // nothing to store

  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureStatistics(0, ""));
  using V = std::vector<std::string>;
  // Oldest first, then by job id, then by feature.
  EXPECT_EQ(StatisticsKeys(all), (V{"job-1/age", "job-1/visits", "job-2/spend", "job-3/age"}));
  ASSERT_EQ(all.size(), 4u);
  FeatureStatisticsRecord want = NewStatistics("job-2", "spend", "fs-b", kT0 + 20);
  EXPECT_EQ(all[2].job_id, want.job_id);
  EXPECT_EQ(all[2].feature, want.feature);
  EXPECT_EQ(all[2].feature_set_id, want.feature_set_id);
  EXPECT_EQ(all[2].feature_set_name, want.feature_set_name);
  EXPECT_EQ(all[2].computed_at, want.computed_at);
  EXPECT_EQ(all[2].body, want.body);  // byte for byte ("1e3" stays)

  ASSERT_OK_AND_ASSIGN(auto since, registry_->ListFeatureStatistics(kT0 + 20, ""));
  EXPECT_EQ(StatisticsKeys(since), (V{"job-2/spend", "job-3/age"}));  // inclusive
  ASSERT_OK_AND_ASSIGN(auto of_a, registry_->ListFeatureStatistics(0, "fs-a"));
  EXPECT_EQ(StatisticsKeys(of_a), (V{"job-1/age", "job-1/visits", "job-3/age"}));
  ASSERT_OK_AND_ASSIGN(auto of_a_since, registry_->ListFeatureStatistics(kT0 + 11, "fs-a"));
  EXPECT_EQ(StatisticsKeys(of_a_since), (V{"job-3/age"}));
  ASSERT_OK_AND_ASSIGN(auto of_none, registry_->ListFeatureStatistics(0, "fs-zzz"));
  EXPECT_TRUE(of_none.empty());

  // The same (job, feature) again replaces the record.
  FeatureStatisticsRecord redone = NewStatistics("job-1", "age", "fs-a", kT0 + 40);
  redone.body = "ciphertext:abc";
  ASSERT_OK(registry_->PutFeatureStatistics({redone}));
  ASSERT_OK_AND_ASSIGN(auto after, registry_->ListFeatureStatistics(0, "fs-a"));
  EXPECT_EQ(StatisticsKeys(after), (V{"job-1/visits", "job-3/age", "job-1/age"}));
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[2].body, "ciphertext:abc");
  EXPECT_EQ(after[2].computed_at, kT0 + 40);
}

TEST_P(RegistryConformanceTest, PutFeatureStatisticsRefusesIncompleteRecordsAndWritesNone) {
  FeatureStatisticsRecord no_feature = NewStatistics("job-1", "", "fs-a", kT0);
  Status status = registry_->PutFeatureStatistics(
      {NewStatistics("job-1", "age", "fs-a", kT0), no_feature});
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "feature");
  status = registry_->PutFeatureStatistics({NewStatistics("", "age", "fs-a", kT0)});
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "job_id");
  status = registry_->PutFeatureStatistics({NewStatistics("job-1", "age", "", kT0)});
  EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
  EXPECT_EQ(FieldOf(status), "feature_set_id");
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListFeatureStatistics(0, ""));
  EXPECT_TRUE(all.empty());
}

TEST_P(RegistryConformanceTest, UsageAddsUpAndListsInOrderSinceADay) {
  ASSERT_OK(registry_->AddUsage({
      NewUsage("2024-03-02", "key_a", "user_profile", "", 1, 3, 2),
      NewUsage("2024-03-02", "key_a", "user_profile", "age", 1, 3, 0),
      NewUsage("2024-03-01", "", "user_profile", "", 2, 2, 2),
      // The same row twice in one batch adds up too.
      NewUsage("2024-03-02", "key_a", "user_profile", "", 1, 1, 1),
  }));
  ASSERT_OK(registry_->AddUsage({
      NewUsage("2024-03-02", "key_a", "user_profile", "", 5, 10, 7),
      NewUsage("2024-03-03", "key_b", "merchant", "", 1, 1, 0),
  }));
  ASSERT_OK(registry_->AddUsage({}));  // nothing to add

  using V = std::vector<std::string>;
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListUsage(""));
  EXPECT_EQ(UsageRows(all), (V{
                                "2024-03-01||user_profile|=2/2/2",
                                "2024-03-02|key_a|user_profile|=7/14/10",
                                "2024-03-02|key_a|user_profile|age=1/3/0",
                                "2024-03-03|key_b|merchant|=1/1/0",
                            }));
  ASSERT_OK_AND_ASSIGN(auto since, registry_->ListUsage("2024-03-02"));  // inclusive
  EXPECT_EQ(UsageRows(since), (V{
                                  "2024-03-02|key_a|user_profile|=7/14/10",
                                  "2024-03-02|key_a|user_profile|age=1/3/0",
                                  "2024-03-03|key_b|merchant|=1/1/0",
                              }));
  ASSERT_OK_AND_ASSIGN(auto none, registry_->ListUsage("2024-04-01"));
  EXPECT_TRUE(none.empty());
}

TEST_P(RegistryConformanceTest, AddUsageRefusesBadCountsAndAddsNoneOfTheBatch) {
  UsageCount good = NewUsage("2024-03-02", "key_a", "user_profile", "", 1, 1, 1);
  struct Case {
    UsageCount count;
    std::string field;
  };
  std::vector<Case> cases = {
      {NewUsage("", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2024-3-02", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2024-03-02T00", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2024-13-01", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2023-02-29", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2024-02-30", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("abcd-ef-gh", "k", "fs", "", 1, 1, 1), "day"},
      {NewUsage("2024-03-02", "k", "", "", 1, 1, 1), "feature_set"},
      {NewUsage("2024-03-02", "k", "fs", "", -1, 1, 1), "requests"},
      {NewUsage("2024-03-02", "k", "fs", "", 1, -1, 1), "entities"},
      {NewUsage("2024-03-02", "k", "fs", "", 1, 1, -1), "entities_found"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.count.day + " " + c.field);
    Status status = registry_->AddUsage({good, c.count});
    EXPECT_ERROR(ErrorCode::kInvalidArgument, status);
    EXPECT_EQ(FieldOf(status), c.field);
  }
  ASSERT_OK(registry_->AddUsage({NewUsage("2024-02-29", "k", "fs", "", 1, 1, 1)}));  // leap day
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListUsage(""));
  EXPECT_EQ(UsageRows(all), std::vector<std::string>{"2024-02-29|k|fs|=1/1/1"});

  for (std::string_view bad : {"yesterday", "2024-03", "2024-03-02 ", "2024-00-10"}) {
    auto listed = registry_->ListUsage(bad);
    EXPECT_ERROR(ErrorCode::kInvalidArgument, listed);
    EXPECT_EQ(FieldOf(listed.status()), "since_day");
  }
}

TEST_P(RegistryConformanceTest, ConcurrentAddUsageSumsExactly) {
  constexpr int kThreads = 8;
  constexpr int kBatches = 25;
  std::vector<std::unique_ptr<Registry>> connections(kThreads);
  if (GetParam().shared_between_connections) {
    for (auto& connection : connections) {
      ASSERT_OK_AND_ASSIGN(connection, OpenAnother());
    }
  }
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Registry* registry = connections[t] ? connections[t].get() : registry_.get();
      for (int i = 0; i < kBatches && results[t].ok(); ++i) {
        // Every thread hits the same rows, listed in different orders.
        std::vector<UsageCount> batch = {
            NewUsage("2024-03-02", "key_a", "user_profile", "", 1, 2, 1),
            NewUsage("2024-03-02", "key_a", "user_profile", "age", 1, 2, 0),
            NewUsage("2024-03-02", "key_b", "user_profile", "", 1, t, 0),
        };
        if (t % 2 == 1) std::reverse(batch.begin(), batch.end());
        results[t] = registry->AddUsage(batch);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) ASSERT_OK(results[t]);
  for (auto& connection : connections) {
    if (connection) ASSERT_OK(connection->Close());
  }
  constexpr int64_t n = kThreads * kBatches;
  int64_t key_b_entities = kBatches * (kThreads * (kThreads - 1) / 2);
  ASSERT_OK_AND_ASSIGN(auto all, registry_->ListUsage("2024-03-02"));
  EXPECT_EQ(UsageRows(all),
            (std::vector<std::string>{
                "2024-03-02|key_a|user_profile|=" + std::to_string(n) + "/" +
                    std::to_string(2 * n) + "/" + std::to_string(n),
                "2024-03-02|key_a|user_profile|age=" + std::to_string(n) + "/" +
                    std::to_string(2 * n) + "/0",
                "2024-03-02|key_b|user_profile|=" + std::to_string(n) + "/" +
                    std::to_string(key_b_entities) + "/0",
            }));
}

TEST_P(RegistryConformanceTest, OperationsRecordsDoNotBumpTheChangeSequence) {
  ASSERT_OK(CreateFeatureSet(NewFeatureSet("user_profile")));
  ASSERT_OK_AND_ASSIGN(int64_t before, registry_->ChangeSequence());
  ASSERT_OK(registry_->InsertApiKey(NewApiKey("key_0000000000000001", kT0)));
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0, "key_a", "materialize", "user_profile")));
  ASSERT_OK(registry_->PutFeatureStatistics({NewStatistics("job-1", "age", "fs-a", kT0)}));
  ASSERT_OK(registry_->AddUsage({NewUsage("2024-03-02", "", "user_profile", "", 1, 1, 1)}));
  ASSERT_OK_AND_ASSIGN(int64_t after, registry_->ChangeSequence());
  EXPECT_EQ(after, before);
}

TEST_P(RegistryConformanceTest, OperationsRecordsSurviveReopen) {
  if (!GetParam().persistent) GTEST_SKIP() << "this backend's stores do not outlive a connection";
  ApiKeyRecord key = NewApiKey("key_0000000000000001", kT0);
  ASSERT_OK(registry_->InsertApiKey(key));
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0, "key_a", "materialize", "user_profile")));
  ASSERT_OK(registry_->PutFeatureStatistics({NewStatistics("job-1", "age", "fs-a", kT0)}));
  ASSERT_OK(registry_->AddUsage({NewUsage("2024-03-02", "", "user_profile", "", 1, 1, 1)}));
  ASSERT_OK(registry_->Close());

  ASSERT_OK_AND_ASSIGN(registry_, OpenAnother());
  ASSERT_OK(registry_->Migrate());
  ASSERT_OK_AND_ASSIGN(auto keys, ListKeys(registry_.get()));
  ASSERT_EQ(keys.size(), 1u);
  ExpectSameKey(keys[0], key);
  ASSERT_OK_AND_ASSIGN(auto events, registry_->ListAudit(AuditFilter{}));
  EXPECT_EQ(Targets(events), std::vector<std::string>{"user_profile"});
  ASSERT_OK_AND_ASSIGN(auto stats, registry_->ListFeatureStatistics(0, ""));
  EXPECT_EQ(StatisticsKeys(stats), std::vector<std::string>{"job-1/age"});
  ASSERT_OK_AND_ASSIGN(auto usage, registry_->ListUsage(""));
  EXPECT_EQ(UsageRows(usage), std::vector<std::string>{"2024-03-02||user_profile|=1/1/1"});
  // Appends after reopening continue the sequence.
  ASSERT_OK(registry_->AppendAudit(NewAudit(kT0, "key_a", "materialize", "again")));
  ASSERT_OK_AND_ASSIGN(auto more, registry_->ListAudit(AuditFilter{}));
  ASSERT_EQ(more.size(), 2u);
  EXPECT_GT(more[0].seq, more[1].seq);
}

TEST_P(RegistryConformanceTest, OperationsCallsAfterCloseAreUnavailable) {
  ASSERT_OK(registry_->Close());
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->InsertApiKey(NewApiKey("key_1", kT0)));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->RevokeApiKey("key_1", kT0));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListApiKeys());
  EXPECT_ERROR(ErrorCode::kUnavailable,
               registry_->AppendAudit(NewAudit(kT0, "k", "materialize", "t")));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListAudit(AuditFilter{}));
  EXPECT_ERROR(ErrorCode::kUnavailable,
               registry_->PutFeatureStatistics({NewStatistics("j", "f", "fs", kT0)}));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListFeatureStatistics(0, ""));
  EXPECT_ERROR(ErrorCode::kUnavailable,
               registry_->AddUsage({NewUsage("2024-03-02", "", "fs", "", 1, 1, 1)}));
  EXPECT_ERROR(ErrorCode::kUnavailable, registry_->ListUsage(""));
}


}  // namespace fstore
