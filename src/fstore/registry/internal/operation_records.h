#pragma once

// What the registry backends share about the issue #7 records (operations.h):
// the checks every backend makes before writing one, and how an API key's
// feature_sets list is stored (a JSON array of strings in a text column).
// Shared by sqlite/ and postgres/, which differ only in their SQL.

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fstore/core/status.h"
#include "fstore/registry/codec.h"
#include "fstore/registry/operations.h"

namespace fstore::registry_internal {

inline std::string QuotedText(std::string_view s) { return "'" + std::string(s) + "'"; }

/// A real calendar day written "YYYY-MM-DD".
inline bool IsIsoDay(std::string_view day) {
  if (day.size() != 10 || day[4] != '-' || day[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (day[i] < '0' || day[i] > '9') return false;
  }
  auto number = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) v = v * 10 + (day[i] - '0');
    return v;
  };
  int year = number(0, 4), month = number(5, 2), dom = number(8, 2);
  if (month < 1 || month > 12 || dom < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int days = kDays[month - 1] + (month == 2 && leap ? 1 : 0);
  return dom <= days;
}

inline Status CheckApiKey(const ApiKeyRecord& key) {
  if (key.id.empty()) return InvalidArgument("id", "an API key record has no id");
  std::string noun = "API key " + QuotedText(key.id);
  if (key.role.empty()) return InvalidArgument("role", noun + " has no role");
  if (key.salt.empty()) return InvalidArgument("salt", noun + " has no salt");
  if (key.hash.empty()) return InvalidArgument("hash", noun + " has no hash");
  for (const std::string& name : key.feature_sets) {
    if (name.empty()) {
      return InvalidArgument("feature_sets", noun + " lists an empty feature set name");
    }
  }
  return Status::OK();
}

/// InsertApiKey's error for an id that a stored key has.
inline Status ApiKeyIdTaken(std::string_view id) {
  return AlreadyExists("id", "API key " + QuotedText(id) + " already exists");
}

inline Status CheckAuditEvent(const AuditEvent& event) {
  if (event.action.empty()) return InvalidArgument("action", "an audit event has no action");
  if (event.outcome.empty()) {
    return InvalidArgument("outcome",
                           "audit event " + QuotedText(event.action) + " has no outcome");
  }
  if (event.status < 0) {
    return InvalidArgument("status", "audit event " + QuotedText(event.action) +
                                         ": status must not be negative, got " +
                                         std::to_string(event.status));
  }
  return Status::OK();
}

inline Status CheckStatistics(const FeatureStatisticsRecord& record) {
  if (record.job_id.empty()) {
    return InvalidArgument("job_id", "a feature statistics record has no job id");
  }
  std::string noun = "statistics of job " + QuotedText(record.job_id);
  if (record.feature.empty()) return InvalidArgument("feature", noun + " names no feature");
  if (record.feature_set_id.empty()) {
    return InvalidArgument("feature_set_id", noun + " names no feature set id");
  }
  return Status::OK();
}

inline Status CheckUsage(const UsageCount& count) {
  if (count.day.empty()) return InvalidArgument("day", "a usage count has no day");
  if (!IsIsoDay(count.day)) {
    return InvalidArgument("day", "a usage count's day must be a date written YYYY-MM-DD, got " +
                                      QuotedText(count.day));
  }
  if (count.feature_set.empty()) {
    return InvalidArgument("feature_set", "a usage count of " + count.day +
                                              " names no feature set");
  }
  auto non_negative = [&](std::string_view field, int64_t value) -> Status {
    if (value >= 0) return Status::OK();
    return InvalidArgument(std::string(field),
                           "usage count of feature set " + QuotedText(count.feature_set) + ": " +
                               std::string(field) + " must not be negative, got " +
                               std::to_string(value));
  };
  ARROW_RETURN_NOT_OK(non_negative("requests", count.requests));
  ARROW_RETURN_NOT_OK(non_negative("entities", count.entities));
  return non_negative("entities_found", count.entities_found);
}

/// ListUsage's since_day: empty (every day) or a day.
inline Status CheckSinceDay(std::string_view since_day) {
  if (since_day.empty() || IsIsoDay(since_day)) return Status::OK();
  return InvalidArgument("since_day", "must be a date written YYYY-MM-DD, got " +
                                          QuotedText(since_day));
}

/// Checks every count and adds up those with the same (day, key_id,
/// feature_set, feature): one upsert per row, in key order, so that two
/// concurrent batches lock rows in the same order (no deadlock) and a batch
/// never upserts one row twice.
inline Result<std::vector<UsageCount>> MergeUsage(const std::vector<UsageCount>& counts) {
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<Key, UsageCount> merged;
  for (const UsageCount& count : counts) {
    ARROW_RETURN_NOT_OK(CheckUsage(count));
    Key key{count.day, count.key_id, count.feature_set, count.feature};
    auto [it, inserted] = merged.try_emplace(key, count);
    if (!inserted) {
      it->second.requests += count.requests;
      it->second.entities += count.entities;
      it->second.entities_found += count.entities_found;
    }
  }
  std::vector<UsageCount> out;
  out.reserve(merged.size());
  for (auto& [key, count] : merged) out.push_back(std::move(count));
  return out;
}

/// An API key's feature_sets as stored: a JSON array of strings.
inline std::string FeatureSetsColumn(const std::vector<std::string>& names) {
  boost::json::array array;
  for (const std::string& name : names) array.emplace_back(name);
  return boost::json::serialize(array);
}

inline Result<std::vector<std::string>> ParseFeatureSetsColumn(const std::string& text,
                                                               std::string_view key_id) {
  auto bad = [&](std::string_view why) {
    return Internal("registry database: the feature sets of API key " + QuotedText(key_id) +
                    " cannot be read: " + std::string(why));
  };
  // Parsed here, not with ParseJson: its errors speak of a request body.
  boost::system::error_code ec;
  const boost::json::value json = boost::json::parse(text, ec);
  if (ec) return bad("not valid JSON (" + ec.message() + ")");
  if (!json.is_array()) return bad("not a JSON array");
  std::vector<std::string> out;
  for (const auto& item : json.as_array()) {
    if (!item.is_string()) return bad("an item is not a string");
    out.emplace_back(item.as_string());
  }
  return out;
}

/// An AuditFilter's action as the queries take it: an action ending in '.'
/// is a prefix ("feature_set." matches "feature_set.create"), anything else
/// matches exactly; and the limit as a SQL integer.
struct AuditQuery {
  std::string exact_action;
  std::string action_prefix;
  int64_t limit = 0;
};
inline AuditQuery AuditQueryOf(const AuditFilter& filter) {
  const bool prefix = !filter.action.empty() && filter.action.back() == '.';
  return AuditQuery{prefix ? "" : filter.action, prefix ? filter.action : "",
                    static_cast<int64_t>(std::min<size_t>(filter.limit, INT64_MAX))};
}

}  // namespace fstore::registry_internal
