// What the conformance suite cannot say about SQLite: its file format, its
// locking between processes, and its migrations table.

#include "fstore/registry/sqlite/sqlite_registry.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "fstore/core/ids.h"
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

}  // namespace
}  // namespace fstore
