// What the conformance suite cannot say about SQLite: its file format, its
// locking between processes, and its migrations table.

#include "fstore/registry/sqlite/sqlite_registry.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <boost/json/serialize.hpp>

#include "fstore/core/ids.h"
#include "fstore/registry/codec.h"
#include "fstore/registry/sqlite/migrations.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

class SqliteRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fstore-sqlite-registry-" + NewUuid());
    fs::create_directories(dir_);
    path_ = (dir_ / "registry.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  /// Runs a query on a separate raw connection; the first column of the first row.
  std::string RawQuery(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    std::string out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) out = reinterpret_cast<const char*>(text);
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return out;
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(SqliteRegistryTest, MigrationsAreNumberedInOrder) {
  auto migrations = SqliteMigrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i) + 1);
    EXPECT_FALSE(migrations[i].sql.empty());
  }
}

TEST_F(SqliteRegistryTest, UsesWalAndRecordsEachMigrationOnce) {
  ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
  ASSERT_OK_AND_ASSIGN(int version, registry->Migrate());
  ASSERT_OK(registry->Migrate());
  EXPECT_EQ(version, SqliteMigrations().back().version);
  EXPECT_EQ(RawQuery("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(SqliteMigrations().size()));
  EXPECT_EQ(RawQuery("SELECT applied_at LIKE '____-__-__T__:__:__%Z' FROM schema_migrations"),
            "1");
  ASSERT_OK(registry->Close());
}

TEST_F(SqliteRegistryTest, RegistriesOnOneFileMigratingAtOnceAgree) {
  constexpr int kRegistries = 4;
  for (int round = 0; round < 3; ++round) {
    std::string path = (dir_ / ("race-" + std::to_string(round) + ".db")).string();
    std::vector<std::unique_ptr<SqliteRegistry>> registries;
    for (int i = 0; i < kRegistries; ++i) {
      ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path));
      registries.push_back(std::move(registry));
    }
    std::vector<Result<int>> results(kRegistries, Result<int>(0));
    std::vector<std::thread> threads;
    for (int i = 0; i < kRegistries; ++i) {
      threads.emplace_back([&, i] { results[i] = registries[i]->Migrate(); });
    }
    for (auto& thread : threads) thread.join();
    for (int i = 0; i < kRegistries; ++i) {
      ASSERT_OK(results[i].status());
      EXPECT_EQ(*results[i], SqliteMigrations().back().version);
      ASSERT_OK_AND_ASSIGN(int version, registries[i]->SchemaVersion());
      EXPECT_EQ(version, SqliteMigrations().back().version);
    }
    path_ = path;
    EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM schema_migrations"),
              std::to_string(SqliteMigrations().size()));
    ASSERT_OK_AND_ASSIGN(int64_t seq, registries[0]->ChangeSequence());
    EXPECT_EQ(seq, 0);
  }
}

TEST_F(SqliteRegistryTest, ANewerSchemaIsRefused) {
  {
    ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
    ASSERT_OK(registry->Migrate());
  }
  RawQuery("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x') RETURNING 1");
  ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
  auto migrated = registry->Migrate();
  ASSERT_FALSE(migrated.ok());
  EXPECT_NE(ErrorMessageOf(migrated.status()).find("999"), std::string::npos)
      << migrated.status().ToString();
}

TEST_F(SqliteRegistryTest, AFileThatIsNotADatabaseIsAnError) {
  std::ofstream(path_) << "this is not a SQLite database, just some text that is long enough\n";
  auto registry = SqliteRegistry::Open(path_);
  if (registry.ok()) {
    EXPECT_FALSE((*registry)->Migrate().ok());
  } else {
    SUCCEED() << registry.status().ToString();
  }
}

TEST_F(SqliteRegistryTest, AMissingDirectoryIsUnavailable) {
  auto registry = SqliteRegistry::Open((dir_ / "missing" / "registry.db").string());
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(ErrorCodeOf(registry.status()), ErrorCode::kUnavailable);
}

TEST_F(SqliteRegistryTest, ReadersAreNotBlockedByAnotherConnectionsWriteLock) {
  ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
  ASSERT_OK(registry->Migrate());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_OK_AND_ASSIGN(auto sets, registry->ListFeatureSets(true));  // WAL: readers go on
  EXPECT_TRUE(sets.empty());
  ASSERT_OK(registry->Ping());
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
}

// A database as fstore left it at schema version 1 (before jobs): migration
// 1's script and its schema_migrations row, with data written the way v1 did.
TEST_F(SqliteRegistryTest, AVersion1DatabaseMigratesWithItsDataIntact) {
  constexpr TimestampMicros kT0 = 1'700'000'000'000'000;
  Entity user;
  user.id = NewUuid();
  user.name = "user";
  user.join_keys = {"user_id"};
  user.created_at = user.updated_at = kT0;
  FeatureSet fs;
  fs.id = NewUuid();
  fs.name = "user_profile";
  fs.entities = {"user"};
  fs.created_at = fs.updated_at = kT0;
  FeatureSet fs_v2 = fs;
  fs_v2.version = 2;
  fs_v2.description = "second version";
  fs_v2.updated_at = kT0 + 1000;
  Feature age;
  age.id = NewUuid();
  age.name = "age";
  age.feature_set_id = fs.id;
  age.data_type = "int";
  age.created_at = age.updated_at = kT0;
  auto body = [](const auto& definition) { return boost::json::serialize(ToJson(definition)); };
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    auto exec = [db](const std::string& sql, const std::vector<std::string>& args = {}) {
      sqlite3_stmt* stmt = nullptr;
      const char* tail = sql.c_str();
      // A script: run each statement in turn (parameters bind in the first).
      while (*tail != '\0') {
        ASSERT_EQ(sqlite3_prepare_v2(db, tail, -1, &stmt, &tail), SQLITE_OK) << sqlite3_errmsg(db);
        if (stmt == nullptr) break;  // trailing whitespace
        for (size_t i = 0; i < args.size() && i < static_cast<size_t>(
                                                     sqlite3_bind_parameter_count(stmt));
             ++i) {
          sqlite3_bind_text(stmt, static_cast<int>(i + 1), args[i].c_str(), -1, SQLITE_TRANSIENT);
        }
        EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
        sqlite3_finalize(stmt);
      }
    };
    ASSERT_EQ(SqliteMigrations().front().version, 1);
    exec("BEGIN");
    exec(std::string(SqliteMigrations().front().sql));
    exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
    exec("INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2024-01-01T00:00:00Z')");
    exec("INSERT INTO entities (id, name, version, body, created_at, updated_at) "
         "VALUES (?1, 'user', 1, ?2, 0, 0)",
         {user.id, body(user)});
    exec("INSERT INTO feature_sets (id, name, version, body, created_at, updated_at) "
         "VALUES (?1, 'user_profile', 2, ?2, 0, 0)",
         {fs.id, body(fs_v2)});
    exec("INSERT INTO feature_set_versions (id, version, body, created_at) VALUES (?1, 1, ?2, 0)",
         {fs.id, body(fs)});
    exec("INSERT INTO feature_set_versions (id, version, body, created_at) VALUES (?1, 2, ?2, 0)",
         {fs.id, body(fs_v2)});
    exec("INSERT INTO features (id, feature_set_id, name, version, body, created_at, updated_at) "
         "VALUES (?1, ?2, 'age', 1, ?3, 0, 0)",
         {age.id, fs.id, body(age)});
    exec("INSERT INTO feature_versions (id, version, body, created_at) VALUES (?1, 1, ?2, 0)",
         {age.id, body(age)});
    exec("UPDATE registry_state SET change_seq = 3");
    exec("COMMIT");
    sqlite3_close(db);
  }
  ASSERT_FALSE(::testing::Test::HasFailure());

  ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
  ASSERT_OK_AND_ASSIGN(int before, registry->SchemaVersion());
  EXPECT_EQ(before, 1);
  ASSERT_OK_AND_ASSIGN(int migrated, registry->Migrate());
  EXPECT_EQ(migrated, SqliteMigrations().back().version);
  EXPECT_GE(migrated, 2);
  ASSERT_OK_AND_ASSIGN(int after, registry->SchemaVersion());
  EXPECT_EQ(after, migrated);
  EXPECT_EQ(RawQuery("SELECT COUNT(*) FROM schema_migrations WHERE version IN (1, 2)"), "2");
  EXPECT_EQ(RawQuery("SELECT applied_at FROM schema_migrations WHERE version = 1"),
            "2024-01-01T00:00:00Z");

  // The v1 data, untouched.
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry->ChangeSequence());
  EXPECT_EQ(seq, 3);
  ASSERT_OK_AND_ASSIGN(auto found_user, registry->FindEntity("user"));
  ASSERT_TRUE(found_user.has_value());
  EXPECT_EQ(body(*found_user), body(user));
  ASSERT_OK_AND_ASSIGN(auto found_fs, registry->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(found_fs.has_value());
  EXPECT_EQ(body(*found_fs), body(fs_v2));
  ASSERT_OK_AND_ASSIGN(auto history, registry->FeatureSetHistory(fs.id));
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(body(history[0]), body(fs));
  ASSERT_OK_AND_ASSIGN(auto found_age, registry->FindFeature(age.id, false));
  ASSERT_TRUE(found_age.has_value());
  EXPECT_EQ(body(*found_age), body(age));

  // And the v2 tables work.
  ASSERT_OK_AND_ASSIGN(auto no_watermark, registry->Watermark(fs.id));
  EXPECT_FALSE(no_watermark.has_value());
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = fs.id;
  job.feature_set_name = fs.name;
  job.status = JobStatus::kSucceeded;
  job.created_at = kT0;
  ASSERT_OK(registry->CommitJobAndWatermark(job, kT0));
  ASSERT_OK_AND_ASSIGN(auto jobs, registry->ListJobs(fs.id, 10));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(body(jobs[0]), body(job));
  ASSERT_OK_AND_ASSIGN(auto watermark, registry->Watermark(fs.id));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0));
  ASSERT_OK(registry->Close());
}

// A database as fstore left it at schema version 2 (before keys, audit,
// statistics and usage): migrations 1 and 2 applied by their own scripts.
TEST_F(SqliteRegistryTest, AVersion2DatabaseMigratesUpWithItsDataIntact) {
  constexpr TimestampMicros kT0 = 1'700'000'000'000'000;
  ASSERT_GE(SqliteMigrations().size(), 4u);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    std::string script = "BEGIN;\n" + std::string(SqliteMigrations()[0].sql) + "\n" +
                         std::string(SqliteMigrations()[1].sql) +
                         "\nCREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                         "applied_at TEXT NOT NULL);\n"
                         "INSERT INTO schema_migrations VALUES (1, '2024-01-01T00:00:00Z'), "
                         "(2, '2024-02-01T00:00:00Z');\nCOMMIT;";
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, script.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  ASSERT_FALSE(::testing::Test::HasFailure());

  ASSERT_OK_AND_ASSIGN(auto registry, SqliteRegistry::Open(path_));
  ASSERT_OK_AND_ASSIGN(int before, registry->SchemaVersion());
  EXPECT_EQ(before, 2);
  // Data written at version 2.
  FeatureSet fs;
  fs.id = NewUuid();
  fs.name = "user_profile";
  fs.created_at = fs.updated_at = kT0;
  RegistryWrite write;
  write.feature_sets.push_back({fs, 0});
  ASSERT_OK(registry->Commit(write));
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = fs.id;
  job.feature_set_name = fs.name;
  job.status = JobStatus::kSucceeded;
  job.created_at = kT0;
  ASSERT_OK(registry->CommitJobAndWatermark(job, kT0));

  ASSERT_OK_AND_ASSIGN(int migrated, registry->Migrate());
  EXPECT_EQ(migrated, 4);
  ASSERT_OK_AND_ASSIGN(int after, registry->SchemaVersion());
  EXPECT_EQ(after, 4);
  EXPECT_EQ(RawQuery("SELECT group_concat(version, ',') FROM "
                     "(SELECT version FROM schema_migrations ORDER BY version)"),
            "1,2,3,4");
  EXPECT_EQ(RawQuery("SELECT applied_at FROM schema_migrations WHERE version = 2"),
            "2024-02-01T00:00:00Z");
  ASSERT_OK_AND_ASSIGN(auto found, registry->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, fs.id);
  ASSERT_OK_AND_ASSIGN(auto found_job, registry->FindJob(job.id));
  ASSERT_TRUE(found_job.has_value());
  ASSERT_OK_AND_ASSIGN(auto watermark, registry->Watermark(fs.id));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0));
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry->ChangeSequence());
  EXPECT_EQ(seq, 1);

  // And the new tables work.
  ApiKeyRecord key{.id = "key_0000000000000001", .name = "ci", .role = "admin",
                   .feature_sets = {"user_profile"}, .salt = "00", .hash = "ff",
                   .created_at = kT0};
  ASSERT_OK(registry->InsertApiKey(key));
  ASSERT_OK(registry->AppendAudit(AuditEvent{.time = kT0, .key_id = key.id,
                                             .action = "key.create", .target = key.id,
                                             .outcome = "success", .status = 201}));
  ASSERT_OK(registry->PutFeatureStatistics({FeatureStatisticsRecord{
      .job_id = job.id, .feature_set_id = fs.id, .feature_set_name = fs.name,
      .feature = "age", .computed_at = kT0, .body = "{}"}}));
  ASSERT_OK(registry->AddUsage({UsageCount{.day = "2024-03-02", .key_id = key.id,
                                           .feature_set = fs.name, .requests = 1}}));
  ASSERT_OK_AND_ASSIGN(auto listing, registry->ListApiKeys());
  const auto& keys = listing.keys;
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].feature_sets, std::vector<std::string>{"user_profile"});
  ASSERT_OK_AND_ASSIGN(auto events, registry->ListAudit(AuditFilter{}));
  EXPECT_EQ(events.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto stats, registry->ListFeatureStatistics(0, fs.id));
  EXPECT_EQ(stats.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto usage, registry->ListUsage("2024-03-01"));
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 1);
  ASSERT_OK(registry->Close());
}

// Two registries on one file (two processes, as far as SQLite can tell)
// adding to the same usage rows at once: nothing is lost.
TEST_F(SqliteRegistryTest, TwoRegistriesOnOneFileAddingUsageSumExactly) {
  ASSERT_OK_AND_ASSIGN(auto a, SqliteRegistry::Open(path_));
  ASSERT_OK_AND_ASSIGN(auto b, SqliteRegistry::Open(path_));
  ASSERT_OK(a->Migrate());
  ASSERT_OK(b->Migrate());
  constexpr int kRounds = 50;
  std::vector<Status> results(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      SqliteRegistry* registry = t == 0 ? a.get() : b.get();
      for (int i = 0; i < kRounds && results[t].ok(); ++i) {
        results[t] = registry->AddUsage({UsageCount{.day = "2024-03-02", .key_id = "k",
                                                    .feature_set = "fs", .requests = 1,
                                                    .entities = 2, .entities_found = 1}});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);
  ASSERT_OK_AND_ASSIGN(auto usage, a->ListUsage(""));
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 2 * kRounds);
  EXPECT_EQ(usage[0].entities, 4 * kRounds);
  EXPECT_EQ(usage[0].entities_found, 2 * kRounds);
}

}  // namespace
}  // namespace fstore
