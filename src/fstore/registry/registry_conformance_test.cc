// The Registry conformance suite (registry_conformance.h), and its SQLite
// instantiations: a file database and a private in-memory one.

#include "fstore/registry/registry_conformance.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
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
  std::string uri = "sqlite://" + (dir / "registry.db").string();
  return RegistryStore{
      .open = [uri] { return RegistryFromUri(uri); },
      .drop = [dir] {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }};
}

Result<RegistryStore> NewSqliteMemoryStore() {
  return RegistryStore{.open = [] { return RegistryFromUri("sqlite::memory:"); }, .drop = {}};
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

}  // namespace fstore
