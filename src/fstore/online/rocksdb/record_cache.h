#pragma once

// The embedded online store's record cache: recently read (feature set,
// entity key) records, as SharedRecords (each value's name, JSON text and
// typed encoding in one buffer), in memory, in front of RocksDB. A hit hands
// out the cached record itself (shared, immutable): no copy, no decoding,
// no number formatting.
//
// Why not RocksDB's block cache alone: a point lookup through it (file,
// bloom filter, index block binary search, block cache hash table, data
// block hash index, key compare) touches 10-20 cache lines that are cold in
// a store larger than the CPU caches; on this project's 2-core VM a cold
// line costs 300-700 ns (docs/benchmarks.md), so 2,500 lookups of a
// 100-entity x 25-set request took ~9 ms of CPU. Here a lookup is a hash
// probe and the record, about two cache lines, and a batch is looked up in
// passes that prefetch every key's slot, then every key's entry, so that the
// misses of a batch overlap instead of following each other.
// RocksDB's own row cache is not used: in this RocksDB (7.8) it returns
// records that a DeleteRange removed.
//
// Keys are the RocksDB store's keys, values the records stored under them
// (decrypted, when the store is encrypted at rest: the cache is memory, like
// a record being served): the cache holds nothing the store does not. Coherence is
// the store's job, and simple because one process owns the RocksDB
// directory: every write drops the cached values of the keys it wrote and
// DeleteFeatureSet erases the set's keys, each bumping the epoch of the
// shards it touched; a reader that missed fills the cache with
// what it read from RocksDB only if no write touched the key's shard since
// it looked (Lookup's Ticket), so a value read before a write is never
// cached after it.
//
// Bounded: entries (key, the record's memory as ApproximateBytes counts it,
// a few bytes of header) and hash slots count against the capacity, split evenly among the shards; a full shard evicts
// with CLOCK (second chance for entries read since the hand last passed).
// The cache fills only as records are read: a server at rest stays small.
//
// Thread safety: every method may be called concurrently. Lookups take the
// shards they need shared (in shard order); writes take one shard at a time
// exclusively.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fstore/online/shared_record.h"

namespace fstore {

/// The memory a cached record takes: the object (with shared_ptr's control
/// block) and its buffer. The allocator's overhead is not counted.
size_t ApproximateBytes(const SharedRecord& record);

class RecordCache {
 public:
  static constexpr size_t kShards = 16;

  /// `capacity_bytes` > 0: the memory the entries and slots may take.
  explicit RecordCache(size_t capacity_bytes);
  ~RecordCache();
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  /// What Fill needs to know of a Lookup: each key's hash, and each shard's
  /// write epoch when the lookup looked.
  struct Ticket {
    std::vector<uint64_t> hashes;
    std::array<uint64_t, kShards> epochs{};
  };

  using Value = std::shared_ptr<const SharedRecord>;

  /// Looks up `keys`: for each cached keys[i], (*values)[i] = its record and
  /// (*hits)[i] = 1; else (*hits)[i] = 0 and (*values)[i] is untouched.
  /// Both vectors are resized to keys.size().
  void Lookup(std::span<const std::string_view> keys, std::vector<Value>* values,
              std::vector<char>* hits, Ticket* ticket);

  /// Caches records read from the store for keys that `ticket`'s Lookup
  /// missed: `entries` are (index into that lookup's keys, record; not
  /// null). A key whose shard was written since the lookup is skipped, as is
  /// a record larger than a shard.
  void Fill(std::span<const std::string_view> keys, const Ticket& ticket,
            std::span<const std::pair<size_t, Value>> entries);

  /// After the store wrote `keys`: drops their cached records (the next read
  /// of each reads the store) and bumps the epoch of every shard they fall
  /// in. Call after the write is visible to readers of the store.
  void Invalidate(std::span<const std::string_view> keys);

  /// After the store removed every key starting with `prefix`: erases them
  /// here too and bumps every shard's epoch.
  void ErasePrefix(std::string_view prefix);

  /// Entries held, and the bytes they and the slots take (for tests and
  /// monitoring).
  size_t size() const;
  size_t bytes() const;

 private:
  class Shard;
  /// The sum of a Shard counter over the shards, each read under its lock.
  size_t SumOverShards(size_t (Shard::*count)() const) const;
  std::array<std::unique_ptr<Shard>, kShards> shards_;
};

}  // namespace fstore
