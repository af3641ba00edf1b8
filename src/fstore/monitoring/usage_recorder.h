#pragma once

// Usage counts (GET /monitoring/usage): requests per (UTC day, API key,
// feature set, feature), aggregated in memory by the serving routes and
// added to the registry (Registry::AddUsage) by a background thread every
// interval, on Flush and when the recorder is destroyed. A flush that fails
// keeps its counts for the next one: counts are never lost while the process
// lives, and never counted twice.
//
// Rows per request (operations.h UsageCount):
//  - feature_set kRequestRow ("(request)"), feature "": one serving request
//    (requests 1), which is what the per API key counts count;
// and per feature set it read:
//  - feature "" : the set was asked once (requests 1), for `entities` rows,
//    `entities_found` of them found (online only; 0 otherwise);
//  - feature "<name>": requests 1 per feature served from the set;
//  - feature kOnlineRow ("(online)"): the same as "" but only for online
//    requests, so that coverage (found / requested) divides online found
//    entities by online requested ones, not by historical rows, which have
//    no notion of found.
// No feature or feature set name can take the markers (names are identifiers).
// With a feature set filter, a report counts requests and API keys by that
// set's rows (the request rows name no set).

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <tuple>
#include <vector>

#include <boost/json/object.hpp>

#include "fstore/core/periodic_thread.h"
#include "fstore/core/status.h"
#include "fstore/registry/operations.h"

namespace fstore::monitoring {

inline constexpr std::string_view kOnlineRow = "(online)";
inline constexpr std::string_view kRequestRow = "(request)";

/// Thread-safe.
class UsageRecorder {
 public:
  /// Where counts go: Registry::AddUsage in the server. All or nothing: on
  /// an error the counts are kept and offered again.
  using Sink = std::function<Status(const std::vector<UsageCount>&)>;
  /// `sink` is called from the recorder's thread and from Flush; whatever
  /// it uses must outlive the recorder.
  explicit UsageRecorder(Sink sink, std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~UsageRecorder();
  UsageRecorder(const UsageRecorder&) = delete;
  UsageRecorder& operator=(const UsageRecorder&) = delete;

  /// Adds counts to the pending ones (same key: summed).
  void Add(const std::vector<UsageCount>& counts);

  /// One feature set a serving request read.
  struct SetUse {
    std::string_view feature_set;
    const std::vector<std::string>* features;  ///< as served; repeats count once
    int64_t entities = 0;
    int64_t entities_found = 0;  ///< online only
    bool online = false;         ///< adds the kOnlineRow row
  };
  /// One serving request: the same rows as Add would get (file comment),
  /// but aggregated per request shape (day, key, sets and features), which
  /// costs one hash lookup per request on the serving path instead of one
  /// per row; rows are made at flush time.
  void AddRequest(std::string_view day, std::string_view key_id, const std::vector<SetUse>& sets);
  /// Writes the pending counts to the registry now.
  Status Flush();

 private:
  using Key = std::tuple<std::string, std::string, std::string, std::string>;

  Sink sink_;
  std::mutex mutex_;
  std::mutex flush_mutex_;  // one flush at a time: counts taken are written before the next
  std::map<Key, UsageCount> pending_;
  struct Shape {
    std::string day, key_id;
    struct Set {
      std::string feature_set;
      std::vector<std::string> features;  // distinct
      bool online = false;
      int64_t entities = 0, entities_found = 0;
    };
    std::vector<Set> sets;
    int64_t requests = 0;
  };
  std::unordered_map<std::string, Shape> shapes_;  // by the request's shape
  PeriodicThread thread_;  // last: stopped before the members it uses go
};

/// The usage report over registry rows with day in [start_day, end_day]
/// (inclusive), optionally of one feature set and/or one key:
/// {"start_date", "end_date", "days": [{"date", "requests" (serving requests),
///   "feature_set_requests", "entities_requested",
///   "entities_found", "coverage", "feature_sets": {name: {"requests", "entities_requested",
///   "online_entities_requested", "entities_found", "coverage"}}, "features": {"set:feature":
///   requests}, "api_keys": {key_id or "anonymous": requests}}], "totals": {...same}}.
/// coverage is found / requested over online requests; null when none.
boost::json::object UsageReport(const std::vector<UsageCount>& rows, std::string_view start_day,
                                std::string_view end_day, std::string_view feature_set,
                                std::string_view key_id);

}  // namespace fstore::monitoring
