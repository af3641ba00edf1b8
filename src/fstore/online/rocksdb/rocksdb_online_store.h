#pragma once

// The embedded online store: one RocksDB database in a directory.
//
// Layout: one key per (feature set, entity key) in the default column family:
//   key   = <feature set name> '\0' EncodeEntityKey(entity key)
//   value = EncodeOnlineRecord(record)   (online_record_codec.h); with a
//           cipher the sealed encoding (version 2), whose associated data
//           is the key: times in clear, names and values sealed
// Feature set names never contain '\0', so a feature set's records are
// exactly the range [name '\0', name '\1'): DeleteFeatureSet is one
// DeleteRange. A prefix rather than a column family per feature set: column
// families must be listed at every open and cost a memtable each, while the
// prefix costs a few bytes per key.
//
// Newer-wins is a read-compare-write: the batch is sorted by key (so
// MultiGet needs no sort of its own and the memtable inserts in order) and
// deduplicated, its stored times are read with one sorted MultiGet, and the
// winners are written with one WriteBatch (atomic for the whole call), all
// under a per-store write mutex so that two writers cannot
// both read the old record and both write. Not a merge operator: it would
// move the comparison to every read (a point lookup would merge operands
// until compaction), and could not tell the caller what was applied.
// Readers take no write lock: RocksDB reads are consistent per key.
//
// Durability: record writes skip the WAL (a write is a memtable insert);
// Sync() flushes the memtable to an SST file, and the materializer calls it
// before committing a watermark, so a crash loses nothing committed.
//
// Tuning for point lookups: a bloom filter (10 bits/key, whole keys) in the
// SST files and in the memtable, a hash index inside data blocks, an LRU
// block cache (1 GiB, filled as blocks are read), and in front of it all the
// record cache (record_cache.h): recently read records as SharedRecords
// (ready to serve), looked up a batch at a time, kept coherent with every
// Write and DeleteFeatureSet.

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "fstore/online/online_store.h"
#include "fstore/security/encryption.h"

namespace rocksdb {
class DB;
}

namespace fstore {

class RecordCache;

struct RocksDbOnlineStoreOptions {
  /// Memory for the record cache (record_cache.h); 0 turns it off.
  size_t record_cache_bytes = size_t{1024} << 20;
};

class RocksDbOnlineStore : public OnlineStore {
 public:
  /// Opens (creating if missing) the database in `dir`. Unavailable when the
  /// directory cannot be created or another process holds the database.
  /// With `cipher` every record's values are sealed on write and opened on
  /// read; a record in the other form, or sealed with another key, makes
  /// Read fail with Internal and a clear message.
  static Result<std::unique_ptr<RocksDbOnlineStore>> Open(
      const std::string& dir, std::shared_ptr<const Cipher> cipher = nullptr,
      const RocksDbOnlineStoreOptions& options = {});
  ~RocksDbOnlineStore() override;

  Status CheckHealth() override;
  Status Close() override;
  using OnlineStore::Write;
  /// `options.ttl_micros` is ignored: RocksDB keeps records until they are
  /// replaced or their feature set is deleted (Read applies the ttl).
  Result<WriteResult> Write(const std::string& feature_set,
                            const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
                            const OnlineWriteOptions& options) override;
  Result<std::vector<std::optional<OnlineRecord>>> Read(const std::string& feature_set,
                                                        const std::vector<EntityKey>& keys,
                                                        int64_t ttl_micros,
                                                        TimestampMicros now) override;
  /// With the record cache on, hits are the cached records themselves.
  Result<std::vector<std::shared_ptr<const SharedRecord>>> ReadShared(
      const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
      TimestampMicros now) override;
  Status DeleteFeatureSet(const std::string& feature_set) override;
  Status Sync() override;

  /// Records the record cache holds (0 when it is off), for tests.
  size_t CachedRecords() const;

 private:
  RocksDbOnlineStore(std::string dir, rocksdb::DB* db, std::shared_ptr<const Cipher> cipher,
                     std::unique_ptr<RecordCache> cache);

  std::string dir_;
  /// Guards db_ against Close(): shared by every call that uses the
  /// database, exclusive for Close.
  std::shared_mutex mutex_;
  /// Serializes the read-compare-write of Write (and DeleteFeatureSet).
  /// Acquired before mutex_.
  std::mutex write_mutex_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<const Cipher> cipher_;  // null: values stored in clear
  std::unique_ptr<RecordCache> cache_;    // null: off
};

}  // namespace fstore
