#pragma once

// The registry: where definitions live. One interface, one backend per URI
// scheme (sqlite:// embedded, postgresql:// shared by several servers), chosen
// by RegistryFromUri.
// Every backend passes registry_conformance_test.cc.
//
// Thread safety: all methods may be called concurrently from any thread.
// Writes go through Commit(), which applies a RegistryWrite atomically with
// optimistic concurrency: each put names the version it replaces, and the
// commit fails with Conflict if another writer got there first, so the caller
// re-reads and retries (two concurrent patches both land, as two versions).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"
#include "fstore/registry/materialization_job.h"
#include "fstore/registry/operations.h"

namespace fstore {

/// A put of a versioned definition. `expected_version` is the stored version
/// this replaces, 0 for a new object; `value.version` must be expected + 1.
template <typename T>
struct VersionedPut {
  T value;
  int64_t expected_version = 0;
};

/// Everything one API call changes, applied all-or-nothing.
struct RegistryWrite {
  std::vector<Entity> new_entities;
  std::vector<VersionedPut<FeatureSet>> feature_sets;
  std::vector<VersionedPut<Feature>> features;
  /// When set, the commit fails with Conflict unless the registry's change
  /// sequence still has this value: for writes whose checks read other objects
  /// (dependants, references), so that no concurrent write invalidates them.
  std::optional<int64_t> expected_change_sequence;
};

class Registry {
 public:
  virtual ~Registry() = default;

  /// Applies pending schema migrations (idempotent); returns the schema version.
  virtual Result<int> Migrate() = 0;
  /// The applied schema version (0 when none).
  virtual Result<int> SchemaVersion() = 0;
  /// Cheap reachability check for /ready.
  virtual Status Ping() = 0;

  /// Applies `write` atomically. Errors: AlreadyExists (field "name") when a
  /// new entity, feature set or feature takes a name in use by a live object
  /// of its kind (features: within their feature set); Conflict when a put's
  /// expected_version is not the stored one; InvalidArgument when a version
  /// does not follow expected_version. Every put also records the new version
  /// in the object's history.
  virtual Status Commit(const RegistryWrite& write) = 0;

  /// Monotonic counter bumped by every commit (for snapshot refreshes). Job,
  /// watermark and schedule slot writes do not bump it: no definition changed.
  virtual Result<int64_t> ChangeSequence() = 0;

  virtual Result<std::vector<Entity>> ListEntities() = 0;
  /// By id, or else by name.
  virtual Result<std::optional<Entity>> FindEntity(std::string_view id_or_name) = 0;

  /// Live feature sets, or all with include_deleted; ordered by name, then id.
  virtual Result<std::vector<FeatureSet>> ListFeatureSets(bool include_deleted) = 0;
  /// The current version, by id or else by name (the live one when names repeat
  /// across deletions). Deleted ones only with include_deleted.
  virtual Result<std::optional<FeatureSet>> FindFeatureSet(std::string_view id_or_name,
                                                          bool include_deleted) = 0;
  /// Every version of a feature set, oldest first; empty if the id is unknown.
  virtual Result<std::vector<FeatureSet>> FeatureSetHistory(std::string_view id) = 0;

  /// Live features (all with include_deleted); ordered by feature set id, name.
  virtual Result<std::vector<Feature>> ListFeatures(bool include_deleted) = 0;
  /// The current version by id.
  virtual Result<std::optional<Feature>> FindFeature(std::string_view id,
                                                     bool include_deleted) = 0;
  /// Every version of a feature, oldest first; empty if the id is unknown.
  virtual Result<std::vector<Feature>> FeatureHistory(std::string_view id) = 0;

  // Materialization jobs and watermarks. Jobs are not versioned: a put
  // replaces the record (status, counters) by id.

  /// Inserts or replaces a job record.
  virtual Status PutJob(const MaterializationJob& job) = 0;
  virtual Result<std::optional<MaterializationJob>> FindJob(std::string_view id) = 0;
  /// A feature set's jobs, newest first (by created_at, then id), at most `limit`.
  virtual Result<std::vector<MaterializationJob>> ListJobs(std::string_view feature_set_id,
                                                          size_t limit) = 0;
  /// Jobs in a status, oldest first (start-up recovery of queued/running jobs).
  virtual Result<std::vector<MaterializationJob>> ListJobsByStatus(JobStatus status) = 0;

  /// The feature set's watermark: everything before it is materialized.
  virtual Result<std::optional<TimestampMicros>> Watermark(std::string_view feature_set_id) = 0;
  /// Commits `job` (as PutJob) and, in the same transaction, moves the
  /// watermark to `watermark` if that is later than the stored one (never
  /// back: a backfill of a past range leaves it).
  virtual Status CommitJobAndWatermark(const MaterializationJob& job,
                                       TimestampMicros watermark) = 0;

  /// The last schedule slot that triggered a run of the feature set (the
  /// scheduler's memory across restarts), and its update.
  virtual Result<std::optional<TimestampMicros>> LastScheduledSlot(
      std::string_view feature_set_id) = 0;
  virtual Status SetLastScheduledSlot(std::string_view feature_set_id, TimestampMicros slot) = 0;

  // API keys and the audit log (operations.h, issue #7).

  /// Inserts a new key; never replaces one. AlreadyExists (field "id") when
  /// a key with that id is stored, which is left as it was. InvalidArgument
  /// (field "id", "role", "salt", "hash" or "feature_sets") for an empty id,
  /// role, salt or hash or an empty feature set name.
  virtual Status InsertApiKey(const ApiKeyRecord& key) = 0;
  /// Sets the key's revoked_at unless it is revoked already, in one
  /// conditional update that changes no other column: of concurrent calls for
  /// one key, exactly one returns true. False when the key is already revoked
  /// or no key has that id.
  virtual Result<bool> RevokeApiKey(std::string_view id, TimestampMicros revoked_at) = 0;
  /// Every key, revoked ones too, oldest first; a row that cannot be read is
  /// reported in `unreadable` instead of failing the call.
  virtual Result<ApiKeyListing> ListApiKeys() = 0;
  /// Appends an entry; the registry assigns its seq (event.seq is ignored).
  /// Seqs are distinct, also across servers sharing a database, and an append
  /// made after another returned gets a higher one. InvalidArgument for an
  /// empty action or outcome or a negative status.
  virtual Status AppendAudit(const AuditEvent& event) = 0;
  /// Entries matching `filter`, newest first (by seq), at most filter.limit.
  virtual Result<std::vector<AuditEvent>> ListAudit(const AuditFilter& filter) = 0;

  // Feature statistics and usage (operations.h, issue #7).

  /// Stores the records of one run (replacing any of the same job and feature),
  /// all or none. InvalidArgument for an empty job_id, feature or
  /// feature_set_id.
  virtual Status PutFeatureStatistics(const std::vector<FeatureStatisticsRecord>& records) = 0;
  /// Records computed at or after `since`, of one feature set (by id) or of
  /// all when empty; oldest first (by computed_at, then job id, then feature).
  virtual Result<std::vector<FeatureStatisticsRecord>> ListFeatureStatistics(
      TimestampMicros since, std::string_view feature_set_id) = 0;
  /// Adds the counts to the stored rows with the same (day, key_id,
  /// feature_set, feature), creating missing rows; all in one transaction.
  /// InvalidArgument (and nothing added) for a day that is not a calendar day
  /// written YYYY-MM-DD, an empty feature_set, or a negative count.
  virtual Status AddUsage(const std::vector<UsageCount>& counts) = 0;
  /// Rows whose day is >= since_day ("YYYY-MM-DD"; "" for every day), ordered
  /// by day, key_id, feature_set, feature. InvalidArgument (field "since_day")
  /// for anything else.
  virtual Result<std::vector<UsageCount>> ListUsage(std::string_view since_day) = 0;

  /// Releases connections; further calls fail. Idempotent.
  virtual Status Close() = 0;
};

/// Opens the registry a URI names: "sqlite:///abs/path.db", "sqlite://rel/path.db",
/// "sqlite::memory:", "postgresql://user:pass@host:5432/db" (or postgres://),
/// which connects at once: Unavailable if it cannot. Does not migrate.
Result<std::unique_ptr<Registry>> RegistryFromUri(const std::string& uri);

}  // namespace fstore
