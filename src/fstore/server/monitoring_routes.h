#pragma once

// The monitoring routes (GET /monitoring/metrics, /statistics,
// /data-freshness, /usage; issue #7) and what the serving routes report to
// them. Kept apart from api_routes.cc so that the serving routes only hand
// over what a request used.

#include <memory>

#include "fstore/monitoring/usage_recorder.h"
#include "fstore/server/http_message.h"
#include "fstore/server/router.h"
#include "fstore/service/feature_store.h"
#include "fstore/service/request_context.h"

namespace fstore {

/// What the serving routes record per request: metrics (cache hits, online
/// store time, entity coverage) and usage counts. Thread-safe. Its usage
/// recorder flushes to `store`'s registry every second and when destroyed,
/// so `store` must outlive it (the router that holds it).
class ServingMonitor {
 public:
  enum class Kind { kOnline, kHistorical, kBatch };
  explicit ServingMonitor(FeatureStore* store);

  /// After a successful serving call. For historical and batch retrieval
  /// the caller sets each set's `entities` to the entity rows it read.
  void Record(const HttpRequest& request, const ServingUsage& usage, Kind kind);
  monitoring::UsageRecorder* usage_recorder() { return &usage_; }

 private:
  monitoring::UsageRecorder usage_;
};

/// Registers the /monitoring/* routes. `store` must outlive the router.
void AddMonitoringRoutes(FeatureStore* store, Router* router,
                         std::shared_ptr<ServingMonitor> monitor);

}  // namespace fstore
