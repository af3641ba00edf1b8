#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "fstore/online/online_store.h"

namespace rocksdb {
class DB;
}

namespace fstore {

/// The embedded online store: one RocksDB database in a directory.
class RocksDbOnlineStore : public OnlineStore {
 public:
  /// Opens (creating if missing) the database in `dir`.
  static Result<std::unique_ptr<RocksDbOnlineStore>> Open(const std::string& dir);
  ~RocksDbOnlineStore() override;

  Status CheckHealth() override;
  Status Close() override;

 private:
  RocksDbOnlineStore(std::string dir, rocksdb::DB* db);

  std::string dir_;
  std::mutex mutex_;  // guards db_ against Close() racing other calls
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace fstore
