#pragma once

// The online store: the latest feature values per (feature set, entity key),
// served in well under a millisecond. One interface, one backend per URI
// scheme, chosen by OnlineStoreFromUri: rocksdb:// (embedded, the default);
// redis:// and redis+cluster:// come with the production backends.
//
// This first cut carries the store's lifecycle (open, health, close); the
// read and write paths come with materialization and serving.
//
// Thread safety: all methods may be called concurrently.

#include <memory>
#include <string>

#include "fstore/core/status.h"

namespace fstore {

class OnlineStore {
 public:
  virtual ~OnlineStore() = default;

  /// OK when the store can serve; Unavailable otherwise (for /ready).
  virtual Status CheckHealth() = 0;

  /// Flushes and releases the store; further calls fail. Idempotent.
  virtual Status Close() = 0;
};

/// Opens the online store a URI names: "rocksdb:///abs/dir". redis:// and
/// redis+cluster:// answer NotImplemented until their backends exist.
Result<std::unique_ptr<OnlineStore>> OnlineStoreFromUri(const std::string& uri);

}  // namespace fstore
