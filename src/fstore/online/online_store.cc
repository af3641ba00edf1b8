#include "fstore/online/online_store.h"

#include "fstore/online/rocksdb/rocksdb_online_store.h"

namespace fstore {

Result<std::unique_ptr<OnlineStore>> OnlineStoreFromUri(const std::string& uri) {
  size_t sep = uri.find("://");
  std::string scheme = sep == std::string::npos ? "" : uri.substr(0, sep);
  std::string rest = sep == std::string::npos ? "" : uri.substr(sep + 3);
  if (scheme == "rocksdb") {
    if (rest.empty()) return InvalidArgument("online_store", "rocksdb:// needs a directory");
    ARROW_ASSIGN_OR_RAISE(auto store, RocksDbOnlineStore::Open(rest));
    return std::unique_ptr<OnlineStore>(std::move(store));
  }
  if (scheme == "redis" || scheme == "rediss" || scheme == "redis+cluster") {
    return NotImplemented("the Redis online store is not built yet");
  }
  return InvalidArgument("online_store", "unknown online store scheme '" + scheme +
                                             "': expected rocksdb://, redis:// or redis+cluster://");
}

}  // namespace fstore
