#pragma once

// The embedded registry: one SQLite database file (or ":memory:").
//
// Concurrency: one connection, serialised by a mutex, so every method may be
// called from any thread. Several processes (or several SqliteRegistry
// objects) may share one file: the database runs in WAL mode, writes take the
// write lock up front (BEGIN IMMEDIATE) and wait up to the busy timeout for
// it, and Commit()'s optimistic version checks happen inside that transaction.

#include <memory>
#include <mutex>
#include <string>

#include "fstore/registry/registry.h"

struct sqlite3;

namespace fstore {

class SqliteRegistry final : public Registry {
 public:
  /// How long a statement waits for another connection's lock before the call
  /// fails with Unavailable.
  static constexpr int kBusyTimeoutMillis = 10'000;

  /// Opens (creating if missing) the database at `path`, or a private
  /// in-memory one for ":memory:". The parent directory must exist. Does not
  /// migrate.
  static Result<std::unique_ptr<SqliteRegistry>> Open(const std::string& path);

  ~SqliteRegistry() override;
  SqliteRegistry(const SqliteRegistry&) = delete;
  SqliteRegistry& operator=(const SqliteRegistry&) = delete;

  Result<int> Migrate() override;
  Result<int> SchemaVersion() override;
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
  Result<std::optional<Feature>> FindFeature(std::string_view id,
                                             bool include_deleted) override;
  Result<std::vector<Feature>> FeatureHistory(std::string_view id) override;

  // Jobs, watermarks and schedule slots live in their own tables (migration 2)
  // and are written in their own transactions: they do not bump the change
  // sequence, which tracks definitions only (a snapshot of definitions has
  // nothing to refresh when a job finishes).
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

  Status Close() override;

  /// The path given to Open().
  const std::string& path() const { return path_; }

 private:
  SqliteRegistry(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

  /// The open connection, or Unavailable after Close(). Call with mu_ held.
  Result<sqlite3*> Connection();

  const std::string path_;
  std::mutex mu_;
  sqlite3* db_;  // guarded by mu_; null once closed
};

}  // namespace fstore
