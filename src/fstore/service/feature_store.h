#pragma once

// FeatureStore: the facade the server and the CLI talk to. It wires the
// registry (and, in later layers, the stores and engines) and owns the rules
// that span definitions: references between features, cycles, dependants,
// versions. It does no I/O of its own beyond its components'.
//
// Definitions arrive as JSON (the API's and `fstore apply`'s form) and leave
// as model structs; codec.h turns those back into JSON.
//
// Thread safety: every method may be called concurrently. Writes use the
// registry's optimistic concurrency and retry on conflicts, so concurrent
// patches of one object all land, each as its own version.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/status.h"
#include "fstore/materialize/materialization_engine.h"
#include "fstore/materialize/materialization_scheduler.h"
#include "fstore/offline/offline_store.h"
#include "fstore/online/online_store.h"
#include "fstore/registry/definitions.h"
#include "fstore/registry/registry.h"
#include "fstore/security/encryption.h"
#include "fstore/service/batch_serving.h"
#include "fstore/service/online_serving.h"

namespace fstore {

struct FeatureStoreOptions {
  std::string registry_uri;       ///< sqlite://..., postgresql://...
  std::string offline_store_uri;  ///< file:///abs/dir | s3://bucket[/prefix]
  std::string online_store_uri;   ///< rocksdb:///abs/dir (redis:// later)
  int compute_threads = 0;        ///< materialization workers, point-in-time join threads; 0: one per core
  bool run_scheduler = false;     ///< trigger materialization_schedule runs
  /// Resume jobs a previous process left queued or running (the server does;
  /// the CLI does not).
  bool recover_jobs = false;
  OnlineServingOptions serving;
  /// How to reach S3: for an s3:// offline_store_uri, and for s3:// entity
  /// sources and outputs of batch serving (whatever the offline store is).
  S3ConnectionOptions s3;
  /// Encryption at rest (security/encryption.h); null: off.
  std::shared_ptr<const Cipher> cipher;
};

/// A materialization request as the API takes it (the seed's shape).
struct MaterializeOptions {
  std::optional<TimestampMicros> start;
  std::optional<TimestampMicros> end;
  bool wait = false;
  std::string trigger = "api";
};

struct FeatureSetFilter {
  std::string owner;   ///< exact match
  std::string entity;  ///< has this entity
  std::string tag;     ///< has this tag
  std::string q;       ///< case-insensitive substring of name or description
  bool include_deleted = false;
};

struct FeatureFilter {
  std::string feature_set;  ///< id or name
  std::string data_type;
  std::string tag;
  std::string q;
  bool include_deleted = false;
};

/// One search result.
struct SearchHit {
  std::string kind;  ///< "entity" | "feature_set" | "feature"
  std::string id;
  std::string name;
  std::string description;
  std::string feature_set;  ///< for features: the feature set's name
  double score = 0;
  std::vector<std::string> matched;  ///< fields that matched: name, description, tags, owner
};

class FeatureStore {
 public:
  /// Opens the registry (and applies migrations) and the stores.
  static Result<std::unique_ptr<FeatureStore>> Open(const FeatureStoreOptions& options);
  ~FeatureStore();

  // Entities
  Result<Entity> CreateEntity(const boost::json::value& body);
  Result<std::vector<Entity>> ListEntities();
  Result<Entity> GetEntity(std::string_view id_or_name);

  // Feature sets
  Result<FeatureSet> CreateFeatureSet(const boost::json::value& body);
  Result<std::vector<FeatureSet>> ListFeatureSets(const FeatureSetFilter& filter);
  /// The current version, or `version` from its history. Deleted feature sets
  /// are NotFound unless a version is asked for.
  Result<FeatureSet> GetFeatureSet(std::string_view id_or_name,
                                   std::optional<int64_t> version = std::nullopt);
  /// Live features of a feature set, by name.
  Result<std::vector<Feature>> FeaturesOf(const FeatureSet& feature_set);
  Result<FeatureSet> UpdateFeatureSet(std::string_view id_or_name,
                                      const boost::json::value& patch);
  /// Soft delete, with the feature set's features; Conflict naming the
  /// features of other feature sets that depend on them.
  Result<FeatureSet> DeleteFeatureSet(std::string_view id_or_name);
  Result<std::vector<FeatureSet>> FeatureSetVersions(std::string_view id_or_name);

  // Features. A feature is named by id, "feature_set:feature", or a bare name
  // when that is unique among live features.
  Result<Feature> CreateFeature(const boost::json::value& body);
  Result<std::vector<Feature>> ListFeatures(const FeatureFilter& filter);
  Result<Feature> GetFeature(std::string_view ref, std::optional<int64_t> version = std::nullopt);
  Result<Feature> UpdateFeature(std::string_view ref, const boost::json::value& patch);
  Result<Feature> DeleteFeature(std::string_view ref);
  Result<std::vector<Feature>> FeatureVersions(std::string_view ref);
  /// {"feature": ..., "upstream": {...}, "downstream": [...]}
  Result<boost::json::object> FeatureLineage(std::string_view ref);

  // Materialization
  /// Parses the seed's request body: {"start_date", "end_date", "wait"}.
  static Result<MaterializeOptions> ParseMaterializeRequest(const boost::json::value& body);
  /// Submits a run of the feature set (and waits for it with options.wait).
  Result<MaterializationJob> Materialize(std::string_view feature_set,
                                         const MaterializeOptions& options);
  /// Runs on the calling thread (the CLI).
  Result<MaterializationJob> MaterializeNow(std::string_view feature_set,
                                            const MaterializeOptions& options);
  Result<MaterializationJob> GetJob(std::string_view job_id);
  Result<std::vector<MaterializationJob>> ListJobs(std::string_view feature_set, size_t limit);
  Result<MaterializationJob> RetryJob(std::string_view job_id);

  /// The online store's raw records of a feature set for entity keys given as
  /// text (one value per join key, parsed by the entity's value_type), as
  /// {"<key>": {"event_timestamp", "created_timestamp", "values": {...}} or
  /// null}: what `fstore get-online` prints. No ttl is applied.
  Result<boost::json::object> DumpOnlineRecords(std::string_view feature_set,
                                                const std::vector<std::vector<std::string>>& keys);

  /// Ranked matches across entities, feature sets and features.
  Result<std::vector<SearchHit>> Search(std::string_view q, size_t limit);

  /// OK when the registry, the online store and the offline store answer
  /// (OfflineStore::CheckHealth: S3 within seconds, even when it is down).
  Status CheckReady();
  /// Closes the registry and stores; idempotent.
  Status Close();

  /// POST /api/v1/serving/online (online_serving.h): the response body.
  Result<std::string> ServeOnline(const boost::json::value& body,
                                          const RequestContext& context = {});

  const FeatureStoreOptions& options() const { return options_; }
  Registry* registry() { return registry_.get(); }
  OfflineStore* offline_store() { return offline_.get(); }
  OnlineStore* online_store() { return online_.get(); }
  /// POST /api/v1/serving/batch jobs (batch_serving.h).
  BatchServing* batch_serving() { return batch_.get(); }

 private:
  /// Commits a definition change, then refreshes the serving snapshot.
  Status CommitDefinitions(const RegistryWrite& write);

  FeatureStore(std::unique_ptr<Registry> registry, std::unique_ptr<OfflineStore> offline,
               std::unique_ptr<OnlineStore> online, FeatureStoreOptions options);

  // Declaration order is destruction order reversed: the scheduler and the
  // engine stop before the stores and the registry close.
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<OfflineStore> offline_;
  std::unique_ptr<OnlineStore> online_;
  std::unique_ptr<OnlineServing> serving_;
  std::unique_ptr<MaterializationEngine> engine_;
  std::unique_ptr<MaterializationScheduler> scheduler_;
  std::unique_ptr<BatchServing> batch_;
  FeatureStoreOptions options_;
};

}  // namespace fstore
