#pragma once

// What a serving call knows of its request beyond the body: who asks (the
// feature sets it may reach, security/principal.h) and where to report what
// was served (monitoring's usage counts and metrics). The server fills it;
// the CLI and tests may leave it default (everything allowed, nothing
// reported).

#include <cstdint>
#include <string>
#include <vector>

#include "fstore/security/principal.h"

namespace fstore {

/// What one serving request used, filled by the serving call.
struct ServingUsage {
  struct Set {
    std::string feature_set;            ///< name
    std::vector<std::string> features;  ///< names in it, as served
    int64_t entities = 0;               ///< entity rows asked for this set
    /// Of those, with a live record (online); -1 when not known (historical
    /// and batch retrieval, where a missing value is not a missing entity).
    int64_t entities_found = -1;
  };
  std::vector<Set> sets;
  int64_t cache_hits = 0;    ///< online records served from the serving cache
  int64_t cache_misses = 0;  ///< online records read from the store
  double online_store_seconds = 0;  ///< time in OnlineStore::Read
};

struct RequestContext {
  /// Who asks; every feature set a call reads (inputs of derived features
  /// included) is checked against it: 403 naming the first forbidden one.
  const Principal* principal = &Principal::Anonymous();
  /// Filled when set.
  ServingUsage* usage = nullptr;
};

}  // namespace fstore
