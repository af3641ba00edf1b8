#pragma once

// The production registry: a PostgreSQL database (DATABASE_URL=postgresql://
// user:pass@host:5432/db), which several fstore servers may share.
//
// Concurrency: a bounded pool of connections (connection_pool.h), so every
// method may be called from any thread. Commit() runs in one READ COMMITTED
// transaction that first locks the registry_state row (SELECT ... FOR UPDATE):
// definition writes from every server are serialised on that row, so the
// optimistic version checks, the name checks and expected_change_sequence are
// made against the latest committed state and stay true until the commit.
// Job, watermark and schedule slot writes are single upserts that do not take
// that lock. Other servers see a commit as soon as it is committed; their
// snapshots notice through ChangeSequence(), one indexed row read.
//
// Failures: a transient one (connection lost, server restarting or shutting
// down, serialization failure, deadlock, too many connections) is retried
// with exponential backoff for up to `retry_budget`, on a fresh connection
// when the old one broke; then the call fails with Unavailable. The pool
// reconnects by itself when the server is back. A Commit whose COMMIT was sent
// but not answered is not retried (it may have been applied): Unavailable,
// saying so.

#include <chrono>
#include <memory>
#include <string>

#include "fstore/registry/postgres/connection_pool.h"
#include "fstore/registry/registry.h"

namespace fstore {

struct PostgresRegistryOptions {
  PostgresPoolOptions pool;
  /// How long a call keeps retrying transient failures before Unavailable.
  std::chrono::milliseconds retry_budget{5'000};
  /// The first retry's delay; each next one doubles, up to max_retry_delay.
  std::chrono::milliseconds first_retry_delay{50};
  std::chrono::milliseconds max_retry_delay{1'000};
  /// How long Ping() waits for SELECT 1's answer. Other statements wait up to
  /// pool.statement_timeout + 5 s before the connection counts as hung.
  std::chrono::milliseconds ping_timeout{2'000};
};

class PostgresRegistry final : public Registry {
 public:
  /// Connects to the database `url` names (postgresql:// or postgres://, as
  /// libpq reads it). Does not migrate. InvalidArgument (field "DATABASE_URL")
  /// for a malformed URL; Unavailable when the first connection fails (wrong
  /// host, port, user, password or database), without retrying.
  static Result<std::unique_ptr<PostgresRegistry>> Open(const std::string& url,
                                                        PostgresRegistryOptions options = {});

  ~PostgresRegistry() override;
  PostgresRegistry(const PostgresRegistry&) = delete;
  PostgresRegistry& operator=(const PostgresRegistry&) = delete;

  /// Applies each pending migration in its own transaction, holding a
  /// transaction-scoped advisory lock, so that servers starting at once
  /// apply each migration once and all end at the same version.
  Result<int> Migrate() override;
  Result<int> SchemaVersion() override;
  /// SELECT 1 on a pooled connection; a stale one is replaced once, at once.
  /// Bounded by connect_timeout and ping_timeout; not retried with backoff.
  Status Ping() override;

  Status Commit(const RegistryWrite& write) override;
  Result<int64_t> ChangeSequence() override;

  Result<std::vector<Entity>> ListEntities() override;
  Result<std::optional<Entity>> FindEntity(std::string_view id_or_name) override;

  Result<std::vector<FeatureSet>> ListFeatureSets(bool include_deleted) override;
  Result<std::optional<FeatureSet>> FindFeatureSet(std::string_view id_or_name,
                                                   bool include_deleted) override;
  Result<std::vector<FeatureSet>> FeatureSetHistory(std::string_view id) override;

  Result<std::vector<Feature>> ListFeatures(bool include_deleted) override;
  Result<std::optional<Feature>> FindFeature(std::string_view id, bool include_deleted) override;
  Result<std::vector<Feature>> FeatureHistory(std::string_view id) override;

  Status PutJob(const MaterializationJob& job) override;
  Result<std::optional<MaterializationJob>> FindJob(std::string_view id) override;
  Result<std::vector<MaterializationJob>> ListJobs(std::string_view feature_set_id,
                                                   size_t limit) override;
  Result<std::vector<MaterializationJob>> ListJobsByStatus(JobStatus status) override;
  Result<std::optional<TimestampMicros>> Watermark(std::string_view feature_set_id) override;
  Status CommitJobAndWatermark(const MaterializationJob& job, TimestampMicros watermark) override;
  Result<std::optional<TimestampMicros>> LastScheduledSlot(
      std::string_view feature_set_id) override;
  Status SetLastScheduledSlot(std::string_view feature_set_id, TimestampMicros slot) override;

  // API keys, audit log, statistics, usage (operations.h; migrations 3 and 4).
  Status InsertApiKey(const ApiKeyRecord& key) override;
  Result<bool> RevokeApiKey(std::string_view id, TimestampMicros revoked_at) override;
  Result<ApiKeyListing> ListApiKeys() override;
  Status AppendAudit(const AuditEvent& event) override;
  Result<std::vector<AuditEvent>> ListAudit(const AuditFilter& filter) override;
  Status PutFeatureStatistics(const std::vector<FeatureStatisticsRecord>& records) override;
  Result<std::vector<FeatureStatisticsRecord>> ListFeatureStatistics(
      TimestampMicros since, std::string_view feature_set_id) override;
  Status AddUsage(const std::vector<UsageCount>& counts) override;
  Result<std::vector<UsageCount>> ListUsage(std::string_view since_day) override;

  /// Closes every connection (leased ones when their call ends); later calls
  /// are Unavailable. Idempotent.
  Status Close() override;

  /// The database, without the password: "postgresql://user@host:port/db".
  const std::string& description() const { return pool_->description(); }

 private:
  PostgresRegistry(std::unique_ptr<PostgresConnectionPool> pool, PostgresRegistryOptions options)
      : pool_(std::move(pool)), options_(options) {}

  /// Runs `call` (a function of PgSession&) on a pooled connection, retrying
  /// transient failures within `budget`. Each statement may take
  /// `answer_timeout` to answer (0: statement_timeout + 5 s).
  template <typename Call>
  auto WithRetry(std::string_view what, std::chrono::milliseconds budget, Call&& call,
                 std::chrono::milliseconds answer_timeout = std::chrono::milliseconds(0));

  std::unique_ptr<PostgresConnectionPool> pool_;
  const PostgresRegistryOptions options_;
};

}  // namespace fstore
