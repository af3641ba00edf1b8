#pragma once

// Online serving: POST /api/v1/serving/online. The latest feature values of
// entities from the online store, in well under a millisecond.
//
// The hot path never queries the registry: definitions are served from an
// immutable in-memory snapshot (feature sets, their features, entities),
// rebuilt off the request path and swapped atomically -- by the writer of a
// definition change in this process (Refresh), and by a background poll of
// the registry's change sequence for changes made by other processes. One
// multi-get per feature set per request; an optional bounded LRU of entity
// records in front of the store (SERVING_CACHE_*), invalidated per feature set
// by materialization writes and bounded in age by its ttl.
//
// Request, the seed's form:
//   {"feature_sets": ["user_profile"], "entities": {"user": ["u1", "u2"]},
//    "features": ["user_age", "user_profile:last_login"]}
// answers {"features": {"u1": {"user_age": 28, ...}, ...}, "metadata": {...}}.
// With several entity names in "entities" the labels are "entity:value".
// The row form serves feature sets keyed by several entities:
//   {"feature_sets": [...], "features": [...],
//    "entity_rows": [{"user_id": "u1", "merchant_id": "m7"}, ...]}
// answers {"rows": [{"user_id": "u1", "merchant_id": "m7", "f": ...}, ...], "metadata": ...},
// one row per entity row, in order.
// metadata: latency_ms (server side), cache_hit (every record came from the
// cache), missing_entities {feature set: [labels without a live record]}.
// A feature without a live record is its default_value, else null. Values
// older than the feature set's ttl are missing.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/periodic_thread.h"
#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/online/online_store.h"
#include "fstore/service/request_context.h"

namespace arrow::internal {
class ThreadPool;
}

namespace fstore {

class Registry;
class OnlineStore;

/// A feature value as JSON: timestamps as ISO 8601 text, lists as arrays,
/// null for null and for non-finite floats (JSON has no NaN).
boost::json::value FeatureValueToJson(const FeatureValue& value);

struct OnlineServingOptions {
  bool cache_enabled = false;
  int cache_ttl_seconds = 300;
  int cache_entries = 100000;
  int max_entities = 1000;  ///< per request; more is 413
  /// How often the registry's change sequence is polled for definition
  /// changes made by other processes; 0: never.
  std::chrono::milliseconds poll_interval{1000};
};

class OnlineServing {
 public:
  OnlineServing(Registry* registry, OnlineStore* online, OnlineServingOptions options);
  ~OnlineServing();

  /// Loads the first snapshot and starts the poll thread.
  Status Start();
  /// Stops the poll thread; idempotent.
  void Stop();

  /// Rebuilds the definitions snapshot from the registry and swaps it in.
  Status Refresh();
  /// Drops cached records of `feature_set` (its online records changed).
  void InvalidateFeatureSet(const std::string& feature_set);
  /// With the serving cache on a store other processes write too (Redis):
  /// drops the cached records of every feature set whose
  /// OnlineStore::WriteVersions moved since the last call, i.e. that another
  /// server or the CLI wrote. The poll thread calls it each poll_interval.
  void CheckWriteVersions();

  /// Serves one request body: the response as JSON text. `now` decides ttl
  /// expiry (UTC micros).
  /// PermissionDenied naming the first feature set (requested, or read for a
  /// cross-set derived feature) context.principal may not use; fills
  /// context.usage.
  Result<std::string> Serve(const boost::json::value& body, TimestampMicros now,
                                    const RequestContext& context = {});

  struct Snapshot;
  class Cache;

 private:
  /// One poll of the registry's change sequence; Refresh when it moved.
  void Poll();
  /// Runs `work` -- a loop taking items from a shared counter until none
  /// are left -- on this thread and, when `share` and there is a helper, on
  /// the helper at once; returns when all items are done.
  void RunShared(const std::function<void()>& work, bool share);

  Registry* registry_;
  OnlineStore* online_;
  OnlineServingOptions options_;
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::unique_ptr<Cache> cache_;
  /// The second thread of requests reading several feature sets and of
  /// big responses' rendering; null on one core.
  std::shared_ptr<arrow::internal::ThreadPool> helpers_;
  /// Fewer keys than this to read are read on the calling thread alone
  /// (handing work over costs more than it saves).
  static constexpr size_t kParallelReadKeys = 64;
  /// A response of at least this many values is rendered on two threads
  /// (by runs of one set's features).
  static constexpr size_t kParallelJsonValues = 2048;
  std::mutex refresh_mutex_;  // one rebuild at a time
  /// The store's write version of each set as last seen (CheckWriteVersions).
  std::mutex versions_mutex_;
  std::map<std::string, int64_t, std::less<>> write_versions_;
  bool write_versions_seen_ = false;

  PeriodicThread poll_thread_;
};

}  // namespace fstore
