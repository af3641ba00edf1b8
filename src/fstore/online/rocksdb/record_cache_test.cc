// The record cache on its own: hits and misses, the fill-after-write rule,
// updates, prefix erasure, the memory bound and CLOCK, and concurrent
// readers and writers against a model of the store.

#include "fstore/online/rocksdb/record_cache.h"

#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace fstore {
namespace {

using namespace std::string_literals;

std::vector<std::string_view> Views(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

/// A record holding one string value, `text` (the tests' stand-in for a
/// record read from the store).
RecordCache::Value Rec(const std::string& text) {
  OnlineRecord record;
  record.values.emplace_back("v", text);
  return std::make_shared<const SharedRecord>(record);
}

/// The string value of a record made by Rec.
std::string TextOf(const RecordCache::Value& record) {
  size_t cursor = 0;
  return std::get<std::string>(record->Find("v", &cursor).value().Decode());
}

/// Looks up one key: its record's text, or nullopt.
std::optional<std::string> Get(RecordCache& cache, const std::string& key,
                               RecordCache::Ticket* ticket = nullptr) {
  RecordCache::Ticket own;
  std::vector<RecordCache::Value> values;
  std::vector<char> hits;
  std::vector<std::string_view> keys{key};
  cache.Lookup(keys, &values, &hits, ticket ? ticket : &own);
  if (!hits[0]) return std::nullopt;
  return TextOf(values[0]);
}

/// Looks up one key and, on a miss, fills it with a record of `value`.
void GetOrFill(RecordCache& cache, const std::string& key, const std::string& value) {
  RecordCache::Ticket ticket;
  if (Get(cache, key, &ticket)) return;
  std::vector<std::string_view> keys{key};
  std::vector<std::pair<size_t, RecordCache::Value>> found{{0, Rec(value)}};
  cache.Fill(keys, ticket, found);
}

TEST(RecordCacheTest, MissesThenHitsWhatWasFilled) {
  RecordCache cache(1 << 20);
  std::vector<std::string> keys{"set\0a"s, "set\0b"s, "set\0c"s};
  RecordCache::Ticket ticket;
  std::vector<RecordCache::Value> values;
  std::vector<char> hits;
  cache.Lookup(Views(keys), &values, &hits, &ticket);
  EXPECT_EQ(hits, std::vector<char>({0, 0, 0}));
  // Fill a and c (b was not in the store).
  const RecordCache::Value a = Rec("value-a");
  std::vector<std::pair<size_t, RecordCache::Value>> found{{0, a}, {2, Rec("value-c")}};
  cache.Fill(Views(keys), ticket, found);
  EXPECT_EQ(cache.size(), 2u);
  cache.Lookup(Views(keys), &values, &hits, &ticket);
  EXPECT_EQ(hits, std::vector<char>({1, 0, 1}));
  EXPECT_EQ(TextOf(values[0]), "value-a");
  EXPECT_EQ(TextOf(values[2]), "value-c");
  // A hit is the record that was filled, shared, not a copy.
  EXPECT_EQ(values[0].get(), a.get());
  // An empty value is a value.
  GetOrFill(cache, "set\0d"s, "");
  EXPECT_EQ(Get(cache, "set\0d"s), std::string());
}

TEST(RecordCacheTest, AValueReadBeforeAWriteIsNotCachedAfterIt) {
  RecordCache cache(1 << 20);
  const std::string key = "set\0k"s;
  RecordCache::Ticket ticket;
  ASSERT_FALSE(Get(cache, key, &ticket));
  // The reader read "old" from the store; a writer then wrote "new" and
  // invalidated the key (not cached: that only bumps the shard's epoch).
  std::vector<std::string_view> keys{key};
  cache.Invalidate(keys);
  EXPECT_FALSE(Get(cache, key));
  std::vector<std::pair<size_t, RecordCache::Value>> found{{0, Rec("old")}};
  cache.Fill(keys, ticket, found);
  EXPECT_FALSE(Get(cache, key)) << "the stale value was cached";
  // A reader that looks after the write caches what it reads.
  GetOrFill(cache, key, "new");
  EXPECT_EQ(Get(cache, key), "new");
}

TEST(RecordCacheTest, InvalidateDropsTheKeysWritten) {
  RecordCache cache(1 << 20);
  for (int i = 0; i < 100; ++i) GetOrFill(cache, "s\0"s + std::to_string(i), "v");
  std::vector<std::string> keys{"s\0"s + "7", "s\0"s + "70", "s\0"s + "not cached"};
  cache.Invalidate(Views(keys));
  EXPECT_EQ(cache.size(), 98u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(Get(cache, "s\0"s + std::to_string(i)).has_value(), i != 7 && i != 70) << i;
  }
  // A reader filling a key after it was invalidated caches the new value.
  GetOrFill(cache, "s\0"s + "7", "new");
  EXPECT_EQ(Get(cache, "s\0"s + "7"), "new");
}

TEST(RecordCacheTest, ErasePrefixErasesOneFeatureSet) {
  RecordCache cache(1 << 20);
  const std::string set(std::string("set") + '\0');
  const std::string set2(std::string("set2") + '\0');
  for (int i = 0; i < 500; ++i) {
    GetOrFill(cache, set + std::to_string(i), "a" + std::to_string(i));
    GetOrFill(cache, set2 + std::to_string(i), "b" + std::to_string(i));
  }
  EXPECT_EQ(cache.size(), 1000u);
  cache.ErasePrefix(set);
  EXPECT_EQ(cache.size(), 500u);
  for (int i = 0; i < 500; ++i) {
    EXPECT_FALSE(Get(cache, set + std::to_string(i))) << i;
    EXPECT_EQ(Get(cache, set2 + std::to_string(i)), "b" + std::to_string(i)) << i;
  }
}

TEST(RecordCacheTest, StaysWithinItsCapacityAndKeepsWhatIsRead) {
  const size_t capacity = 256 * 1024;
  RecordCache cache(capacity);
  const std::string hot = "s\0hot"s;
  GetOrFill(cache, hot, std::string(100, 'h'));
  std::map<std::string, std::string> written;
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "s\0k"s + std::to_string(i);
    const std::string value = std::string(100, 'v') + std::to_string(i);
    GetOrFill(cache, key, value);
    written[key] = value;
    ASSERT_TRUE(Get(cache, hot)) << "the key read after every fill was evicted at " << i;
  }
  EXPECT_LE(cache.bytes(), capacity);
  EXPECT_LT(cache.size(), 20000u);
  EXPECT_GT(cache.size(), 500u);  // most of the capacity holds entries
  // Whatever survived eviction (entries moved by deletions) is right.
  size_t held = 0;
  for (const auto& [key, value] : written) {
    if (auto got = Get(cache, key)) {
      ++held;
      EXPECT_EQ(*got, value) << key;
    }
  }
  EXPECT_EQ(held + 1, cache.size());
}

TEST(RecordCacheTest, AValueLargerThanAShardIsNotCached) {
  RecordCache cache(RecordCache::kShards * 4096);
  GetOrFill(cache, "s\0big"s, std::string(8192, 'x'));
  EXPECT_FALSE(Get(cache, "s\0big"s));
  GetOrFill(cache, "s\0small"s, "x");
  EXPECT_EQ(Get(cache, "s\0small"s), "x");
}

// Readers (look up; on a miss read the model store and fill) and writers
// (write the model store, then Invalidate) at once on a small key space: at the
// end every cached value is the store's. Run under ASan/UBSan in CI too.
TEST(RecordCacheTest, ConcurrentReadersAndWritersLeaveNoStaleValue) {
  RecordCache cache(64 * 1024);  // small: evictions happen too
  std::mutex store_mutex;
  std::map<std::string, std::string> store;
  constexpr int kKeys = 200;
  auto key_of = [](int k) { return "s\0"s + std::to_string(k); };
  for (int k = 0; k < kKeys; ++k) store[key_of(k)] = "v0";
  std::atomic<bool> stop{false};
  auto reader = [&](int seed) {
    std::mt19937 rng(seed);
    while (!stop.load()) {
      std::vector<std::string> keys;
      for (int j = 0; j < 16; ++j) keys.push_back(key_of(rng() % kKeys));
      RecordCache::Ticket ticket;
      std::vector<RecordCache::Value> values;
      std::vector<char> hits;
      cache.Lookup(Views(keys), &values, &hits, &ticket);
      std::vector<std::string> read(keys.size());
      std::vector<std::pair<size_t, RecordCache::Value>> found;
      {
        std::lock_guard lock(store_mutex);
        for (size_t j = 0; j < keys.size(); ++j) {
          if (!hits[j]) read[j] = store[keys[j]];
        }
      }
      for (size_t j = 0; j < keys.size(); ++j) {
        if (!hits[j]) found.emplace_back(j, Rec(read[j]));
      }
      cache.Fill(Views(keys), ticket, found);
    }
  };
  auto writer = [&](int seed) {
    std::mt19937 rng(seed);
    for (int round = 1; round <= 300; ++round) {
      std::vector<std::string> keys;
      std::vector<std::string> values;
      for (int j = 0; j < 8; ++j) {
        keys.push_back(key_of(rng() % kKeys));
        values.push_back("v" + std::to_string(seed) + "." + std::to_string(round));
      }
      {
        std::lock_guard lock(store_mutex);
        for (size_t j = 0; j < keys.size(); ++j) store[keys[j]] = values[j];
      }
      cache.Invalidate(Views(keys));
    }
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) readers.emplace_back(reader, r + 1);
  std::thread w1(writer, 100), w2(writer, 200);
  w1.join();
  w2.join();
  stop = true;
  for (auto& t : readers) t.join();
  for (int k = 0; k < kKeys; ++k) {
    if (auto got = Get(cache, key_of(k))) {
      EXPECT_EQ(*got, store[key_of(k)]) << k;
    }
  }
}

}  // namespace
}  // namespace fstore
