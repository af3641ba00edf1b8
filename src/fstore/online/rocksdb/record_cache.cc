#include "fstore/online/rocksdb/record_cache.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>

namespace fstore {

namespace {

/// One cached record: a single allocation holding the header (with the
/// shared record) and the key bytes.
struct Entry {
  uint32_t key_size;
  uint32_t charge;  ///< the bytes it counts for (header, key, ApproximateBytes)
  /// Read since the CLOCK hand last passed (written under a shared lock).
  std::atomic<uint8_t> referenced;
  RecordCache::Value record;

  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  char* data() { return reinterpret_cast<char*>(this + 1); }
  std::string_view key() const { return {data(), key_size}; }
  size_t bytes() const { return charge; }
};

Entry* NewEntry(std::string_view key, RecordCache::Value record, size_t charge) {
  void* memory = ::operator new(sizeof(Entry) + key.size());
  auto* e = new (memory) Entry{static_cast<uint32_t>(key.size()), static_cast<uint32_t>(charge),
                               {0}, std::move(record)};
  std::memcpy(e->data(), key.data(), key.size());
  return e;
}

void FreeEntry(Entry* e) {
  e->~Entry();
  ::operator delete(e);
}

/// A hash slot; empty when entry is null. The full hash is kept so that a
/// probe compares keys only on a hash match.
struct Slot {
  uint64_t hash = 0;
  Entry* entry = nullptr;
};

uint64_t Hash(std::string_view key) { return std::hash<std::string_view>{}(key); }

/// The top bits pick the shard, the low bits the slot within it.
size_t ShardOf(uint64_t hash) { return hash >> 60; }
static_assert(RecordCache::kShards == 16);

/// Prefetches an entry's header and key.
void PrefetchEntry(const Entry* e) {
  const char* p = reinterpret_cast<const char*>(e);
  __builtin_prefetch(p);
  __builtin_prefetch(p + 64);
}

constexpr size_t kMinSlots = 64;

}  // namespace

size_t ApproximateBytes(const SharedRecord& record) {
  // make_shared: the object and the control block in one allocation.
  return sizeof(SharedRecord) + 16 + record.buffer_bytes();
}

/// Open addressing with linear probing, at most half full, backward-shift
/// deletion (no tombstones). Callers hold `mutex` (shared for the const
/// methods, exclusive for the others).
class RecordCache::Shard {
 public:
  explicit Shard(size_t capacity) : capacity_(capacity) {}
  ~Shard() {
    for (Slot& s : slots_) {
      if (s.entry) FreeEntry(s.entry);
    }
  }

  std::shared_mutex mutex;
  uint64_t epoch = 0;  ///< bumped by every write to the shard

  size_t size() const { return count_; }
  size_t bytes() const { return bytes_ + slots_.size() * sizeof(Slot); }

  void PrefetchSlot(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
  }

  /// The entry of the first slot with this hash (its key unchecked), or null.
  Entry* Candidate(uint64_t hash) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.entry) return nullptr;
      if (s.hash == hash) return s.entry;
    }
  }

  /// The entry of `key`, or null.
  Entry* FindEntry(uint64_t hash, std::string_view key) const {
    const size_t at = Find(hash, key);
    return at == npos ? nullptr : slots_[at].entry;
  }

  /// The slot holding `key`, or npos.
  size_t Find(uint64_t hash, std::string_view key) const {
    if (slots_.empty()) return npos;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.entry) return npos;
      if (s.hash == hash && s.entry->key() == key) return i;
    }
  }

  /// Drops `key` if cached.
  void Erase(uint64_t hash, std::string_view key) {
    const size_t at = Find(hash, key);
    if (at != npos) EraseAt(at);
  }

  /// Caches `record` for `key` unless it is cached already (evicting to
  /// make room).
  void Put(uint64_t hash, std::string_view key, const Value& record) {
    // Cached already: by another reader since this one looked, with the
    // same record (no write came in between, or the fill is not made).
    if (Find(hash, key) != npos) return;
    const size_t need = sizeof(Entry) + key.size() + ApproximateBytes(*record);
    if (need > UINT32_MAX) return;
    if (need + kMinSlots * sizeof(Slot) > capacity_) return;  // never fits
    // Room for one more slot within the load factor: grow while the slots
    // stay under a quarter of the capacity, then evict instead.
    while ((count_ + 1) * 2 > slots_.size()) {
      if (slots_.size() < kMinSlots ||
          slots_.size() * 2 * sizeof(Slot) <= capacity_ / 4) {
        Grow();
      } else {
        EvictOne();
      }
    }
    while (bytes() + need > capacity_ && count_ > 0) EvictOne();
    if (bytes() + need > capacity_) return;
    size_t i = hash & mask_;
    while (slots_[i].entry) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, NewEntry(key, record, need)};
    bytes_ += need;
    ++count_;
  }

  /// Drops every entry whose key starts with `prefix`.
  void ErasePrefix(std::string_view prefix) {
    std::vector<Slot> kept(slots_.size());
    for (Slot& s : slots_) {
      if (!s.entry) continue;
      if (s.entry->key().starts_with(prefix)) {
        bytes_ -= s.entry->bytes();
        --count_;
        FreeEntry(s.entry);
        continue;
      }
      size_t i = s.hash & mask_;
      while (kept[i].entry) i = (i + 1) & mask_;
      kept[i] = s;
    }
    slots_ = std::move(kept);
    hand_ = 0;
  }

  static constexpr size_t npos = static_cast<size_t>(-1);

 private:
  void Grow() {
    const size_t n = std::max(kMinSlots, slots_.size() * 2);
    std::vector<Slot> grown(n);
    const size_t mask = n - 1;
    for (const Slot& s : slots_) {
      if (!s.entry) continue;
      size_t i = s.hash & mask;
      while (grown[i].entry) i = (i + 1) & mask;
      grown[i] = s;
    }
    slots_ = std::move(grown);
    mask_ = mask;
    hand_ = 0;
  }

  /// CLOCK: clears the referenced bit of entries read since the hand last
  /// passed, evicts the first one that was not. Needs count_ > 0.
  void EvictOne() {
    for (;;) {
      hand_ &= mask_;
      Slot& s = slots_[hand_];
      if (s.entry) {
        if (s.entry->referenced.load(std::memory_order_relaxed) == 0) {
          EraseAt(hand_);  // the hand stays: a shifted entry may now sit here
          return;
        }
        s.entry->referenced.store(0, std::memory_order_relaxed);
      }
      ++hand_;
    }
  }

  /// Frees slot i's entry and shifts the following run back so that every
  /// entry stays reachable from its home slot.
  void EraseAt(size_t i) {
    bytes_ -= slots_[i].entry->bytes();
    --count_;
    FreeEntry(slots_[i].entry);
    size_t j = i;
    for (;;) {
      j = (j + 1) & mask_;
      if (!slots_[j].entry) break;
      const size_t home = slots_[j].hash & mask_;
      // Move j into the hole at i when its home is not in (i, j] (cyclically).
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
  }

  const size_t capacity_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
  size_t bytes_ = 0;  ///< of the entries (the slots are added in bytes())
  size_t hand_ = 0;
};

RecordCache::RecordCache(size_t capacity_bytes) {
  for (auto& shard : shards_) shard = std::make_unique<Shard>(capacity_bytes / kShards);
}

RecordCache::~RecordCache() = default;

void RecordCache::Lookup(std::span<const std::string_view> keys, std::vector<Value>* values,
                         std::vector<char>* hits, Ticket* ticket) {
  const size_t n = keys.size();
  values->resize(n);
  hits->assign(n, 0);
  ticket->hashes.resize(n);
  uint32_t needed = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t h = Hash(keys[i]);
    ticket->hashes[i] = h;
    needed |= uint32_t{1} << ShardOf(h);
  }
  // Shared locks in shard order (writers take one shard at a time).
  for (size_t s = 0; s < kShards; ++s) {
    if (!(needed >> s & 1)) continue;
    shards_[s]->mutex.lock_shared();
    ticket->epochs[s] = shards_[s]->epoch;
  }
  // Three passes, so that the cache misses of all keys overlap: the slots,
  // then the entries, then the keys compared and the records taken.
  for (size_t i = 0; i < n; ++i) {
    const uint64_t h = ticket->hashes[i];
    shards_[ShardOf(h)]->PrefetchSlot(h);
  }
  std::vector<Entry*> candidates(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t h = ticket->hashes[i];
    candidates[i] = shards_[ShardOf(h)]->Candidate(h);
    if (candidates[i]) PrefetchEntry(candidates[i]);
  }
  for (size_t i = 0; i < n; ++i) {
    Entry* e = candidates[i];
    if (!e) continue;
    if (e->key() != keys[i]) {
      // Two keys with one 64-bit hash: probe on, comparing keys.
      const uint64_t h = ticket->hashes[i];
      e = shards_[ShardOf(h)]->FindEntry(h, keys[i]);
      if (!e) continue;
    }
    (*values)[i] = e->record;
    (*hits)[i] = 1;
    if (e->referenced.load(std::memory_order_relaxed) == 0) {
      e->referenced.store(1, std::memory_order_relaxed);
    }
  }
  for (size_t s = 0; s < kShards; ++s) {
    if (needed >> s & 1) shards_[s]->mutex.unlock_shared();
  }
}

namespace {

/// Indexes 0..n-1 ordered by the shard of hash_of(i).
template <typename HashOf>
std::vector<size_t> ByShard(size_t n, HashOf hash_of) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ShardOf(hash_of(a)) < ShardOf(hash_of(b)); });
  return order;
}

}  // namespace

void RecordCache::Fill(std::span<const std::string_view> keys, const Ticket& ticket,
                       std::span<const std::pair<size_t, Value>> entries) {
  auto hash_of = [&](size_t j) { return ticket.hashes[entries[j].first]; };
  const std::vector<size_t> order = ByShard(entries.size(), hash_of);
  for (size_t b = 0; b < order.size();) {
    const size_t s = ShardOf(hash_of(order[b]));
    size_t e = b;
    while (e < order.size() && ShardOf(hash_of(order[e])) == s) ++e;
    Shard& shard = *shards_[s];
    std::unique_lock lock(shard.mutex);
    if (shard.epoch == ticket.epochs[s]) {
      for (size_t k = b; k < e; ++k) {
        const auto& [index, record] = entries[order[k]];
        shard.Put(ticket.hashes[index], keys[index], record);
      }
    }
    b = e;
  }
}

void RecordCache::Invalidate(std::span<const std::string_view> keys) {
  // Every shard's epoch first (a reader that looked before this call must
  // not fill what it read); then the keys of the shards that hold anything
  // (a bulk load into an empty cache hashes and probes nothing).
  uint32_t occupied = 0;
  for (size_t s = 0; s < kShards; ++s) {
    std::unique_lock lock(shards_[s]->mutex);
    ++shards_[s]->epoch;
    if (shards_[s]->size() > 0) occupied |= uint32_t{1} << s;
  }
  if (occupied == 0) return;
  std::vector<uint64_t> hashes(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) hashes[i] = Hash(keys[i]);
  const std::vector<size_t> order = ByShard(keys.size(), [&](size_t i) { return hashes[i]; });
  constexpr size_t kAhead = 8;  // slots prefetched ahead of the probe
  for (size_t b = 0; b < order.size();) {
    const size_t s = ShardOf(hashes[order[b]]);
    size_t e = b;
    while (e < order.size() && ShardOf(hashes[order[e]]) == s) ++e;
    // A shard empty at the bump may have been filled since, but only with
    // values read after this write.
    if (occupied >> s & 1) {
      Shard& shard = *shards_[s];
      std::unique_lock lock(shard.mutex);
      for (size_t k = b; k < e; ++k) {
        if (k + kAhead < e) shard.PrefetchSlot(hashes[order[k + kAhead]]);
        shard.Erase(hashes[order[k]], keys[order[k]]);
      }
    }
    b = e;
  }
}

void RecordCache::ErasePrefix(std::string_view prefix) {
  for (auto& shard : shards_) {
    std::unique_lock lock(shard->mutex);
    ++shard->epoch;
    if (shard->size() > 0) shard->ErasePrefix(prefix);
  }
}

size_t RecordCache::size() const { return SumOverShards(&Shard::size); }

size_t RecordCache::bytes() const { return SumOverShards(&Shard::bytes); }

size_t RecordCache::SumOverShards(size_t (Shard::*count)() const) const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    std::shared_lock lock(shard->mutex);
    n += ((*shard).*count)();
  }
  return n;
}

}  // namespace fstore
