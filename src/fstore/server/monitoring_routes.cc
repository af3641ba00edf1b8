#include "fstore/server/monitoring_routes.h"

#include <charconv>
#include <cmath>

#include "fstore/core/time.h"
#include "fstore/monitoring/data_freshness.h"
#include "fstore/monitoring/feature_statistics.h"
#include "fstore/monitoring/metrics.h"
#include "fstore/registry/codec.h"
#include "fstore/server/http_error.h"
#include "fstore/server/internal/query_params.h"

namespace fstore {
namespace json = boost::json;

using server_internal::CheckQueryParams;
using server_internal::PositiveIntParam;

namespace {

std::string DayOf(TimestampMicros t) { return FormatTimestamp(t).substr(0, 10); }

/// A "YYYY-MM-DD" query parameter; InvalidArgument naming it otherwise.
Result<std::optional<std::string>> DateParam(const HttpRequest& req, const std::string& name) {
  auto text = req.Query(name);
  if (!text) return std::optional<std::string>();
  auto bad = [&] {
    return InvalidArgument(name, "'" + std::string(*text) +
                                     "' must be a date YYYY-MM-DD (UTC)");
  };
  if (text->size() != 10 || (*text)[4] != '-' || (*text)[7] != '-') return bad();
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!std::isdigit(static_cast<unsigned char>((*text)[i]))) return bad();
  }
  auto t = ParseTimestamp(*text);
  if (!t.ok() || DayOf(*t) != *text) return bad();  // 2026-02-30 and the like
  return std::optional<std::string>(std::string(*text));
}

Result<double> NonNegativeNumberParam(const HttpRequest& req, const std::string& name,
                                      double fallback) {
  auto text = req.Query(name);
  if (!text) return fallback;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size() || !std::isfinite(value) ||
      value < 0) {
    return InvalidArgument(name, "'" + std::string(*text) + "' must be a number >= 0");
  }
  return value;
}

}  // namespace

ServingMonitor::ServingMonitor(FeatureStore* store)
    : usage_([registry = store->registry()](const std::vector<UsageCount>& counts) {
        return registry->AddUsage(counts);
      }) {}

void ServingMonitor::Record(const HttpRequest& request, const ServingUsage& usage, Kind kind) {
  auto& m = monitoring::FstoreMetrics::Get();
  if (kind == Kind::kOnline) {
    if (usage.cache_hits > 0) m.serving_cache_hits->Inc(static_cast<double>(usage.cache_hits));
    if (usage.cache_misses > 0) {
      m.serving_cache_misses->Inc(static_cast<double>(usage.cache_misses));
    }
    m.online_store_read_duration->Observe(usage.online_store_seconds);
  }
  // The UTC day, formatted once per day and thread.
  thread_local int64_t day_number = -1;
  thread_local std::string day;
  const TimestampMicros now = NowMicros();
  if (now / kMicrosPerDay != day_number) {
    day_number = now / kMicrosPerDay;
    day = DayOf(now);
  }
  std::vector<monitoring::UsageRecorder::SetUse> sets;
  sets.reserve(usage.sets.size());
  for (const ServingUsage::Set& s : usage.sets) {
    const bool online = kind == Kind::kOnline;
    const int64_t found = online ? std::max<int64_t>(s.entities_found, 0) : 0;
    sets.push_back({.feature_set = s.feature_set, .features = &s.features,
                    .entities = s.entities, .entities_found = found, .online = online});
    if (online) {
      m.serving_entities_requested->Inc(static_cast<double>(s.entities));
      m.serving_entities_found->Inc(static_cast<double>(found));
    }
  }
  usage_.AddRequest(day, request.principal ? request.principal->key_id : "", sets);
}

void AddMonitoringRoutes(FeatureStore* store, Router* router,
                         std::shared_ptr<ServingMonitor> monitor) {
  router->Add("GET", "/monitoring/metrics", [](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {}); !st.ok()) return ErrorResponse(st);
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = monitoring::FstoreMetrics::Get().registry.Render();
    return r;
  });

  router->Add("GET", "/monitoring/statistics", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"days", "feature_set", "psi_threshold"}); !st.ok()) {
      return ErrorResponse(st);
    }
    FSTORE_ASSIGN_OR_RESPOND(int64_t days, PositiveIntParam(req, "days", 7, 365));
    FSTORE_ASSIGN_OR_RESPOND(double threshold, NonNegativeNumberParam(req, "psi_threshold", 0.2));
    std::string feature_set_id;
    if (auto name = req.Query("feature_set")) {
      FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->GetFeatureSet(*name));
      feature_set_id = fs.id;
    }
    const TimestampMicros now = NowMicros();
    const TimestampMicros since = now - days * kMicrosPerDay;
    FSTORE_ASSIGN_OR_RESPOND(auto records,
                      store->registry()->ListFeatureStatistics(since, feature_set_id));
    // Oldest first: runs per (feature set, feature) in order.
    std::map<std::pair<std::string, std::string>, std::vector<monitoring::StatisticsRun>> runs;
    for (const FeatureStatisticsRecord& r : records) {
      FSTORE_ASSIGN_OR_RESPOND(
          json::object body, monitoring::OpenStatisticsBody(r, store->options().cipher.get()));
      runs[{r.feature_set_name, r.feature}].push_back({r.job_id, r.computed_at, std::move(body)});
    }
    json::array features;
    int64_t drifted = 0;
    for (auto& [key, list] : runs) {
      json::object o = monitoring::MergeStatistics(list, threshold);
      if (o["drift"].is_object() && o["drift"].as_object()["drifted"].as_bool()) ++drifted;
      json::object entry{{"feature_set", key.first}, {"feature", key.second}};
      for (auto& [k, v] : o) entry[k] = std::move(v);
      features.emplace_back(std::move(entry));
    }
    const int64_t count = static_cast<int64_t>(features.size());
    return JsonResponse(200, json::object{{"days", days},
                                          {"since", FormatTimestamp(since)},
                                          {"psi_threshold", threshold},
                                          {"features", std::move(features)},
                                          {"count", count},
                                          {"drifted", drifted}});
  });

  router->Add("GET", "/monitoring/data-freshness", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"feature_set"}); !st.ok()) return ErrorResponse(st);
    std::vector<FeatureSet> sets;
    if (auto name = req.Query("feature_set")) {
      FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->GetFeatureSet(*name));
      sets.push_back(std::move(fs));
    } else {
      FSTORE_ASSIGN_OR_RESPOND(sets, store->ListFeatureSets(FeatureSetFilter{}));
    }
    const TimestampMicros now = NowMicros();
    json::array out;
    int64_t stale = 0;
    for (const FeatureSet& fs : sets) {
      FSTORE_ASSIGN_OR_RESPOND(auto jobs, store->registry()->ListJobs(fs.id, 10000));
      FSTORE_ASSIGN_OR_RESPOND(auto watermark, store->registry()->Watermark(fs.id));
      json::object o = monitoring::FeatureSetFreshness(fs, jobs, watermark, now);
      if (o["stale"].as_bool()) ++stale;
      out.emplace_back(std::move(o));
    }
    const int64_t count = static_cast<int64_t>(out.size());
    return JsonResponse(200, json::object{{"checked_at", FormatTimestamp(now)},
                                          {"feature_sets", std::move(out)},
                                          {"count", count},
                                          {"stale", stale}});
  });

  router->Add("GET", "/monitoring/usage", [store, monitor](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"start_date", "end_date", "feature_set", "key_id"});
        !st.ok()) {
      return ErrorResponse(st);
    }
    const TimestampMicros now = NowMicros();
    FSTORE_ASSIGN_OR_RESPOND(auto start, DateParam(req, "start_date"));
    FSTORE_ASSIGN_OR_RESPOND(auto end, DateParam(req, "end_date"));
    const std::string start_day = start.value_or(DayOf(now - 7 * kMicrosPerDay));
    const std::string end_day = end.value_or(DayOf(now));
    if (end_day < start_day) {
      return ErrorResponse(InvalidArgument(
          "end_date", "'" + end_day + "' is before start_date '" + start_day + "'"));
    }
    // What this server counted so far is in the registry before it answers.
    if (Status st = monitor->usage_recorder()->Flush(); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(auto rows, store->registry()->ListUsage(start_day));
    return JsonResponse(200, monitoring::UsageReport(rows, start_day, end_day,
                                                     req.Query("feature_set").value_or(""),
                                                     req.Query("key_id").value_or("")));
  });
}

}  // namespace fstore
