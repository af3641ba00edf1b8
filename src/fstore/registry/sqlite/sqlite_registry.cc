#include "fstore/registry/sqlite/sqlite_registry.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>

#include <boost/json/serialize.hpp>

#include "fstore/registry/codec.h"
#include "fstore/registry/internal/operation_records.h"
#include "fstore/registry/internal/stored_body.h"
#include "fstore/registry/sqlite/migrations.h"

namespace fstore {
namespace {

// ---------------------------------------------------------------------------
// Errors

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Maps a SQLite result code to an fstore error. Constraint violations that
// Commit() did not catch with its own checks (it checks names, ids and
// references first, to say which object clashed) still map to the client
// error they mean.
Status SqliteError(sqlite3* db, int rc, std::string_view context) {
  std::string message = "registry database: " + std::string(context) + ": " +
                        (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
    case SQLITE_NOLFS:
      return Unavailable(std::move(message));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        bool on_name = message.find(".name") != std::string::npos;
        return AlreadyExists(on_name ? "name" : "id", std::move(message));
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return InvalidArgument("feature_set_id", std::move(message));
      }
      return Internal(std::move(message));
    default:
      return Internal(std::move(message));
  }
}

Status Exec(sqlite3* db, const char* sql, std::string_view context) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, context);
  return Status::OK();
}

// ---------------------------------------------------------------------------
// A prepared statement, finalized on destruction.

class Statement {
 public:
  static Result<Statement> Prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, "preparing a statement");
    return Statement(db, stmt);
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  /// Binds the arguments to parameters ?1, ?2, ...
  template <typename... Args>
  Status Bind(const Args&... args) {
    [[maybe_unused]] int index = 0;
    Status status;
    ((status.ok() ? (status = BindOne(++index, args), 0) : 0), ...);
    return status;
  }

  /// Runs to the next row: true if there is one, false when done.
  Result<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, "running a statement");
  }

  /// Runs a statement that returns no rows.
  Status Run() {
    ARROW_ASSIGN_OR_RAISE(bool row, Step());
    if (row) return Internal("registry database: a write statement returned rows");
    return Status::OK();
  }

  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  Status Check(int rc) {
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "binding a parameter");
    return Status::OK();
  }
  Status BindOne(int index, std::string_view value) {
    return Check(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                                   SQLITE_TRANSIENT));
  }
  Status BindOne(int index, const std::string& value) {
    return BindOne(index, std::string_view(value));
  }
  Status BindOne(int index, int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, index, value));
  }
  Status BindOne(int index, int value) { return Check(sqlite3_bind_int(stmt_, index, value)); }
  Status BindOne(int index, bool value) { return BindOne(index, value ? 1 : 0); }
  Status BindOne(int index, const std::optional<int64_t>& value) {
    if (!value) return Check(sqlite3_bind_null(stmt_, index));
    return BindOne(index, *value);
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

template <typename... Args>
Status Run(sqlite3* db, std::string_view sql, const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(Statement stmt, Statement::Prepare(db, sql));
  ARROW_RETURN_NOT_OK(stmt.Bind(args...));
  return stmt.Run();
}

/// The first column of the first row as an integer, if there is a row.
template <typename... Args>
Result<std::optional<int64_t>> QueryInt(sqlite3* db, std::string_view sql, const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(Statement stmt, Statement::Prepare(db, sql));
  ARROW_RETURN_NOT_OK(stmt.Bind(args...));
  ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
  if (!row) return std::nullopt;
  return stmt.Int(0);
}

/// The first column of the first row as text, if there is a row.
template <typename... Args>
Result<std::optional<std::string>> QueryText(sqlite3* db, std::string_view sql,
                                             const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(Statement stmt, Statement::Prepare(db, sql));
  ARROW_RETURN_NOT_OK(stmt.Bind(args...));
  ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
  if (!row) return std::nullopt;
  return stmt.Text(0);
}

// ---------------------------------------------------------------------------
// A write transaction: BEGIN IMMEDIATE takes the write lock up front (waiting
// up to the busy timeout), so a read inside it cannot go stale before the
// write. Rolled back on destruction unless committed.

class WriteTransaction {
 public:
  static Result<WriteTransaction> Begin(sqlite3* db) {
    ARROW_RETURN_NOT_OK(Exec(db, "BEGIN IMMEDIATE", "starting a write transaction"));
    return WriteTransaction(db);
  }
  WriteTransaction(WriteTransaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  WriteTransaction& operator=(WriteTransaction&&) = delete;
  ~WriteTransaction() {
    if (db_ != nullptr) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  Status Commit() {
    Status status = Exec(db_, "COMMIT", "committing");
    if (status.ok()) db_ = nullptr;  // else the destructor rolls back
    return status;
  }

 private:
  explicit WriteTransaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// ---------------------------------------------------------------------------
// Stored bodies (registry/internal/stored_body.h)

using registry_internal::Body;
using registry_internal::DecodeBody;

using registry_internal::ApiKeyIdTaken;
using registry_internal::CheckApiKey;
using registry_internal::CheckAuditEvent;
using registry_internal::CheckSinceDay;
using registry_internal::CheckStatistics;
using registry_internal::FeatureSetsColumn;
using registry_internal::MergeUsage;
using registry_internal::ParseFeatureSetsColumn;

/// Decodes the `body` column (the first) of every row.
template <typename T, typename... Args>
Result<std::vector<T>> QueryDefinitions(sqlite3* db, std::string_view kind, std::string_view sql,
                                        const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(Statement stmt, Statement::Prepare(db, sql));
  ARROW_RETURN_NOT_OK(stmt.Bind(args...));
  std::vector<T> out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
    if (!row) break;
    ARROW_ASSIGN_OR_RAISE(T value, DecodeBody<T>(stmt.Text(0), kind));
    out.push_back(std::move(value));
  }
  return out;
}

template <typename T, typename... Args>
Result<std::optional<T>> QueryDefinition(sqlite3* db, std::string_view kind, std::string_view sql,
                                         const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(std::vector<T> found, QueryDefinitions<T>(db, kind, sql, args...));
  if (found.empty()) return std::nullopt;
  return std::move(found.front());
}

// ---------------------------------------------------------------------------
// Commit steps, each inside the commit's transaction.

Status InsertEntity(sqlite3* db, const Entity& entity) {
  if (entity.id.empty()) {
    return InvalidArgument("id", "entity " + Quoted(entity.name) + " has no id");
  }
  ARROW_ASSIGN_OR_RAISE(auto by_name,
                        QueryInt(db, "SELECT 1 FROM entities WHERE name = ?1", entity.name));
  if (by_name) {
    return AlreadyExists("name", "entity " + Quoted(entity.name) + " already exists");
  }
  ARROW_ASSIGN_OR_RAISE(auto by_id, QueryInt(db, "SELECT 1 FROM entities WHERE id = ?1", entity.id));
  if (by_id) {
    return AlreadyExists("id", "an entity with id " + Quoted(entity.id) + " already exists");
  }
  return Run(db,
             "INSERT INTO entities (id, name, version, body, created_at, updated_at) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
             entity.id, entity.name, entity.version, Body(entity), entity.created_at,
             entity.updated_at);
}

/// The checks every versioned put shares: ids, version arithmetic, and the
/// optimistic concurrency check against the stored version. `noun` names the
/// object in messages ("feature set 'user_profile'").
Status CheckVersion(sqlite3* db, std::string_view table, const std::string& noun,
                    const std::string& id, int64_t version, int64_t expected_version) {
  if (id.empty()) return InvalidArgument("id", noun + " has no id");
  if (expected_version < 0) {
    return InvalidArgument("expected_version", noun + ": expected_version must not be negative");
  }
  if (version != expected_version + 1) {
    return InvalidArgument("version", noun + ": version must be " +
                                          std::to_string(expected_version + 1) +
                                          " (expected version + 1), got " +
                                          std::to_string(version));
  }
  ARROW_ASSIGN_OR_RAISE(
      auto stored,
      QueryInt(db, "SELECT version FROM " + std::string(table) + " WHERE id = ?1", id));
  if (expected_version == 0) {
    if (stored) return AlreadyExists("id", noun + ": id " + Quoted(id) + " is already taken");
    return Status::OK();
  }
  if (!stored) {
    return Conflict(noun + " was changed concurrently: expected version " +
                    std::to_string(expected_version) + ", found none");
  }
  if (*stored != expected_version) {
    return Conflict(noun + " was changed concurrently: expected version " +
                    std::to_string(expected_version) + ", found " + std::to_string(*stored));
  }
  return Status::OK();
}

Status PutFeatureSet(sqlite3* db, const VersionedPut<FeatureSet>& put) {
  const FeatureSet& fs = put.value;
  std::string noun = "feature set " + Quoted(fs.name);
  ARROW_RETURN_NOT_OK(CheckVersion(db, "feature_sets", noun, fs.id, fs.version,
                                   put.expected_version));
  if (!fs.deleted_at) {
    ARROW_ASSIGN_OR_RAISE(auto clash,
                          QueryInt(db,
                                   "SELECT 1 FROM feature_sets "
                                   "WHERE name = ?1 AND deleted_at IS NULL AND id <> ?2",
                                   fs.name, fs.id));
    if (clash) return AlreadyExists("name", noun + " already exists");
  }
  std::string body = Body(fs);
  if (put.expected_version == 0) {
    ARROW_RETURN_NOT_OK(Run(db,
                            "INSERT INTO feature_sets "
                            "(id, name, version, body, created_at, updated_at, deleted_at) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            fs.id, fs.name, fs.version, body, fs.created_at, fs.updated_at,
                            fs.deleted_at));
  } else {
    ARROW_RETURN_NOT_OK(Run(db,
                            "UPDATE feature_sets SET name = ?2, version = ?3, body = ?4, "
                            "created_at = ?5, updated_at = ?6, deleted_at = ?7 WHERE id = ?1",
                            fs.id, fs.name, fs.version, body, fs.created_at, fs.updated_at,
                            fs.deleted_at));
  }
  return Run(db,
             "INSERT INTO feature_set_versions (id, version, body, created_at) "
             "VALUES (?1, ?2, ?3, ?4)",
             fs.id, fs.version, body, fs.updated_at);
}

Status PutFeature(sqlite3* db, const VersionedPut<Feature>& put) {
  const Feature& f = put.value;
  std::string noun = "feature " + Quoted(f.name);
  ARROW_RETURN_NOT_OK(CheckVersion(db, "features", noun, f.id, f.version, put.expected_version));
  ARROW_ASSIGN_OR_RAISE(
      auto set_name,
      QueryText(db, "SELECT name FROM feature_sets WHERE id = ?1", f.feature_set_id));
  if (!set_name) {
    return InvalidArgument("feature_set_id", noun + " belongs to an unknown feature set " +
                                                 Quoted(f.feature_set_id));
  }
  if (!f.deleted_at) {
    ARROW_ASSIGN_OR_RAISE(auto clash, QueryInt(db,
                                               "SELECT 1 FROM features WHERE feature_set_id = ?1 "
                                               "AND name = ?2 AND deleted_at IS NULL AND id <> ?3",
                                               f.feature_set_id, f.name, f.id));
    if (clash) {
      return AlreadyExists("name", noun + " already exists in feature set " + Quoted(*set_name));
    }
  }
  std::string body = Body(f);
  if (put.expected_version == 0) {
    ARROW_RETURN_NOT_OK(Run(db,
                            "INSERT INTO features (id, feature_set_id, name, version, body, "
                            "created_at, updated_at, deleted_at) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            f.id, f.feature_set_id, f.name, f.version, body, f.created_at,
                            f.updated_at, f.deleted_at));
  } else {
    ARROW_RETURN_NOT_OK(Run(db,
                            "UPDATE features SET feature_set_id = ?2, name = ?3, version = ?4, "
                            "body = ?5, created_at = ?6, updated_at = ?7, deleted_at = ?8 "
                            "WHERE id = ?1",
                            f.id, f.feature_set_id, f.name, f.version, body, f.created_at,
                            f.updated_at, f.deleted_at));
  }
  return Run(db,
             "INSERT INTO feature_versions (id, version, body, created_at) "
             "VALUES (?1, ?2, ?3, ?4)",
             f.id, f.version, body, f.updated_at);
}

/// Inserts or replaces a job's row, inside the caller's transaction.
Status UpsertJob(sqlite3* db, const MaterializationJob& job) {
  if (job.id.empty()) return InvalidArgument("id", "a materialization job has no id");
  if (job.feature_set_id.empty()) {
    return InvalidArgument("feature_set_id", "materialization job " + Quoted(job.id) +
                                                 " names no feature set");
  }
  return Run(db,
             "INSERT INTO materialization_jobs (id, feature_set_id, status, created_at, body) "
             "VALUES (?1, ?2, ?3, ?4, ?5) "
             "ON CONFLICT (id) DO UPDATE SET feature_set_id = excluded.feature_set_id, "
             "status = excluded.status, created_at = excluded.created_at, body = excluded.body",
             job.id, job.feature_set_id, JobStatusName(job.status), job.created_at, Body(job));
}

// ---------------------------------------------------------------------------
// Migrations

Result<bool> HasMigrationsTable(sqlite3* db) {
  ARROW_ASSIGN_OR_RAISE(auto found, QueryInt(db,
                                             "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                             "AND name = 'schema_migrations'"));
  return found.has_value();
}

Result<int> AppliedVersion(sqlite3* db) {
  ARROW_ASSIGN_OR_RAISE(bool has_table, HasMigrationsTable(db));
  if (!has_table) return 0;
  ARROW_ASSIGN_OR_RAISE(auto version,
                        QueryInt(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
  return static_cast<int>(version.value_or(0));
}

int LatestVersion() {
  auto migrations = SqliteMigrations();
  return migrations.empty() ? 0 : migrations.back().version;
}

}  // namespace

// ---------------------------------------------------------------------------

Result<std::unique_ptr<SqliteRegistry>> SqliteRegistry::Open(const std::string& path) {
  sqlite3* db = nullptr;
  // NOMUTEX: the registry serialises use of its connection with mu_.
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Status status = SqliteError(db, rc, "opening " + Quoted(path));
    sqlite3_close_v2(db);
    return status;
  }
  std::unique_ptr<SqliteRegistry> registry(new SqliteRegistry(path, db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMillis);
  ARROW_RETURN_NOT_OK(Exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys"));
  // WAL lets readers proceed while a writer commits (other processes too). An
  // in-memory database keeps its "memory" journal.
  ARROW_RETURN_NOT_OK(Exec(db, "PRAGMA journal_mode = WAL", "enabling WAL in " + Quoted(path)));
  return registry;
}

SqliteRegistry::~SqliteRegistry() { (void)Close(); }

Result<sqlite3*> SqliteRegistry::Connection() {
  if (db_ == nullptr) return Unavailable("the registry is closed");
  return db_;
}

Status SqliteRegistry::Close() {
  std::lock_guard lock(mu_);
  if (db_ == nullptr) return Status::OK();
  int rc = sqlite3_close_v2(db_);
  db_ = nullptr;
  if (rc != SQLITE_OK) return SqliteError(nullptr, rc, "closing");
  return Status::OK();
}

Result<int> SqliteRegistry::Migrate() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  {
    ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
    ARROW_RETURN_NOT_OK(Exec(db,
                             "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
                             "creating schema_migrations"));
    ARROW_RETURN_NOT_OK(txn.Commit());
  }
  ARROW_ASSIGN_OR_RAISE(int applied, AppliedVersion(db));
  if (applied > LatestVersion()) {
    return Internal("the registry database " + Quoted(path_) + " has schema version " +
                    std::to_string(applied) + ", newer than this fstore supports (" +
                    std::to_string(LatestVersion()) + "): upgrade fstore");
  }
  for (const SqliteMigration& migration : SqliteMigrations()) {
    if (migration.version <= applied) continue;
    ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
    // Another process may have applied it since we looked: re-check under the
    // write lock.
    ARROW_ASSIGN_OR_RAISE(
        auto done,
        QueryInt(db, "SELECT 1 FROM schema_migrations WHERE version = ?1", migration.version));
    if (done) continue;  // the transaction rolls back: nothing written
    std::string script(migration.sql);
    ARROW_RETURN_NOT_OK(Exec(db, script.c_str(),
                             "applying migration " + std::to_string(migration.version) + " (" +
                                 std::string(migration.description) + ")"));
    ARROW_RETURN_NOT_OK(Run(db,
                            "INSERT INTO schema_migrations (version, applied_at) "
                            "VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                            migration.version));
    ARROW_RETURN_NOT_OK(txn.Commit());
  }
  return LatestVersion();
}

Result<int> SqliteRegistry::SchemaVersion() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return AppliedVersion(db);
}

Status SqliteRegistry::Ping() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto one, QueryInt(db, "SELECT 1"));
  if (one != 1) return Internal("registry database: SELECT 1 did not return 1");
  return Status::OK();
}

Status SqliteRegistry::Commit(const RegistryWrite& write) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  if (write.expected_change_sequence) {
    ARROW_ASSIGN_OR_RAISE(auto seq, QueryInt(db, "SELECT change_seq FROM registry_state"));
    if (!seq || *seq != *write.expected_change_sequence) {
      return Conflict("the registry changed concurrently (change sequence " +
                      std::to_string(seq.value_or(-1)) + ", expected " +
                      std::to_string(*write.expected_change_sequence) + ")");
    }
  }
  for (const Entity& entity : write.new_entities) {
    ARROW_RETURN_NOT_OK(InsertEntity(db, entity));
  }
  for (const auto& put : write.feature_sets) ARROW_RETURN_NOT_OK(PutFeatureSet(db, put));
  for (const auto& put : write.features) ARROW_RETURN_NOT_OK(PutFeature(db, put));
  ARROW_RETURN_NOT_OK(
      Run(db, "UPDATE registry_state SET change_seq = change_seq + 1 WHERE id = 1"));
  return txn.Commit();
}

Result<int64_t> SqliteRegistry::ChangeSequence() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto seq, QueryInt(db, "SELECT change_seq FROM registry_state"));
  if (!seq) return Internal("registry database: registry_state has no row (not migrated?)");
  return *seq;
}

Result<std::vector<Entity>> SqliteRegistry::ListEntities() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<Entity>(db, "entity", "SELECT body FROM entities ORDER BY name, id");
}

Result<std::optional<Entity>> SqliteRegistry::FindEntity(std::string_view id_or_name) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinition<Entity>(db, "entity",
                                 "SELECT body FROM entities WHERE id = ?1 OR name = ?1 "
                                 "ORDER BY id = ?1 DESC LIMIT 1",
                                 id_or_name);
}

Result<std::vector<FeatureSet>> SqliteRegistry::ListFeatureSets(bool include_deleted) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<FeatureSet>(db, "feature set",
                                      "SELECT body FROM feature_sets "
                                      "WHERE ?1 OR deleted_at IS NULL ORDER BY name, id",
                                      include_deleted);
}

Result<std::optional<FeatureSet>> SqliteRegistry::FindFeatureSet(std::string_view id_or_name,
                                                                bool include_deleted) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  // An id match wins; among name matches the live one, else the most recently
  // deleted.
  return QueryDefinition<FeatureSet>(
      db, "feature set",
      "SELECT body FROM feature_sets "
      "WHERE (id = ?1 OR name = ?1) AND (?2 OR deleted_at IS NULL) "
      "ORDER BY id = ?1 DESC, deleted_at IS NULL DESC, deleted_at DESC, version DESC "
      "LIMIT 1",
      id_or_name, include_deleted);
}

Result<std::vector<FeatureSet>> SqliteRegistry::FeatureSetHistory(std::string_view id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<FeatureSet>(
      db, "feature set version",
      "SELECT body FROM feature_set_versions WHERE id = ?1 ORDER BY version", id);
}

Result<std::vector<Feature>> SqliteRegistry::ListFeatures(bool include_deleted) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<Feature>(db, "feature",
                                   "SELECT body FROM features WHERE ?1 OR deleted_at IS NULL "
                                   "ORDER BY feature_set_id, name, id",
                                   include_deleted);
}

Result<std::optional<Feature>> SqliteRegistry::FindFeature(std::string_view id,
                                                           bool include_deleted) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinition<Feature>(
      db, "feature", "SELECT body FROM features WHERE id = ?1 AND (?2 OR deleted_at IS NULL)", id,
      include_deleted);
}

Result<std::vector<Feature>> SqliteRegistry::FeatureHistory(std::string_view id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<Feature>(
      db, "feature version", "SELECT body FROM feature_versions WHERE id = ?1 ORDER BY version",
      id);
}

// ---------------------------------------------------------------------------
// Jobs and feature set state

Status SqliteRegistry::PutJob(const MaterializationJob& job) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  ARROW_RETURN_NOT_OK(UpsertJob(db, job));
  return txn.Commit();
}

Result<std::optional<MaterializationJob>> SqliteRegistry::FindJob(std::string_view id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinition<MaterializationJob>(
      db, "materialization job", "SELECT body FROM materialization_jobs WHERE id = ?1", id);
}

Result<std::vector<MaterializationJob>> SqliteRegistry::ListJobs(std::string_view feature_set_id,
                                                                size_t limit) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  auto sql_limit = static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX));
  return QueryDefinitions<MaterializationJob>(
      db, "materialization job",
      "SELECT body FROM materialization_jobs WHERE feature_set_id = ?1 "
      "ORDER BY created_at DESC, id DESC LIMIT ?2",
      feature_set_id, sql_limit);
}

Result<std::vector<MaterializationJob>> SqliteRegistry::ListJobsByStatus(JobStatus status) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryDefinitions<MaterializationJob>(
      db, "materialization job",
      "SELECT body FROM materialization_jobs WHERE status = ?1 ORDER BY created_at, id",
      JobStatusName(status));
}

Result<std::optional<TimestampMicros>> SqliteRegistry::Watermark(
    std::string_view feature_set_id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryInt(db,
                  "SELECT watermark FROM feature_set_state "
                  "WHERE feature_set_id = ?1 AND watermark IS NOT NULL",
                  feature_set_id);
}

Status SqliteRegistry::CommitJobAndWatermark(const MaterializationJob& job,
                                             TimestampMicros watermark) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  ARROW_RETURN_NOT_OK(UpsertJob(db, job));
  // SQLite's two-argument MAX() is NULL when either is: a NULL watermark (the
  // row exists for its schedule slot only) counts as none.
  ARROW_RETURN_NOT_OK(Run(db,
                          "INSERT INTO feature_set_state (feature_set_id, watermark) "
                          "VALUES (?1, ?2) ON CONFLICT (feature_set_id) DO UPDATE SET "
                          "watermark = MAX(COALESCE(watermark, excluded.watermark), "
                          "excluded.watermark)",
                          job.feature_set_id, watermark));
  return txn.Commit();
}

Result<std::optional<TimestampMicros>> SqliteRegistry::LastScheduledSlot(
    std::string_view feature_set_id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  return QueryInt(db,
                  "SELECT last_scheduled_slot FROM feature_set_state "
                  "WHERE feature_set_id = ?1 AND last_scheduled_slot IS NOT NULL",
                  feature_set_id);
}

Status SqliteRegistry::SetLastScheduledSlot(std::string_view feature_set_id,
                                            TimestampMicros slot) {
  if (feature_set_id.empty()) {
    return InvalidArgument("feature_set_id", "a schedule slot needs a feature set id");
  }
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  ARROW_RETURN_NOT_OK(Run(db,
                          "INSERT INTO feature_set_state (feature_set_id, last_scheduled_slot) "
                          "VALUES (?1, ?2) ON CONFLICT (feature_set_id) DO UPDATE SET "
                          "last_scheduled_slot = excluded.last_scheduled_slot",
                          feature_set_id, slot));
  return txn.Commit();
}



// ---------------------------------------------------------------------------
// API keys, the audit log, feature statistics and usage (migrations 3 and 4).
// Each write is its own transaction and leaves the change sequence alone.

Status SqliteRegistry::InsertApiKey(const ApiKeyRecord& key) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_RETURN_NOT_OK(CheckApiKey(key));
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  ARROW_RETURN_NOT_OK(Run(db,
                          "INSERT INTO api_keys (id, name, role, feature_sets, salt, hash, "
                          "created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                          "ON CONFLICT (id) DO NOTHING",
                          key.id, key.name, key.role, FeatureSetsColumn(key.feature_sets),
                          key.salt, key.hash, key.created_at, key.revoked_at));
  if (sqlite3_changes(db) == 0) return ApiKeyIdTaken(key.id);
  return txn.Commit();
}

Result<bool> SqliteRegistry::RevokeApiKey(std::string_view id, TimestampMicros revoked_at) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  ARROW_RETURN_NOT_OK(Run(db,
                          "UPDATE api_keys SET revoked_at = ?2 "
                          "WHERE id = ?1 AND revoked_at IS NULL",
                          id, revoked_at));
  const bool revoked = sqlite3_changes(db) > 0;
  ARROW_RETURN_NOT_OK(txn.Commit());
  return revoked;
}

Result<ApiKeyListing> SqliteRegistry::ListApiKeys() {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(Statement stmt,
                        Statement::Prepare(db,
                                           "SELECT id, name, role, feature_sets, salt, hash, "
                                           "created_at, revoked_at FROM api_keys "
                                           "ORDER BY created_at, id"));
  ApiKeyListing out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
    if (!row) break;
    ApiKeyRecord key;
    key.id = stmt.Text(0);
    key.name = stmt.Text(1);
    key.role = stmt.Text(2);
    auto feature_sets = ParseFeatureSetsColumn(stmt.Text(3), key.id);
    if (!feature_sets.ok()) {
      // Reported, not failing the call: one bad row must not hide every key.
      out.unreadable.push_back({key.id, ErrorMessageOf(feature_sets.status())});
      continue;
    }
    key.feature_sets = std::move(*feature_sets);
    key.salt = stmt.Text(4);
    key.hash = stmt.Text(5);
    key.created_at = stmt.Int(6);
    if (!stmt.IsNull(7)) key.revoked_at = stmt.Int(7);
    out.keys.push_back(std::move(key));
  }
  return out;
}

Status SqliteRegistry::AppendAudit(const AuditEvent& event) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_RETURN_NOT_OK(CheckAuditEvent(event));
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  // event.seq is ignored: AUTOINCREMENT assigns the next one under the write
  // lock, so appends from several connections or processes never share one.
  ARROW_RETURN_NOT_OK(Run(db,
                          "INSERT INTO audit_log (time, key_id, action, target, outcome, status, "
                          "detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                          event.time, event.key_id, event.action, event.target, event.outcome,
                          event.status, event.detail));
  return txn.Commit();
}

Result<std::vector<AuditEvent>> SqliteRegistry::ListAudit(const AuditFilter& filter) {
  // (A struct, not a structured binding: lambdas below capture it.)
  const registry_internal::AuditQuery query = registry_internal::AuditQueryOf(filter);
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(
      Statement stmt,
      Statement::Prepare(db,
                         "SELECT seq, time, key_id, action, target, outcome, status, detail "
                         "FROM audit_log "
                         "WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR time < ?2) "
                         "AND (?3 = '' OR key_id = ?3) AND (?4 = '' OR action = ?4) "
                         "AND (?5 = '' OR substr(action, 1, length(?5)) = ?5) "
                         "AND (?6 = '' OR target = ?6) AND (?7 = '' OR outcome = ?7) "
                         "ORDER BY seq DESC LIMIT ?8"));
  ARROW_RETURN_NOT_OK(stmt.Bind(filter.since, filter.until, filter.key_id, query.exact_action,
                                query.action_prefix, filter.target, filter.outcome, query.limit));
  std::vector<AuditEvent> out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
    if (!row) break;
    AuditEvent event;
    event.seq = stmt.Int(0);
    event.time = stmt.Int(1);
    event.key_id = stmt.Text(2);
    event.action = stmt.Text(3);
    event.target = stmt.Text(4);
    event.outcome = stmt.Text(5);
    event.status = static_cast<int>(stmt.Int(6));
    event.detail = stmt.Text(7);
    out.push_back(std::move(event));
  }
  return out;
}

Status SqliteRegistry::PutFeatureStatistics(const std::vector<FeatureStatisticsRecord>& records) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  for (const auto& record : records) ARROW_RETURN_NOT_OK(CheckStatistics(record));
  if (records.empty()) return Status::OK();
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  for (const auto& r : records) {
    ARROW_RETURN_NOT_OK(Run(db,
                            "INSERT INTO feature_statistics (job_id, feature, feature_set_id, "
                            "feature_set_name, computed_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                            "ON CONFLICT (job_id, feature) DO UPDATE SET "
                            "feature_set_id = excluded.feature_set_id, "
                            "feature_set_name = excluded.feature_set_name, "
                            "computed_at = excluded.computed_at, body = excluded.body",
                            r.job_id, r.feature, r.feature_set_id, r.feature_set_name,
                            r.computed_at, r.body));
  }
  return txn.Commit();
}

Result<std::vector<FeatureStatisticsRecord>> SqliteRegistry::ListFeatureStatistics(
    TimestampMicros since, std::string_view feature_set_id) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(
      Statement stmt,
      Statement::Prepare(db,
                         "SELECT job_id, feature, feature_set_id, feature_set_name, computed_at, "
                         "body FROM feature_statistics "
                         "WHERE computed_at >= ?1 AND (?2 = '' OR feature_set_id = ?2) "
                         "ORDER BY computed_at, job_id, feature"));
  ARROW_RETURN_NOT_OK(stmt.Bind(since, feature_set_id));
  std::vector<FeatureStatisticsRecord> out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
    if (!row) break;
    FeatureStatisticsRecord record;
    record.job_id = stmt.Text(0);
    record.feature = stmt.Text(1);
    record.feature_set_id = stmt.Text(2);
    record.feature_set_name = stmt.Text(3);
    record.computed_at = stmt.Int(4);
    record.body = stmt.Text(5);
    out.push_back(std::move(record));
  }
  return out;
}

Status SqliteRegistry::AddUsage(const std::vector<UsageCount>& counts) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_ASSIGN_OR_RAISE(std::vector<UsageCount> merged, MergeUsage(counts));
  if (merged.empty()) return Status::OK();
  // BEGIN IMMEDIATE: the read-add-write of each upsert happens under the
  // write lock, so concurrent connections never lose each other's counts.
  ARROW_ASSIGN_OR_RAISE(auto txn, WriteTransaction::Begin(db));
  for (const UsageCount& c : merged) {
    ARROW_RETURN_NOT_OK(Run(db,
                            "INSERT INTO usage_daily (day, key_id, feature_set, feature, "
                            "requests, entities, entities_found) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                            "ON CONFLICT (day, key_id, feature_set, feature) DO UPDATE SET "
                            "requests = requests + excluded.requests, "
                            "entities = entities + excluded.entities, "
                            "entities_found = entities_found + excluded.entities_found",
                            c.day, c.key_id, c.feature_set, c.feature, c.requests, c.entities,
                            c.entities_found));
  }
  return txn.Commit();
}

Result<std::vector<UsageCount>> SqliteRegistry::ListUsage(std::string_view since_day) {
  std::lock_guard lock(mu_);
  ARROW_ASSIGN_OR_RAISE(sqlite3 * db, Connection());
  ARROW_RETURN_NOT_OK(CheckSinceDay(since_day));
  ARROW_ASSIGN_OR_RAISE(
      Statement stmt,
      Statement::Prepare(db,
                         "SELECT day, key_id, feature_set, feature, requests, entities, "
                         "entities_found FROM usage_daily WHERE day >= ?1 "
                         "ORDER BY day, key_id, feature_set, feature"));
  ARROW_RETURN_NOT_OK(stmt.Bind(since_day));
  std::vector<UsageCount> out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(bool row, stmt.Step());
    if (!row) break;
    UsageCount count;
    count.day = stmt.Text(0);
    count.key_id = stmt.Text(1);
    count.feature_set = stmt.Text(2);
    count.feature = stmt.Text(3);
    count.requests = stmt.Int(4);
    count.entities = stmt.Int(5);
    count.entities_found = stmt.Int(6);
    out.push_back(std::move(count));
  }
  return out;
}

}  // namespace fstore
