#pragma once

// Records the registry keeps besides definitions and jobs (issue #7): API keys
// and the audit log (security/), per-run feature statistics and daily usage
// counts (monitoring/). Like jobs they are not versioned and do not bump the
// change sequence. Stored in migration 3 (api_keys, audit_log) and migration 4
// (feature_statistics, usage_daily) of each backend.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fstore/core/time.h"

namespace fstore {

/// An API key as stored: never the key itself, only a salted hash of it.
struct ApiKeyRecord {
  std::string id;                         ///< public id ("key_" + 16 hex), shown in lists
  std::string name;                       ///< free text label, may be empty
  std::string role;                       ///< "admin" | "writer" | "reader"
  std::vector<std::string> feature_sets;  ///< names it is limited to; empty: all
  std::string salt;                       ///< hex
  std::string hash;                       ///< hex SHA-256(salt || secret)
  TimestampMicros created_at = 0;
  std::optional<TimestampMicros> revoked_at = {};
};

/// A stored key row that cannot be read (damaged, or written by a newer
/// fstore): still a key, but one that authenticates nothing
/// (security/api_keys.h).
struct UnreadableApiKey {
  std::string id;
  std::string reason;  ///< the error, naming the key
  bool operator==(const UnreadableApiKey&) const = default;
};

/// The registry's API keys as read: one bad row does not hide the others.
struct ApiKeyListing {
  std::vector<ApiKeyRecord> keys;           ///< every readable key, revoked ones too
  std::vector<UnreadableApiKey> unreadable;  ///< the rows left out of `keys`
};

/// One audit log entry. Never holds a key or a feature value.
struct AuditEvent {
  int64_t seq = 0;            ///< assigned by the registry on append, increasing
  TimestampMicros time = 0;
  std::string key_id;         ///< "" when authentication is off or the key was unknown
  std::string action;         ///< "feature_set.create", "materialize", "key.revoke", "auth.denied", ...
  std::string target;         ///< what it acted on: a name or id, may be empty
  std::string outcome;        ///< "success" | "denied" | "failure"
  int status = 0;             ///< the HTTP status answered (0 outside HTTP: the CLI)
  std::string detail = {};    ///< a short reason (an error message), may be empty
};

struct AuditFilter {
  std::optional<TimestampMicros> since = {};  ///< time >= since
  std::optional<TimestampMicros> until = {};  ///< time < until
  std::string key_id = {};                    ///< exact; empty: any
  std::string action = {};  ///< exact, or a prefix ending in '.' ("feature_set."); empty: any
  std::string target = {};                    ///< exact; empty: any
  std::string outcome = {};                   ///< exact; empty: any
  size_t limit = 100;
};

/// The statistics of one feature over one materialization run's rows. `body`
/// is opaque to the registry (monitoring/ writes JSON, encrypted when
/// encryption at rest is on).
struct FeatureStatisticsRecord {
  std::string job_id;
  std::string feature_set_id;
  std::string feature_set_name;
  std::string feature;
  TimestampMicros computed_at = 0;
  std::string body;
};

/// Requests per (day, key, feature set, feature). `feature` is "" on the row
/// that counts the feature set's requests and entities.
struct UsageCount {
  std::string day;          ///< "YYYY-MM-DD" (UTC)
  std::string key_id;       ///< "" without authentication
  std::string feature_set;  ///< name
  std::string feature = {};  ///< name, or "" for the feature set row
  int64_t requests = 0;
  int64_t entities = 0;        ///< entity rows requested
  int64_t entities_found = 0;  ///< of those, with a live record (online)
};

}  // namespace fstore
