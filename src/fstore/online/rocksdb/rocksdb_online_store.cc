#include "fstore/online/rocksdb/rocksdb_online_store.h"

#include <algorithm>
#include <filesystem>
#include <tuple>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "fstore/online/online_record_codec.h"
#include "fstore/online/rocksdb/record_cache.h"

namespace fstore {

namespace {
// Record writes bypass RocksDB's write-ahead log: the contract is that writes
// are durable only after Sync(), which flushes the memtable, and every writer
// (materialization) calls Sync() before it records progress. Without the WAL
// a write costs a memtable insert only, not also a log append.
rocksdb::WriteOptions UnloggedWrite() {
  rocksdb::WriteOptions options;
  options.disableWAL = true;
  return options;
}
}  // namespace


namespace {

// Reads the record cache misses hit the block cache or pay a block read and
// an LZ4 decompression per key (before the record cache, 64 MB held a tenth
// of a 25-set, 100k-entity store: 7 ms of CPU for a 100-entity x 5-set
// request; 1 GB, 3.5 ms). Now that recently read records are served from
// the record cache (1 GiB by default), the block cache serves its misses and
// the writes' read-before-write: 256 MiB, so that the two together take
// about what the block cache alone took. It fills only as keys are read, so
// a server at rest stays small.
constexpr size_t kBlockCacheBytes = size_t{256} << 20;
// No row cache (options.row_cache): it made a one-key read ~5 us cheaper,
// but with it this RocksDB's MultiGet returns records a DeleteRange
// (DeleteFeatureSet) removed, and the write path's read-before-write would
// then drop new writes (RocksDbOnlineStoreTest.ReadsAfterARewriteOrADelete...).

Status FromRocksDb(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  return Unavailable(what + ": " + s.ToString());
}

Status CheckFeatureSetName(const std::string& feature_set) {
  if (feature_set.empty()) return InvalidArgument("feature_set", "the feature set name is empty");
  if (feature_set.find('\0') != std::string::npos) {
    return InvalidArgument("feature_set", "the feature set name contains a NUL character");
  }
  return Status::OK();
}

/// The RocksDB key of (feature set, entity key).
Status MakeKey(const std::string& feature_set, const EntityKey& key, std::string* out) {
  if (key.empty()) return InvalidArgument("entity_key", "an entity key needs at least one part");
  out->clear();
  out->reserve(feature_set.size() + 1 + key.size() * 12);
  out->append(feature_set);
  out->push_back('\0');
  for (const auto& part : key) {
    if (const int64_t* i = std::get_if<int64_t>(&part)) {
      AppendEntityKeyPart(*i, out);
    } else {
      AppendEntityKeyPart(std::string_view(std::get<std::string>(part)), out);
    }
  }
  return Status::OK();
}

/// Whether a record with times `a` may replace one with times `b`.
inline bool NotOlder(TimestampMicros a_event, TimestampMicros a_created, TimestampMicros b_event,
                     TimestampMicros b_created) {
  return std::tie(a_event, a_created) >= std::tie(b_event, b_created);
}

Status Closed() { return Unavailable("the online store is closed"); }

}  // namespace

RocksDbOnlineStore::RocksDbOnlineStore(std::string dir, rocksdb::DB* db,
                                       std::shared_ptr<const Cipher> cipher,
                                       std::unique_ptr<RecordCache> cache)
    : dir_(std::move(dir)), db_(db), cipher_(std::move(cipher)), cache_(std::move(cache)) {}

RocksDbOnlineStore::~RocksDbOnlineStore() { (void)Close(); }

Result<std::unique_ptr<RocksDbOnlineStore>> RocksDbOnlineStore::Open(
    const std::string& dir, std::shared_ptr<const Cipher> cipher,
    const RocksDbOnlineStoreOptions& store_options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create the online store directory " + dir + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  options.level_compaction_dynamic_level_bytes = true;
  // Room for bulk materialization to keep writing while a memtable flushes.
  options.max_write_buffer_number = 4;
  // Point lookups: whole-key bloom filters in the memtable and the SST files,
  // a hash index in data blocks, a block cache.
  options.memtable_prefix_bloom_size_ratio = 0.02;
  options.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  // Every key a restart point: the hash index leads straight to the key
  // instead of to a run of 16 prefix-compressed keys decoded one by one;
  // 16 KB blocks: a quarter of the index entries to search. A sparse hash
  // index (5 buckets per key, ~6% of a block): a key sharing its bucket
  // falls back to a binary search of the block -- at 0.75 half the keys,
  // at 0.2 about a fifth. Together 500 warm keys from 5 sets take ~1.45 ms
  // instead of ~1.9 (online_writer_benchmark BM_ReadFromManySets), for a
  // little more space (no key prefix sharing) and a bigger read on a block
  // cache miss.
  table.block_restart_interval = 1;
  table.block_size = 16 * 1024;
  table.data_block_hash_table_util_ratio = 0.2;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  auto compressions = rocksdb::GetSupportedCompressions();
  if (std::find(compressions.begin(), compressions.end(), rocksdb::kLZ4Compression) !=
      compressions.end()) {
    options.compression = rocksdb::kLZ4Compression;
  }
  rocksdb::DB* db = nullptr;
  ARROW_RETURN_NOT_OK(
      FromRocksDb(rocksdb::DB::Open(options, dir, &db), "cannot open the online store in " + dir));
  std::unique_ptr<RecordCache> cache;
  if (store_options.record_cache_bytes > 0) {
    cache = std::make_unique<RecordCache>(store_options.record_cache_bytes);
  }
  return std::unique_ptr<RocksDbOnlineStore>(
      new RocksDbOnlineStore(dir, db, std::move(cipher), std::move(cache)));
}

Status RocksDbOnlineStore::CheckHealth() {
  std::shared_lock lock(mutex_);
  if (!db_) return Closed();
  std::string value;
  // An empty key: no record key is empty (feature set names are not).
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(), &value);
  if (!s.ok() && !s.IsNotFound()) return FromRocksDb(s, "the online store does not answer");
  return Status::OK();
}

Status RocksDbOnlineStore::Close() {
  std::unique_lock lock(mutex_);
  if (!db_) return Status::OK();
  rocksdb::Status s = db_->Close();
  db_.reset();
  return FromRocksDb(s, "closing the online store in " + dir_);
}

Result<WriteResult> RocksDbOnlineStore::Write(
    const std::string& feature_set, const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
    const OnlineWriteOptions& /*options*/) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  WriteResult result;
  const size_t n = records.size();
  if (n == 0) return result;

  std::vector<std::string> keys(n);
  for (size_t i = 0; i < n; ++i) {
    ARROW_RETURN_NOT_OK(MakeKey(feature_set, records[i].first, &keys[i]));
  }

  // Keys in order: MultiGet skips its own sort, the memtable inserts in
  // order (its skip list reuses the last insert position), and several
  // records for one key end up adjacent, in call order (a stable sort).
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  auto key_less = [&](size_t a, size_t b) { return keys[a] < keys[b]; };
  if (!std::is_sorted(order.begin(), order.end(), key_less)) {
    std::stable_sort(order.begin(), order.end(), key_less);
  }
  // One winner per key: the newest, the later in the call on a full tie.
  std::vector<size_t> winners;
  winners.reserve(n);
  for (size_t i : order) {
    if (!winners.empty() && keys[winners.back()] == keys[i]) {
      const OnlineRecord& a = records[i].second;
      const OnlineRecord& b = records[winners.back()].second;
      if (NotOlder(a.event_time, a.created_time, b.event_time, b.created_time)) winners.back() = i;
    } else {
      winners.push_back(i);
    }
  }
  result.ignored = static_cast<int64_t>(n - winners.size());

  const size_t m = winners.size();
  std::vector<rocksdb::Slice> slices(m);
  for (size_t j = 0; j < m; ++j) slices[j] = keys[winners[j]];
  std::vector<rocksdb::PinnableSlice> stored(m);
  std::vector<rocksdb::Status> statuses(m);

  std::lock_guard write_lock(write_mutex_);
  std::shared_lock lock(mutex_);
  if (!db_) return Closed();
  db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), m, slices.data(), stored.data(),
                statuses.data(), /*sorted_input=*/true);

  rocksdb::WriteBatch batch(m * 64);
  std::string value;
  std::vector<std::string_view> written_keys;  // for the record cache
  if (cache_) written_keys.reserve(m);
  for (size_t j = 0; j < m; ++j) {
    const OnlineRecord& record = records[winners[j]].second;
    if (statuses[j].ok()) {
      auto times = DecodeOnlineRecordTimes(std::string_view(stored[j].data(), stored[j].size()));
      // A stored value that cannot be decoded is replaced: re-materializing repairs it.
      if (times.ok() && !NotOlder(record.event_time, record.created_time, times->first,
                                  times->second)) {
        ++result.ignored;
        continue;
      }
    } else if (!statuses[j].IsNotFound()) {
      return FromRocksDb(statuses[j], "reading the online store for a write");
    }
    value.clear();
    // The store key is the associated data: a sealed value is bound to its key.
    ARROW_RETURN_NOT_OK(AppendOnlineRecord(record, cipher_.get(), slices[j].ToStringView(), &value));
    rocksdb::Status s = batch.Put(slices[j], value);
    if (!s.ok()) return FromRocksDb(s, "building an online store write");
    ++result.applied;
    if (cache_) written_keys.push_back(slices[j].ToStringView());
  }
  if (result.applied > 0) {
    ARROW_RETURN_NOT_OK(
        FromRocksDb(db_->Write(UnloggedWrite(), &batch), "writing the online store"));
    // After the write is visible: the old values are dropped, and a reader
    // that read one before the write cannot cache it now (the epochs).
    if (cache_) cache_->Invalidate(written_keys);
  }
  return result;
}

Result<std::vector<std::optional<OnlineRecord>>> RocksDbOnlineStore::Read(
    const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
    TimestampMicros now) {
  ARROW_ASSIGN_OR_RAISE(auto shared, ReadShared(feature_set, keys, ttl_micros, now));
  std::vector<std::optional<OnlineRecord>> out(shared.size());
  for (size_t i = 0; i < shared.size(); ++i) {
    if (shared[i]) out[i] = shared[i]->ToRecord();
  }
  return out;
}

Result<std::vector<std::shared_ptr<const SharedRecord>>> RocksDbOnlineStore::ReadShared(
    const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
    TimestampMicros now) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  const size_t n = keys.size();
  std::vector<std::shared_ptr<const SharedRecord>> out(n);
  if (n == 0) return out;
  std::vector<std::string> encoded(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    ARROW_RETURN_NOT_OK(MakeKey(feature_set, keys[i], &encoded[i]));
    slices[i] = encoded[i];
  }
  // Records older than `oldest` are expired; none when the ttl is off or
  // now - ttl underflows.
  bool expiry = false;
  TimestampMicros oldest = 0;
  if (ttl_micros > 0 && !__builtin_sub_overflow(now, ttl_micros, &oldest)) expiry = true;

  // The record cache first; RocksDB for the keys it does not hold. A record
  // read from RocksDB is decoded and made a SharedRecord here, under the
  // lock, so that the cache can be filled with it.
  std::vector<std::string_view> key_views(encoded.begin(), encoded.end());
  std::vector<char> hits;
  RecordCache::Ticket ticket;
  std::vector<size_t> misses;  // indexes of the keys read from RocksDB
  {
    std::shared_lock lock(mutex_);
    if (!db_) return Closed();
    if (cache_) {
      cache_->Lookup(key_views, &out, &hits, &ticket);
      for (size_t i = 0; i < n; ++i) {
        if (!hits[i]) misses.push_back(i);
      }
    } else {
      misses.resize(n);
      for (size_t i = 0; i < n; ++i) misses[i] = i;
    }
    const size_t m = misses.size();
    std::vector<rocksdb::Slice> miss_slices;
    miss_slices.reserve(m);
    for (size_t i : misses) miss_slices.push_back(slices[i]);
    std::vector<rocksdb::PinnableSlice> values(m);
    std::vector<rocksdb::Status> statuses(m);
    if (m == 1) {
      // One key (most online requests): Get skips MultiGet's batch setup,
      // a tenth of a small request's time in the store.
      statuses[0] = db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), miss_slices[0],
                             &values[0]);
    } else if (m > 1) {
      db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), m, miss_slices.data(),
                    values.data(), statuses.data());
    }
    std::vector<std::pair<size_t, RecordCache::Value>> found;
    if (cache_) found.reserve(m);
    for (size_t j = 0; j < m; ++j) {
      if (statuses[j].IsNotFound()) continue;
      if (!statuses[j].ok()) return FromRocksDb(statuses[j], "reading the online store");
      const size_t i = misses[j];
      auto record = SharedRecord::Decode(values[j].ToStringView(), cipher_.get(), encoded[i]);
      if (!record.ok()) {
        return Internal("feature set '" + feature_set + "': " + ErrorMessageOf(record.status()));
      }
      out[i] = std::move(record).ValueUnsafe();
      if (cache_) found.emplace_back(i, out[i]);
    }
    if (cache_ && !found.empty()) cache_->Fill(key_views, ticket, found);
  }
  if (expiry) {
    for (auto& record : out) {
      if (record && record->event_time() < oldest) record.reset();
    }
  }
  return out;
}

Status RocksDbOnlineStore::DeleteFeatureSet(const std::string& feature_set) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  std::string begin = feature_set + '\0';
  std::string end = feature_set + '\1';
  std::lock_guard write_lock(write_mutex_);
  std::shared_lock lock(mutex_);
  if (!db_) return Closed();
  ARROW_RETURN_NOT_OK(FromRocksDb(
      db_->DeleteRange(rocksdb::WriteOptions(), db_->DefaultColumnFamily(), begin, end),
      "deleting feature set '" + feature_set + "' from the online store"));
  if (cache_) cache_->ErasePrefix(begin);
  return Status::OK();
}

size_t RocksDbOnlineStore::CachedRecords() const { return cache_ ? cache_->size() : 0; }

Status RocksDbOnlineStore::Sync() {
  std::shared_lock lock(mutex_);
  if (!db_) return Closed();
  // Record writes skip the write-ahead log (see Write): making them durable is
  // flushing the memtable to an SST file.
  rocksdb::FlushOptions flush;
  flush.wait = true;
  return FromRocksDb(db_->Flush(flush), "syncing the online store");
}

}  // namespace fstore
