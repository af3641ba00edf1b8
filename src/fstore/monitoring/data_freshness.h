#pragma once

// Data freshness (GET /monitoring/data-freshness): per feature set, the
// newest event time in each store, its age, and whether it is stale.
//
// The newest event time of a store is the max over the set's successful
// runs of what each run wrote there (MaterializationJob::max_event_time_*);
// rows pushed through the API are not counted. Stale rule: a scheduled set
// is stale when its newest data (the newer of the two stores) is older than
// two schedule intervals (the interval is the gap between the schedule's
// next two times); an unscheduled set with a ttl is stale when its newest
// data is older than the ttl; an unscheduled set without a ttl is never
// stale. A scheduled or ttl'd set with no data at all is stale.

#include <optional>
#include <vector>

#include <boost/json/object.hpp>

#include "fstore/core/time.h"
#include "fstore/registry/definitions.h"
#include "fstore/registry/materialization_job.h"

namespace fstore::monitoring {

/// {"feature_set", "schedule", "expected_interval_seconds", "ttl", "watermark",
///  "last_successful_run": {"job_id", "finished_at"} | null,
///  "offline": {"newest_event_time", "age_seconds"} | null (store disabled),
///  "online": {...} | null, "newest_event_time", "age_seconds",
///  "stale_after_seconds" | null, "stale", "reason"}.
/// `jobs` in any order; `now` in micros.
boost::json::object FeatureSetFreshness(const FeatureSet& feature_set,
                                        const std::vector<MaterializationJob>& jobs,
                                        std::optional<TimestampMicros> watermark,
                                        TimestampMicros now);

}  // namespace fstore::monitoring
