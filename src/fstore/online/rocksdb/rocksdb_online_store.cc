#include "fstore/online/rocksdb/rocksdb_online_store.h"

#include <filesystem>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

namespace fstore {

namespace {
Status FromRocksDb(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  return Unavailable(what + ": " + s.ToString());
}
}  // namespace

RocksDbOnlineStore::RocksDbOnlineStore(std::string dir, rocksdb::DB* db)
    : dir_(std::move(dir)), db_(db) {}

RocksDbOnlineStore::~RocksDbOnlineStore() { (void)Close(); }

Result<std::unique_ptr<RocksDbOnlineStore>> RocksDbOnlineStore::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create the online store directory " + dir + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  rocksdb::DB* db = nullptr;
  ARROW_RETURN_NOT_OK(
      FromRocksDb(rocksdb::DB::Open(options, dir, &db), "cannot open the online store in " + dir));
  return std::unique_ptr<RocksDbOnlineStore>(new RocksDbOnlineStore(dir, db));
}

Status RocksDbOnlineStore::CheckHealth() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!db_) return Unavailable("the online store is closed");
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "\x00health", &value);
  if (!s.ok() && !s.IsNotFound()) return FromRocksDb(s, "the online store does not answer");
  return Status::OK();
}

Status RocksDbOnlineStore::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!db_) return Status::OK();
  rocksdb::Status s = db_->Close();
  db_.reset();
  return FromRocksDb(s, "closing the online store in " + dir_);
}

}  // namespace fstore
