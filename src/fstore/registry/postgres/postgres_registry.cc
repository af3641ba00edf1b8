#include "fstore/registry/postgres/postgres_registry.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdint>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "fstore/registry/codec.h"
#include "fstore/registry/internal/operation_records.h"
#include "fstore/registry/internal/stored_body.h"
#include "fstore/registry/postgres/migrations.h"

namespace fstore {
namespace {

using Clock = std::chrono::steady_clock;

/// Held (transaction-scoped) while migrating: "fstore" and 1, as a bigint.
constexpr int64_t kMigrationLockKey = 0x66'73'74'6f'72'65'01;
/// How long a call waits for a free pooled connection.
constexpr std::chrono::seconds kCheckoutWait{10};
/// How much longer than statement_timeout a statement's answer may take
/// before the connection counts as hung (the server enforces
/// statement_timeout; this catches a server or network that answers nothing).
constexpr std::chrono::seconds kAnswerGrace{5};

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string OneLine(std::string_view message) {
  std::string out;
  for (char c : message) {
    if (c == '\n' || c == '\t' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------
// Parameters $1, $2, ... as text (PQsendQueryParams: the server infers their types from the
// statement). Values are never spliced into SQL.

class PgParams {
 public:
  template <typename... Args>
  explicit PgParams(const Args&... args) {
    (Add(args), ...);
    for (const auto& v : values_) pointers_.push_back(v ? v->c_str() : nullptr);
  }
  int size() const { return static_cast<int>(pointers_.size()); }
  const char* const* values() const { return pointers_.data(); }

 private:
  void Add(std::string_view v) { values_.emplace_back(std::string(v)); }
  void Add(const std::string& v) { values_.emplace_back(v); }
  void Add(const char* v) { values_.emplace_back(std::string(v)); }
  void Add(int64_t v) { values_.emplace_back(std::to_string(v)); }
  void Add(int v) { values_.emplace_back(std::to_string(v)); }
  void Add(bool v) { values_.emplace_back(v ? "true" : "false"); }
  void Add(const std::optional<int64_t>& v) {
    if (v) {
      Add(*v);
    } else {
      values_.emplace_back(std::nullopt);
    }
  }

  std::vector<std::optional<std::string>> values_;
  std::vector<const char*> pointers_;
};

// ---------------------------------------------------------------------------
// Waiting for an answer with a deadline: libpq's blocking calls would wait
// forever on a server that accepted the connection and then hung.

/// The result of the query sent on `conn` (the first failed one of a script,
/// else the last), once every result is in. Null with *timed_out set when
/// `deadline` passes first; the connection is then mid-query, unusable.
PGresult* AwaitResult(PGconn* conn, Clock::time_point deadline, bool* timed_out) {
  *timed_out = false;
  PGresult* kept = nullptr;
  while (true) {
    while (PQisBusy(conn) && PQstatus(conn) == CONNECTION_OK) {
      auto remaining =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (remaining <= 0) {
        *timed_out = true;
        PQclear(kept);
        return nullptr;
      }
      pollfd fd{PQsocket(conn), POLLIN, 0};
      int ready = ::poll(&fd, 1, static_cast<int>(std::min<int64_t>(remaining, INT_MAX)));
      if (ready < 0 && errno != EINTR) break;  // PQgetResult reports the failure
      if (ready > 0 && PQconsumeInput(conn) == 0) break;
    }
    PGresult* res = PQgetResult(conn);
    if (res == nullptr) return kept;
    if (kept != nullptr && PQresultStatus(kept) == PGRES_FATAL_ERROR) {
      PQclear(res);  // keep the first error
    } else {
      PQclear(kept);
      kept = res;
    }
  }
}

// ---------------------------------------------------------------------------
// A statement's result rows.

class PgRows {
 public:
  explicit PgRows(PGresult* res) : res_(res, &PQclear) {}

  int size() const { return PQntuples(res_.get()); }
  bool IsNull(int row, int column) const { return PQgetisnull(res_.get(), row, column) != 0; }
  std::string Text(int row, int column) const {
    return std::string(PQgetvalue(res_.get(), row, column),
                       static_cast<size_t>(PQgetlength(res_.get(), row, column)));
  }
  Result<int64_t> Int(int row, int column) const {
    std::string_view text(PQgetvalue(res_.get(), row, column),
                          static_cast<size_t>(PQgetlength(res_.get(), row, column)));
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return Internal("registry database: expected an integer, got " + Quoted(text));
    }
    return value;
  }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> res_;
};

// ---------------------------------------------------------------------------
// One call's connection, and what its last failure means for a retry.

class PgSession {
 public:
  /// `answer_timeout`: how long each statement may take to answer.
  PgSession(PostgresConnectionPool::Lease& lease, const std::string& description,
            std::chrono::milliseconds answer_timeout)
      : conn_(lease.get()), description_(description), answer_timeout_(answer_timeout) {}

  /// Runs one statement with parameters $1, $2, ...
  template <typename... Args>
  Result<PgRows> Query(const char* sql, const Args&... args) {
    PgParams params(args...);
    if (PQsendQueryParams(conn_, sql, params.size(), nullptr, params.values(), nullptr, nullptr,
                          0) == 0) {
      return Fail(nullptr);
    }
    return Await();
  }

  /// Runs one statement that returns no rows we need.
  template <typename... Args>
  Status Exec(const char* sql, const Args&... args) {
    return Query(sql, args...).status();
  }

  /// Runs a script of several statements, without parameters (migrations).
  Status ExecScript(const std::string& sql, std::string_view context) {
    if (PQsendQuery(conn_, sql.c_str()) == 0) return Fail(nullptr, context);
    return Await(context).status();
  }

  /// COMMIT. Losing the connection here leaves the outcome unknown: not
  /// retried, since a retry could apply the change twice or report a
  /// Conflict against itself.
  Status CommitTransaction() {
    Status status = Exec("COMMIT");
    if (!status.ok() && broken_) {
      transient_ = false;
      return Unavailable("registry database " + description_ +
                         ": the connection was lost while committing, so the change may or "
                         "may not have been applied; re-read before retrying (" +
                         ErrorMessageOf(status) + ")");
    }
    return status;
  }

  /// The last failure may pass if the call is tried again.
  bool transient() const { return transient_; }
  /// The connection is unusable (lost, hung, or the server is shutting down).
  bool broken() const { return broken_; }

 private:
  /// The sent statement's rows, or its error.
  Result<PgRows> Await(std::string_view context = {}) {
    bool timed_out = false;
    PGresult* res = AwaitResult(conn_, Clock::now() + answer_timeout_, &timed_out);
    if (timed_out) {
      // Not retried: another attempt would most likely hang as long.
      broken_ = true;
      transient_ = false;
      return Unavailable("registry database " + description_ + ": " +
                         (context.empty() ? "" : std::string(context) + ": ") +
                         "no answer within " + std::to_string(answer_timeout_.count()) + " ms");
    }
    ExecStatusType status = PQresultStatus(res);  // PGRES_FATAL_ERROR for null
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return PgRows(res);
    Status error = Fail(res, context);
    PQclear(res);
    return error;
  }

  /// Maps a failed statement to an fstore error; notes whether it is
  /// transient and whether the connection broke.
  Status Fail(PGresult* res, std::string_view context = {}) {
    std::string sqlstate;
    std::string message;
    if (res != nullptr) {
      if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) sqlstate = s;
      if (const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) message = m;
    }
    if (message.empty()) message = OneLine(PQerrorMessage(conn_));
    if (message.empty()) message = "unknown error";
    message = "registry database " + description_ + ": " +
              (context.empty() ? "" : std::string(context) + ": ") + message;
    if (!sqlstate.empty()) message += " (SQLSTATE " + sqlstate + ")";

    // Connection exceptions (class 08), the server shutting down or starting
    // up (57P01-57P03), or libpq's own loss of the connection.
    if (PQstatus(conn_) != CONNECTION_OK || sqlstate.starts_with("08") || sqlstate == "57P01" ||
        sqlstate == "57P02" || sqlstate == "57P03" || (res == nullptr && sqlstate.empty())) {
      broken_ = transient_ = true;
      return Unavailable(std::move(message));
    }
    if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "53300") {
      // Serialization failure, deadlock, too many connections: the
      // transaction was rolled back; another attempt may pass.
      transient_ = true;
      return Unavailable(std::move(message));
    }
    transient_ = false;
    if (sqlstate == "23505") {
      // Commit() checks names and ids itself first, to say which object
      // clashed; an index's name says which field a violation is about.
      const char* constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : nullptr;
      bool on_name = constraint != nullptr &&
                     std::string_view(constraint).find("name") != std::string_view::npos;
      return AlreadyExists(on_name ? "name" : "id", std::move(message));
    }
    if (sqlstate == "23503") return InvalidArgument("feature_set_id", std::move(message));
    // A statement timeout, a full disk, out of memory: the server is there
    // but cannot do it now.
    if (sqlstate == "57014" || sqlstate.starts_with("53")) return Unavailable(std::move(message));
    return Internal(std::move(message));
  }

  PGconn* conn_;
  const std::string& description_;
  const std::chrono::milliseconds answer_timeout_;
  bool transient_ = false;
  bool broken_ = false;
};

/// The first column of the first row as an integer, if there is a row and it
/// is not NULL.
template <typename... Args>
Result<std::optional<int64_t>> QueryInt(PgSession& s, const char* sql, const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(PgRows rows, s.Query(sql, args...));
  if (rows.size() == 0 || rows.IsNull(0, 0)) return std::nullopt;
  ARROW_ASSIGN_OR_RAISE(int64_t value, rows.Int(0, 0));
  return value;
}

template <typename... Args>
Result<std::optional<std::string>> QueryText(PgSession& s, const char* sql, const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(PgRows rows, s.Query(sql, args...));
  if (rows.size() == 0 || rows.IsNull(0, 0)) return std::nullopt;
  return rows.Text(0, 0);
}

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
Result<std::vector<T>> QueryDefinitions(PgSession& s, std::string_view kind, const char* sql,
                                        const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(PgRows rows, s.Query(sql, args...));
  std::vector<T> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int row = 0; row < rows.size(); ++row) {
    ARROW_ASSIGN_OR_RAISE(T value, DecodeBody<T>(rows.Text(row, 0), kind));
    out.push_back(std::move(value));
  }
  return out;
}

template <typename T, typename... Args>
Result<std::optional<T>> QueryDefinition(PgSession& s, std::string_view kind, const char* sql,
                                         const Args&... args) {
  ARROW_ASSIGN_OR_RAISE(std::vector<T> found, QueryDefinitions<T>(s, kind, sql, args...));
  if (found.empty()) return std::nullopt;
  return std::move(found.front());
}

// ---------------------------------------------------------------------------
// Commit steps, each inside the commit's transaction (which holds the
// registry_state row lock, so no other definition write runs meanwhile).

Status InsertEntity(PgSession& s, const Entity& entity) {
  if (entity.id.empty()) {
    return InvalidArgument("id", "entity " + Quoted(entity.name) + " has no id");
  }
  ARROW_ASSIGN_OR_RAISE(auto by_name,
                        QueryInt(s, "SELECT 1 FROM entities WHERE name = $1", entity.name));
  if (by_name) {
    return AlreadyExists("name", "entity " + Quoted(entity.name) + " already exists");
  }
  ARROW_ASSIGN_OR_RAISE(auto by_id, QueryInt(s, "SELECT 1 FROM entities WHERE id = $1", entity.id));
  if (by_id) {
    return AlreadyExists("id", "an entity with id " + Quoted(entity.id) + " already exists");
  }
  return s.Exec(
      "INSERT INTO entities (id, name, version, body, created_at, updated_at) "
      "VALUES ($1, $2, $3, $4, $5, $6)",
      entity.id, entity.name, entity.version, Body(entity), entity.created_at, entity.updated_at);
}

/// The checks every versioned put shares: ids, version arithmetic, and the
/// optimistic concurrency check against the stored version. `version_sql`
/// reads the stored version of id $1.
Status CheckVersion(PgSession& s, const char* version_sql, const std::string& noun,
                    const std::string& id, int64_t version, int64_t expected_version) {
  if (id.empty()) return InvalidArgument("id", noun + " has no id");
  if (expected_version < 0) {
    return InvalidArgument("expected_version", noun + ": expected_version must not be negative");
  }
  if (version != expected_version + 1) {
    return InvalidArgument("version",
                           noun + ": version must be " + std::to_string(expected_version + 1) +
                               " (expected version + 1), got " + std::to_string(version));
  }
  ARROW_ASSIGN_OR_RAISE(auto stored, QueryInt(s, version_sql, id));
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

Status PutFeatureSet(PgSession& s, const VersionedPut<FeatureSet>& put) {
  const FeatureSet& fs = put.value;
  std::string noun = "feature set " + Quoted(fs.name);
  ARROW_RETURN_NOT_OK(CheckVersion(s, "SELECT version FROM feature_sets WHERE id = $1", noun, fs.id,
                                   fs.version, put.expected_version));
  if (!fs.deleted_at) {
    ARROW_ASSIGN_OR_RAISE(auto clash,
                          QueryInt(s,
                                   "SELECT 1 FROM feature_sets "
                                   "WHERE name = $1 AND deleted_at IS NULL AND id <> $2",
                                   fs.name, fs.id));
    if (clash) return AlreadyExists("name", noun + " already exists");
  }
  std::string body = Body(fs);
  if (put.expected_version == 0) {
    ARROW_RETURN_NOT_OK(
        s.Exec("INSERT INTO feature_sets "
               "(id, name, version, body, created_at, updated_at, deleted_at) "
               "VALUES ($1, $2, $3, $4, $5, $6, $7)",
               fs.id, fs.name, fs.version, body, fs.created_at, fs.updated_at, fs.deleted_at));
  } else {
    ARROW_RETURN_NOT_OK(
        s.Exec("UPDATE feature_sets SET name = $2, version = $3, body = $4, "
               "created_at = $5, updated_at = $6, deleted_at = $7 WHERE id = $1",
               fs.id, fs.name, fs.version, body, fs.created_at, fs.updated_at, fs.deleted_at));
  }
  return s.Exec(
      "INSERT INTO feature_set_versions (id, version, body, created_at) "
      "VALUES ($1, $2, $3, $4)",
      fs.id, fs.version, body, fs.updated_at);
}

Status PutFeature(PgSession& s, const VersionedPut<Feature>& put) {
  const Feature& f = put.value;
  std::string noun = "feature " + Quoted(f.name);
  ARROW_RETURN_NOT_OK(CheckVersion(s, "SELECT version FROM features WHERE id = $1", noun, f.id,
                                   f.version, put.expected_version));
  ARROW_ASSIGN_OR_RAISE(
      auto set_name, QueryText(s, "SELECT name FROM feature_sets WHERE id = $1", f.feature_set_id));
  if (!set_name) {
    return InvalidArgument("feature_set_id",
                           noun + " belongs to an unknown feature set " + Quoted(f.feature_set_id));
  }
  if (!f.deleted_at) {
    ARROW_ASSIGN_OR_RAISE(auto clash, QueryInt(s,
                                               "SELECT 1 FROM features WHERE feature_set_id = $1 "
                                               "AND name = $2 AND deleted_at IS NULL AND id <> $3",
                                               f.feature_set_id, f.name, f.id));
    if (clash) {
      return AlreadyExists("name", noun + " already exists in feature set " + Quoted(*set_name));
    }
  }
  std::string body = Body(f);
  if (put.expected_version == 0) {
    ARROW_RETURN_NOT_OK(s.Exec(
        "INSERT INTO features (id, feature_set_id, name, version, body, "
        "created_at, updated_at, deleted_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        f.id, f.feature_set_id, f.name, f.version, body, f.created_at, f.updated_at, f.deleted_at));
  } else {
    ARROW_RETURN_NOT_OK(s.Exec(
        "UPDATE features SET feature_set_id = $2, name = $3, version = $4, "
        "body = $5, created_at = $6, updated_at = $7, deleted_at = $8 "
        "WHERE id = $1",
        f.id, f.feature_set_id, f.name, f.version, body, f.created_at, f.updated_at, f.deleted_at));
  }
  return s.Exec(
      "INSERT INTO feature_versions (id, version, body, created_at) VALUES ($1, $2, $3, $4)", f.id,
      f.version, body, f.updated_at);
}

/// Inserts or replaces a job's row.
Status UpsertJob(PgSession& s, const MaterializationJob& job) {
  return s.Exec(
      "INSERT INTO materialization_jobs (id, feature_set_id, status, created_at, body) "
      "VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (id) DO UPDATE SET feature_set_id = excluded.feature_set_id, "
      "status = excluded.status, created_at = excluded.created_at, body = excluded.body",
      job.id, job.feature_set_id, JobStatusName(job.status), job.created_at, Body(job));
}

Status CheckJob(const MaterializationJob& job) {
  if (job.id.empty()) return InvalidArgument("id", "a materialization job has no id");
  if (job.feature_set_id.empty()) {
    return InvalidArgument("feature_set_id",
                           "materialization job " + Quoted(job.id) + " names no feature set");
  }
  return Status::OK();
}

/// An api_keys row (id, name, role, feature_sets, salt, hash, created_at,
/// revoked_at); an error naming the key when a column cannot be read.
Result<ApiKeyRecord> ApiKeyOfRow(const PgRows& rows, int row) {
  ApiKeyRecord key;
  key.id = rows.Text(row, 0);
  key.name = rows.Text(row, 1);
  key.role = rows.Text(row, 2);
  ARROW_ASSIGN_OR_RAISE(key.feature_sets, ParseFeatureSetsColumn(rows.Text(row, 3), key.id));
  key.salt = rows.Text(row, 4);
  key.hash = rows.Text(row, 5);
  auto timestamp = [&](int column) -> Result<int64_t> {
    auto value = rows.Int(row, column);
    if (value.ok()) return value;
    return Internal("API key " + Quoted(key.id) + ": " + ErrorMessageOf(value.status()));
  };
  ARROW_ASSIGN_OR_RAISE(key.created_at, timestamp(6));
  if (!rows.IsNull(row, 7)) {
    ARROW_ASSIGN_OR_RAISE(int64_t revoked_at, timestamp(7));
    key.revoked_at = revoked_at;
  }
  return key;
}

// ---------------------------------------------------------------------------
// Migrations

Result<int> AppliedVersion(PgSession& s) {
  // to_regclass looks the table up on the search_path, as every statement does.
  ARROW_ASSIGN_OR_RAISE(auto has_table,
                        QueryText(s, "SELECT to_regclass('schema_migrations') IS NOT NULL"));
  if (has_table != "t") return 0;
  ARROW_ASSIGN_OR_RAISE(auto version,
                        QueryInt(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
  return static_cast<int>(version.value_or(0));
}

int LatestVersion() {
  auto migrations = PostgresMigrations();
  return migrations.empty() ? 0 : migrations.back().version;
}

}  // namespace

// ---------------------------------------------------------------------------

Result<std::unique_ptr<PostgresRegistry>> PostgresRegistry::Open(const std::string& url,
                                                                 PostgresRegistryOptions options) {
  ARROW_ASSIGN_OR_RAISE(auto pool, PostgresConnectionPool::Open(url, options.pool));
  return std::unique_ptr<PostgresRegistry>(new PostgresRegistry(std::move(pool), options));
}

PostgresRegistry::~PostgresRegistry() { (void)Close(); }

Status PostgresRegistry::Close() {
  pool_->Close();
  return Status::OK();
}

template <typename Call>
auto PostgresRegistry::WithRetry(std::string_view what, std::chrono::milliseconds budget,
                                 Call&& call, std::chrono::milliseconds answer_timeout) {
  if (answer_timeout.count() == 0) answer_timeout = options_.pool.statement_timeout + kAnswerGrace;
  using R = std::invoke_result_t<Call&, PgSession&>;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + budget;
  std::chrono::milliseconds delay = options_.first_retry_delay;
  bool replaced_stale = false;
  int attempts = 0;
  Status last;
  while (true) {
    ++attempts;
    bool stale = false;
    {
      auto lease = pool_->Checkout(std::max(deadline, Clock::now() + kCheckoutWait));
      if (!lease.ok()) {
        if (pool_->closed()) return R(lease.status());
        last = lease.status();  // connecting failed: the server may be coming back
      } else {
        PgSession session(*lease, pool_->description(), answer_timeout);
        R result = call(session);
        if (result.ok() || !session.transient()) return result;
        last = ::arrow::ToStatus(std::move(result));
        if (session.broken()) lease->MarkBroken();
        stale = session.broken() && lease->reused();
      }
    }  // the lease goes back (or is closed) before any wait
    if (stale && !replaced_stale) {
      // A connection that sat idle died with its server (restarted, or its
      // backend terminated): the pool has dropped the idle ones; try a fresh
      // connection at once.
      replaced_stale = true;
      continue;
    }
    if (Clock::now() + delay > deadline) {
      auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      return R(Unavailable(std::string(what) + ": " + ErrorMessageOf(last) + " (gave up after " +
                           std::to_string(attempts) + " attempt" + (attempts == 1 ? "" : "s") +
                           " in " + std::to_string(elapsed) + " ms)"));
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, options_.max_retry_delay);
  }
}

Result<int> PostgresRegistry::Migrate() {
  return WithRetry(
      "migrating the registry schema", options_.retry_budget, [](PgSession& s) -> Result<int> {
        auto migrations = PostgresMigrations();
        // One transaction per migration, each under the advisory lock: another
        // server migrating at once waits here, then sees what this one applied.
        while (true) {
          ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
          ARROW_RETURN_NOT_OK(s.Exec("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey));
          ARROW_RETURN_NOT_OK(s.ExecScript(
              "CREATE TABLE IF NOT EXISTS schema_migrations ("
              "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
              "creating schema_migrations"));
          ARROW_ASSIGN_OR_RAISE(int applied, AppliedVersion(s));
          if (applied > LatestVersion()) {
            return Internal("the registry database has schema version " + std::to_string(applied) +
                            ", newer than this fstore supports (" +
                            std::to_string(LatestVersion()) + "): upgrade fstore");
          }
          auto next = std::find_if(migrations.begin(), migrations.end(),
                                   [&](const PostgresMigration& m) { return m.version > applied; });
          // A plain COMMIT: a migration whose answer was lost is safe to retry,
          // the retry finds it applied.
          if (next == migrations.end()) {
            ARROW_RETURN_NOT_OK(s.Exec("COMMIT"));
            return LatestVersion();
          }
          ARROW_RETURN_NOT_OK(s.ExecScript(
              std::string(next->sql), "applying migration " + std::to_string(next->version) + " (" +
                                          std::string(next->description) + ")"));
          ARROW_RETURN_NOT_OK(
              s.Exec("INSERT INTO schema_migrations (version) VALUES ($1)", next->version));
          ARROW_RETURN_NOT_OK(s.Exec("COMMIT"));
        }
      });
}

Result<int> PostgresRegistry::SchemaVersion() {
  return WithRetry("reading the registry schema version", options_.retry_budget,
                   [](PgSession& s) { return AppliedVersion(s); });
}

Status PostgresRegistry::Ping() {
  return WithRetry(
      "pinging the registry database", std::chrono::milliseconds(0),
      [](PgSession& s) -> Status {
        ARROW_ASSIGN_OR_RAISE(auto one, QueryInt(s, "SELECT 1"));
        if (one != 1) return Internal("registry database: SELECT 1 did not return 1");
        return Status::OK();
      },
      options_.ping_timeout);
}

Status PostgresRegistry::Commit(const RegistryWrite& write) {
  return WithRetry(
      "committing to the registry", options_.retry_budget, [&](PgSession& s) -> Status {
        // READ COMMITTED whatever the database's default: after the row lock below,
        // every statement sees every commit that came before this one.
        ARROW_RETURN_NOT_OK(s.Exec("BEGIN ISOLATION LEVEL READ COMMITTED"));
        ARROW_ASSIGN_OR_RAISE(
            auto seq, QueryInt(s, "SELECT change_seq FROM registry_state WHERE id = 1 FOR UPDATE"));
        if (!seq) return Internal("registry database: registry_state has no row (not migrated?)");
        if (write.expected_change_sequence && *seq != *write.expected_change_sequence) {
          return Conflict("the registry changed concurrently (change sequence " +
                          std::to_string(*seq) + ", expected " +
                          std::to_string(*write.expected_change_sequence) + ")");
        }
        for (const Entity& entity : write.new_entities)
          ARROW_RETURN_NOT_OK(InsertEntity(s, entity));
        for (const auto& put : write.feature_sets) ARROW_RETURN_NOT_OK(PutFeatureSet(s, put));
        for (const auto& put : write.features) ARROW_RETURN_NOT_OK(PutFeature(s, put));
        ARROW_RETURN_NOT_OK(
            s.Exec("UPDATE registry_state SET change_seq = change_seq + 1 WHERE id = 1"));
        return s.CommitTransaction();
      });
}

Result<int64_t> PostgresRegistry::ChangeSequence() {
  return WithRetry(
      "reading the registry change sequence", options_.retry_budget,
      [](PgSession& s) -> Result<int64_t> {
        ARROW_ASSIGN_OR_RAISE(auto seq,
                              QueryInt(s, "SELECT change_seq FROM registry_state WHERE id = 1"));
        if (!seq) return Internal("registry database: registry_state has no row (not migrated?)");
        return *seq;
      });
}

Result<std::vector<Entity>> PostgresRegistry::ListEntities() {
  return WithRetry("listing entities", options_.retry_budget, [](PgSession& s) {
    return QueryDefinitions<Entity>(s, "entity", "SELECT body FROM entities ORDER BY name, id");
  });
}

Result<std::optional<Entity>> PostgresRegistry::FindEntity(std::string_view id_or_name) {
  return WithRetry("finding an entity", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinition<Entity>(s, "entity",
                                   "SELECT body FROM entities WHERE id = $1 OR name = $1 "
                                   "ORDER BY id = $1 DESC LIMIT 1",
                                   id_or_name);
  });
}

Result<std::vector<FeatureSet>> PostgresRegistry::ListFeatureSets(bool include_deleted) {
  return WithRetry("listing feature sets", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<FeatureSet>(s, "feature set",
                                        "SELECT body FROM feature_sets "
                                        "WHERE $1 OR deleted_at IS NULL ORDER BY name, id",
                                        include_deleted);
  });
}

Result<std::optional<FeatureSet>> PostgresRegistry::FindFeatureSet(std::string_view id_or_name,
                                                                   bool include_deleted) {
  return WithRetry("finding a feature set", options_.retry_budget, [&](PgSession& s) {
    // An id match wins; among name matches the live one, else the most
    // recently deleted.
    return QueryDefinition<FeatureSet>(
        s, "feature set",
        "SELECT body FROM feature_sets "
        "WHERE (id = $1 OR name = $1) AND ($2 OR deleted_at IS NULL) "
        "ORDER BY id = $1 DESC, deleted_at IS NULL DESC, deleted_at DESC NULLS LAST, "
        "version DESC LIMIT 1",
        id_or_name, include_deleted);
  });
}

Result<std::vector<FeatureSet>> PostgresRegistry::FeatureSetHistory(std::string_view id) {
  return WithRetry("reading a feature set's history", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<FeatureSet>(
        s, "feature set version",
        "SELECT body FROM feature_set_versions WHERE id = $1 ORDER BY version", id);
  });
}

Result<std::vector<Feature>> PostgresRegistry::ListFeatures(bool include_deleted) {
  return WithRetry("listing features", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<Feature>(s, "feature",
                                     "SELECT body FROM features WHERE $1 OR deleted_at IS NULL "
                                     "ORDER BY feature_set_id, name, id",
                                     include_deleted);
  });
}

Result<std::optional<Feature>> PostgresRegistry::FindFeature(std::string_view id,
                                                             bool include_deleted) {
  return WithRetry("finding a feature", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinition<Feature>(
        s, "feature", "SELECT body FROM features WHERE id = $1 AND ($2 OR deleted_at IS NULL)", id,
        include_deleted);
  });
}

Result<std::vector<Feature>> PostgresRegistry::FeatureHistory(std::string_view id) {
  return WithRetry("reading a feature's history", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<Feature>(
        s, "feature version", "SELECT body FROM feature_versions WHERE id = $1 ORDER BY version",
        id);
  });
}

// ---------------------------------------------------------------------------
// Jobs and feature set state: single idempotent statements, safe to retry.

Status PostgresRegistry::PutJob(const MaterializationJob& job) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  ARROW_RETURN_NOT_OK(CheckJob(job));
  return WithRetry("recording a materialization job", options_.retry_budget,
                   [&](PgSession& s) { return UpsertJob(s, job); });
}

Result<std::optional<MaterializationJob>> PostgresRegistry::FindJob(std::string_view id) {
  return WithRetry("finding a materialization job", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinition<MaterializationJob>(
        s, "materialization job", "SELECT body FROM materialization_jobs WHERE id = $1", id);
  });
}

Result<std::vector<MaterializationJob>> PostgresRegistry::ListJobs(std::string_view feature_set_id,
                                                                   size_t limit) {
  auto sql_limit = static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX));
  return WithRetry("listing materialization jobs", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<MaterializationJob>(
        s, "materialization job",
        "SELECT body FROM materialization_jobs WHERE feature_set_id = $1 "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        feature_set_id, sql_limit);
  });
}

Result<std::vector<MaterializationJob>> PostgresRegistry::ListJobsByStatus(JobStatus status) {
  return WithRetry("listing materialization jobs", options_.retry_budget, [&](PgSession& s) {
    return QueryDefinitions<MaterializationJob>(
        s, "materialization job",
        "SELECT body FROM materialization_jobs WHERE status = $1 ORDER BY created_at, id",
        JobStatusName(status));
  });
}

Result<std::optional<TimestampMicros>> PostgresRegistry::Watermark(
    std::string_view feature_set_id) {
  return WithRetry("reading a watermark", options_.retry_budget, [&](PgSession& s) {
    return QueryInt(s, "SELECT watermark FROM feature_set_state WHERE feature_set_id = $1",
                    feature_set_id);
  });
}

Status PostgresRegistry::CommitJobAndWatermark(const MaterializationJob& job,
                                               TimestampMicros watermark) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  ARROW_RETURN_NOT_OK(CheckJob(job));
  return WithRetry(
      "committing a materialization job", options_.retry_budget, [&](PgSession& s) -> Status {
        ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
        ARROW_RETURN_NOT_OK(UpsertJob(s, job));
        // GREATEST ignores NULLs: a NULL watermark (the row exists for its
        // schedule slot only) counts as none. Never moves back.
        ARROW_RETURN_NOT_OK(
            s.Exec("INSERT INTO feature_set_state (feature_set_id, watermark) VALUES ($1, $2) "
                   "ON CONFLICT (feature_set_id) DO UPDATE SET "
                   "watermark = GREATEST(feature_set_state.watermark, excluded.watermark)",
                   job.feature_set_id, watermark));
        // Idempotent: a retry after a lost COMMIT answer writes the same again.
        return s.Exec("COMMIT");
      });
}

Result<std::optional<TimestampMicros>> PostgresRegistry::LastScheduledSlot(
    std::string_view feature_set_id) {
  return WithRetry("reading a schedule slot", options_.retry_budget, [&](PgSession& s) {
    return QueryInt(s,
                    "SELECT last_scheduled_slot FROM feature_set_state WHERE feature_set_id = $1",
                    feature_set_id);
  });
}

Status PostgresRegistry::SetLastScheduledSlot(std::string_view feature_set_id,
                                              TimestampMicros slot) {
  if (feature_set_id.empty()) {
    return InvalidArgument("feature_set_id", "a schedule slot needs a feature set id");
  }
  return WithRetry("recording a schedule slot", options_.retry_budget, [&](PgSession& s) {
    return s.Exec(
        "INSERT INTO feature_set_state (feature_set_id, last_scheduled_slot) VALUES ($1, $2) "
        "ON CONFLICT (feature_set_id) DO UPDATE SET "
        "last_scheduled_slot = excluded.last_scheduled_slot",
        feature_set_id, slot);
  });
}



// ---------------------------------------------------------------------------
// API keys, the audit log, feature statistics and usage (migrations 3 and 4).
// None of them takes the registry_state lock or bumps the change sequence.
// Idempotent writes (statistics replaced) retry like jobs; the others (a key
// inserted or revoked, an audit entry, usage counts) commit with
// CommitTransaction(), so a COMMIT whose answer was lost is reported, not
// retried into a duplicate or into a failure against itself (a key's id
// taken, or the key already revoked, by the lost attempt).

Status PostgresRegistry::InsertApiKey(const ApiKeyRecord& key) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  ARROW_RETURN_NOT_OK(CheckApiKey(key));
  std::string feature_sets = FeatureSetsColumn(key.feature_sets);
  return WithRetry("recording an API key", options_.retry_budget, [&](PgSession& s) -> Status {
    ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
    ARROW_ASSIGN_OR_RAISE(
        PgRows inserted,
        s.Query("INSERT INTO api_keys (id, name, role, feature_sets, salt, hash, created_at, "
                "revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                key.id, key.name, key.role, feature_sets, key.salt, key.hash, key.created_at,
                key.revoked_at));
    if (inserted.size() == 0) return ApiKeyIdTaken(key.id);
    return s.CommitTransaction();
  });
}

Result<bool> PostgresRegistry::RevokeApiKey(std::string_view id, TimestampMicros revoked_at) {
  return WithRetry(
      "revoking an API key", options_.retry_budget, [&](PgSession& s) -> Result<bool> {
        // A concurrent revocation's UPDATE waits for this one's row lock,
        // then finds revoked_at set and changes nothing.
        ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
        ARROW_ASSIGN_OR_RAISE(PgRows revoked,
                              s.Query("UPDATE api_keys SET revoked_at = $2 "
                                      "WHERE id = $1 AND revoked_at IS NULL RETURNING id",
                                      id, revoked_at));
        ARROW_RETURN_NOT_OK(s.CommitTransaction());
        return revoked.size() > 0;
      });
}

Result<ApiKeyListing> PostgresRegistry::ListApiKeys() {
  return WithRetry(
      "listing API keys", options_.retry_budget, [](PgSession& s) -> Result<ApiKeyListing> {
        ARROW_ASSIGN_OR_RAISE(PgRows rows,
                              s.Query("SELECT id, name, role, feature_sets, salt, hash, "
                                      "created_at, revoked_at FROM api_keys "
                                      "ORDER BY created_at, id"));
        ApiKeyListing out;
        out.keys.reserve(static_cast<size_t>(rows.size()));
        for (int row = 0; row < rows.size(); ++row) {
          auto key = ApiKeyOfRow(rows, row);
          if (!key.ok()) {
            // Reported, not failing the call: one bad row must not hide every key.
            out.unreadable.push_back({rows.Text(row, 0), ErrorMessageOf(key.status())});
            continue;
          }
          out.keys.push_back(std::move(*key));
        }
        return out;
      });
}

Status PostgresRegistry::AppendAudit(const AuditEvent& event) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  ARROW_RETURN_NOT_OK(CheckAuditEvent(event));
  return WithRetry("appending to the audit log", options_.retry_budget,
                   [&](PgSession& s) -> Status {
                     // event.seq is ignored: the identity column draws the next
                     // one, distinct across servers.
                     ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
                     ARROW_RETURN_NOT_OK(s.Exec(
                         "INSERT INTO audit_log (time, key_id, action, target, outcome, status, "
                         "detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                         event.time, event.key_id, event.action, event.target, event.outcome,
                         event.status, event.detail));
                     return s.CommitTransaction();
                   });
}

Result<std::vector<AuditEvent>> PostgresRegistry::ListAudit(const AuditFilter& filter) {
  // (A struct, not a structured binding: lambdas below capture it.)
  const registry_internal::AuditQuery query = registry_internal::AuditQueryOf(filter);
  return WithRetry(
      "reading the audit log", options_.retry_budget,
      [&](PgSession& s) -> Result<std::vector<AuditEvent>> {
        ARROW_ASSIGN_OR_RAISE(
            PgRows rows,
            s.Query("SELECT seq, time, key_id, action, target, outcome, status, detail "
                    "FROM audit_log "
                    "WHERE ($1::bigint IS NULL OR time >= $1::bigint) "
                    "AND ($2::bigint IS NULL OR time < $2::bigint) "
                    "AND ($3::text = '' OR key_id = $3::text) "
                    "AND ($4::text = '' OR action = $4::text) "
                    "AND ($5::text = '' OR left(action, length($5::text)) = $5::text) "
                    "AND ($6::text = '' OR target = $6::text) "
                    "AND ($7::text = '' OR outcome = $7::text) "
                    "ORDER BY seq DESC LIMIT $8::bigint",
                    filter.since, filter.until, filter.key_id, query.exact_action,
                    query.action_prefix, filter.target, filter.outcome, query.limit));
        std::vector<AuditEvent> out;
        out.reserve(static_cast<size_t>(rows.size()));
        for (int row = 0; row < rows.size(); ++row) {
          AuditEvent event;
          ARROW_ASSIGN_OR_RAISE(event.seq, rows.Int(row, 0));
          ARROW_ASSIGN_OR_RAISE(event.time, rows.Int(row, 1));
          event.key_id = rows.Text(row, 2);
          event.action = rows.Text(row, 3);
          event.target = rows.Text(row, 4);
          event.outcome = rows.Text(row, 5);
          ARROW_ASSIGN_OR_RAISE(int64_t status, rows.Int(row, 6));
          event.status = static_cast<int>(status);
          event.detail = rows.Text(row, 7);
          out.push_back(std::move(event));
        }
        return out;
      });
}

Status PostgresRegistry::PutFeatureStatistics(
    const std::vector<FeatureStatisticsRecord>& records) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  for (const auto& record : records) ARROW_RETURN_NOT_OK(CheckStatistics(record));
  if (records.empty()) return Status::OK();
  return WithRetry(
      "recording feature statistics", options_.retry_budget, [&](PgSession& s) -> Status {
        ARROW_RETURN_NOT_OK(s.Exec("BEGIN"));
        for (const auto& r : records) {
          ARROW_RETURN_NOT_OK(s.Exec(
              "INSERT INTO feature_statistics (job_id, feature, feature_set_id, "
              "feature_set_name, computed_at, body) VALUES ($1, $2, $3, $4, $5, $6) "
              "ON CONFLICT (job_id, feature) DO UPDATE SET "
              "feature_set_id = excluded.feature_set_id, "
              "feature_set_name = excluded.feature_set_name, "
              "computed_at = excluded.computed_at, body = excluded.body",
              r.job_id, r.feature, r.feature_set_id, r.feature_set_name, r.computed_at, r.body));
        }
        // Idempotent: a retry after a lost COMMIT answer writes the same again.
        return s.Exec("COMMIT");
      });
}

Result<std::vector<FeatureStatisticsRecord>> PostgresRegistry::ListFeatureStatistics(
    TimestampMicros since, std::string_view feature_set_id) {
  return WithRetry(
      "listing feature statistics", options_.retry_budget,
      [&](PgSession& s) -> Result<std::vector<FeatureStatisticsRecord>> {
        ARROW_ASSIGN_OR_RAISE(
            PgRows rows,
            s.Query("SELECT job_id, feature, feature_set_id, feature_set_name, computed_at, body "
                    "FROM feature_statistics "
                    "WHERE computed_at >= $1::bigint "
                    "AND ($2::text = '' OR feature_set_id = $2::text) "
                    "ORDER BY computed_at, job_id, feature",
                    since, feature_set_id));
        std::vector<FeatureStatisticsRecord> out;
        out.reserve(static_cast<size_t>(rows.size()));
        for (int row = 0; row < rows.size(); ++row) {
          FeatureStatisticsRecord record;
          record.job_id = rows.Text(row, 0);
          record.feature = rows.Text(row, 1);
          record.feature_set_id = rows.Text(row, 2);
          record.feature_set_name = rows.Text(row, 3);
          ARROW_ASSIGN_OR_RAISE(record.computed_at, rows.Int(row, 4));
          record.body = rows.Text(row, 5);
          out.push_back(std::move(record));
        }
        return out;
      });
}

Status PostgresRegistry::AddUsage(const std::vector<UsageCount>& counts) {
  if (pool_->closed()) return Unavailable("the registry is closed");
  // Merged and sorted: every batch upserts its rows in key order, so two
  // servers' batches wait on each other's row locks instead of deadlocking.
  ARROW_ASSIGN_OR_RAISE(std::vector<UsageCount> merged, MergeUsage(counts));
  if (merged.empty()) return Status::OK();
  return WithRetry(
      "adding usage counts", options_.retry_budget, [&](PgSession& s) -> Status {
        ARROW_RETURN_NOT_OK(s.Exec("BEGIN ISOLATION LEVEL READ COMMITTED"));
        for (const UsageCount& c : merged) {
          // ON CONFLICT DO UPDATE adds to the row as committed by now (it
          // waits for a concurrent writer of the same row), so no count is
          // lost between servers.
          ARROW_RETURN_NOT_OK(s.Exec(
              "INSERT INTO usage_daily (day, key_id, feature_set, feature, requests, entities, "
              "entities_found) VALUES ($1, $2, $3, $4, $5, $6, $7) "
              "ON CONFLICT (day, key_id, feature_set, feature) DO UPDATE SET "
              "requests = usage_daily.requests + excluded.requests, "
              "entities = usage_daily.entities + excluded.entities, "
              "entities_found = usage_daily.entities_found + excluded.entities_found",
              c.day, c.key_id, c.feature_set, c.feature, c.requests, c.entities,
              c.entities_found));
        }
        return s.CommitTransaction();
      });
}

Result<std::vector<UsageCount>> PostgresRegistry::ListUsage(std::string_view since_day) {
  ARROW_RETURN_NOT_OK(CheckSinceDay(since_day));
  return WithRetry(
      "listing usage counts", options_.retry_budget,
      [&](PgSession& s) -> Result<std::vector<UsageCount>> {
        ARROW_ASSIGN_OR_RAISE(
            PgRows rows,
            s.Query("SELECT day, key_id, feature_set, feature, requests, entities, "
                    "entities_found FROM usage_daily WHERE day >= $1::text "
                    "ORDER BY day, key_id, feature_set, feature",
                    since_day));
        std::vector<UsageCount> out;
        out.reserve(static_cast<size_t>(rows.size()));
        for (int row = 0; row < rows.size(); ++row) {
          UsageCount count;
          count.day = rows.Text(row, 0);
          count.key_id = rows.Text(row, 1);
          count.feature_set = rows.Text(row, 2);
          count.feature = rows.Text(row, 3);
          ARROW_ASSIGN_OR_RAISE(count.requests, rows.Int(row, 4));
          ARROW_ASSIGN_OR_RAISE(count.entities, rows.Int(row, 5));
          ARROW_ASSIGN_OR_RAISE(count.entities_found, rows.Int(row, 6));
          out.push_back(std::move(count));
        }
        return out;
      });
}

}  // namespace fstore
