#include "fstore/monitoring/data_freshness.h"

#include <algorithm>

#include "fstore/core/cron.h"
#include "fstore/core/duration.h"

namespace fstore::monitoring {
namespace json = boost::json;

namespace {

json::value TimeOrNull(std::optional<TimestampMicros> t) {
  if (!t) return nullptr;
  return json::value(FormatTimestamp(*t));
}

json::value AgeOrNull(std::optional<TimestampMicros> t, TimestampMicros now) {
  if (!t) return nullptr;
  return static_cast<double>(now - *t) / 1e6;
}

}  // namespace

json::object FeatureSetFreshness(const FeatureSet& fs, const std::vector<MaterializationJob>& jobs,
                                 std::optional<TimestampMicros> watermark, TimestampMicros now) {
  std::optional<TimestampMicros> offline, online;
  const MaterializationJob* last_success = nullptr;
  for (const MaterializationJob& job : jobs) {
    if (job.status != JobStatus::kSucceeded) continue;
    if (job.max_event_time_offline) {
      offline = std::max(offline.value_or(*job.max_event_time_offline), *job.max_event_time_offline);
    }
    if (job.max_event_time_online) {
      online = std::max(online.value_or(*job.max_event_time_online), *job.max_event_time_online);
    }
    if (job.finished_at &&
        (!last_success || *job.finished_at > last_success->finished_at.value_or(0))) {
      last_success = &job;
    }
  }
  std::optional<TimestampMicros> newest = offline;
  if (online) newest = std::max(newest.value_or(*online), *online);

  json::object o;
  o["feature_set"] = fs.name;
  o["schedule"] = fs.materialization_schedule.empty() ? json::value(nullptr)
                                                      : json::value(fs.materialization_schedule);
  o["ttl"] = fs.ttl.empty() ? json::value(nullptr) : json::value(fs.ttl);
  o["watermark"] = TimeOrNull(watermark);
  o["last_successful_run"] =
      last_success ? json::value(json::object{{"job_id", last_success->id},
                                              {"finished_at", TimeOrNull(last_success->finished_at)}})
                   : json::value(nullptr);
  o["offline"] = fs.offline_enabled ? json::value(json::object{{"newest_event_time", TimeOrNull(offline)},
                                                               {"age_seconds", AgeOrNull(offline, now)}})
                                    : json::value(nullptr);
  o["online"] = fs.online_enabled ? json::value(json::object{{"newest_event_time", TimeOrNull(online)},
                                                             {"age_seconds", AgeOrNull(online, now)}})
                                  : json::value(nullptr);
  o["newest_event_time"] = TimeOrNull(newest);
  o["age_seconds"] = AgeOrNull(newest, now);

  std::optional<int64_t> stale_after;
  std::string basis;
  o["expected_interval_seconds"] = nullptr;
  if (!fs.materialization_schedule.empty()) {
    auto cron = CronSchedule::Parse(fs.materialization_schedule);
    if (cron.ok()) {
      auto first = cron->NextAfter(now);
      auto second = first.ok() ? cron->NextAfter(*first) : first;
      if (second.ok()) {
        const int64_t interval = *second - *first;
        o["expected_interval_seconds"] = static_cast<double>(interval) / 1e6;
        stale_after = 2 * interval;
        basis = "two schedule intervals";
      }
    }
  }
  if (!stale_after && !fs.ttl.empty()) {
    if (auto ttl = ParseDuration(fs.ttl); ttl.ok()) {
      stale_after = *ttl;
      basis = "the ttl";
    }
  }
  o["stale_after_seconds"] =
      stale_after ? json::value(static_cast<double>(*stale_after) / 1e6) : json::value(nullptr);
  bool stale = false;
  std::string reason;
  if (!stale_after) {
    reason = "not scheduled and no ttl: never stale";
  } else if (!newest) {
    stale = true;
    reason = "no materialized data";
  } else if (now - *newest > *stale_after) {
    stale = true;
    reason = "newest data is older than " + basis;
  } else {
    reason = "newest data is within " + basis;
  }
  o["stale"] = stale;
  o["reason"] = reason;
  return o;
}

}  // namespace fstore::monitoring
