// The RocksDB online store: the conformance suite, and what it cannot say
// about RocksDB (the key layout, a corrupt stored value).

#include "fstore/online/rocksdb/rocksdb_online_store.h"

#include <filesystem>
#include <fstream>

#include <rocksdb/db.h>

#include "fstore/core/ids.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/online_store_conformance.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const Cipher> TestCipher(char digit = '7') {
  return *Cipher::FromHex(std::string(64, digit));
}

OnlineStoreBackend RocksDbBackend(std::shared_ptr<const Cipher> cipher = nullptr,
                                  bool record_cache = true) {
  OnlineStoreBackend backend;
  backend.name = std::string(cipher ? "RocksDbEncrypted" : "RocksDb") +
                 (record_cache ? "" : "WithoutRecordCache");
  backend.new_store = [cipher, record_cache]() -> Result<OnlineStoreInstance> {
    auto dir = fs::temp_directory_path() / ("fstore-online-rocksdb-" + NewUuid());
    OnlineStoreInstance instance;
    instance.open = [dir, cipher, record_cache]() -> Result<std::unique_ptr<OnlineStore>> {
      return OnlineStoreFromUri(
          "rocksdb://" + dir.string() + (record_cache ? "" : "?record_cache_mb=0"), cipher);
    };
    instance.drop = [dir] {
      std::error_code ec;
      fs::remove_all(dir, ec);
    };
    return instance;
  };
  return backend;
}

INSTANTIATE_TEST_SUITE_P(RocksDb, OnlineStoreConformanceTest,
                         ::testing::Values(RocksDbBackend(), RocksDbBackend(TestCipher()),
                                           RocksDbBackend(nullptr, /*record_cache=*/false)),
                         OnlineStoreBackendName);

class RocksDbOnlineStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fs::temp_directory_path() / ("fstore-online-rocksdb-" + NewUuid()); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  /// Runs `fn` on the raw database (the store must be closed).
  void WithRawDb(const std::function<void(rocksdb::DB*)>& fn) {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options options;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    fn(db.get());
    ASSERT_TRUE(db->Close().ok());
  }

  fs::path dir_;
};

TEST_F(RocksDbOnlineStoreTest, KeyIsFeatureSetNulEntityKeyAndValueIsTheCodec) {
  OnlineRecord record{10, 20, {{"x", int64_t{1}}}};
  EntityKey key{std::string("u1"), int64_t{2}};
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
    ASSERT_OK(store->Write("fs", {{key, record}}));
    ASSERT_OK(store->Close());
  }
  WithRawDb([&](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), std::string("fs\0", 3) + EncodeEntityKey(key), &value).ok());
    EXPECT_EQ(value, EncodeOnlineRecord(record));
  });
}

TEST_F(RocksDbOnlineStoreTest, TheRecordCacheHoldsWhatWasReadServesTheTtlAndCanBeOff) {
  const EntityKey a{std::string("a")}, b{std::string("b")}, c{std::string("c")};
  const OnlineRecord old_record{100, 1, {{"x", int64_t{1}}}};
  const OnlineRecord new_record{1000, 1, {{"x", int64_t{2}}, {"y", std::string("z")}}};
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
    ASSERT_OK(store->Write("fs", {{a, old_record}, {b, new_record}}));
    EXPECT_EQ(store->CachedRecords(), 0u);  // writes do not fill it
    ASSERT_OK_AND_ASSIGN(auto first, store->Read("fs", {a, b, c}, 0, 0));
    EXPECT_EQ(store->CachedRecords(), 2u);  // a missing key is not cached
    ASSERT_OK_AND_ASSIGN(auto second, store->Read("fs", {c, b, a}, 0, 0));
    ASSERT_TRUE(second[1] && second[2]);
    EXPECT_FALSE(second[0]);
    EXPECT_EQ(*second[1], new_record);
    EXPECT_EQ(*second[2], old_record);
    // The ttl applies to cached records as to stored ones: a (event time
    // 100) is expired at now 1,000 with a ttl of 500, b (1,000) is not.
    ASSERT_OK_AND_ASSIGN(auto ttl, store->Read("fs", {a, b}, 500, 1000));
    EXPECT_FALSE(ttl[0]);
    ASSERT_TRUE(ttl[1]);
    EXPECT_EQ(*ttl[1], new_record);
    // An older write is ignored and leaves the cached record as it was.
    ASSERT_OK_AND_ASSIGN(auto ignored, store->Write("fs", {{b, old_record}}));
    EXPECT_EQ(ignored, (WriteResult{0, 1}));
    ASSERT_OK_AND_ASSIGN(auto third, store->Read("fs", {b}, 0, 0));
    EXPECT_EQ(*third[0], new_record);
    ASSERT_OK(store->Close());
  }
  RocksDbOnlineStoreOptions off;
  off.record_cache_bytes = 0;
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), nullptr, off));
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(auto got, store->Read("fs", {a, b}, 0, 0));
    ASSERT_TRUE(got[0] && got[1]);
    EXPECT_EQ(*got[0], old_record);
    EXPECT_EQ(*got[1], new_record);
  }
  EXPECT_EQ(store->CachedRecords(), 0u);
}

TEST_F(RocksDbOnlineStoreTest, CorruptStoredValueIsAnErrorOnReadAndReplacedByAWrite) {
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
    ASSERT_OK(store->Close());
  }
  WithRawDb([&](rocksdb::DB* db) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), std::string("fs\0", 3) + EncodeEntityKey({std::string("u")}),
                        "\x01garbage")
                    .ok());
  });
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
  auto read = store->Read("fs", {{std::string("u")}}, 0, 0);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kInternal);
  OnlineRecord record{1, 1, {{"x", true}}};
  ASSERT_OK_AND_ASSIGN(auto result, store->Write("fs", {{{std::string("u")}, record}}));
  EXPECT_EQ(result, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(auto again, store->Read("fs", {{std::string("u")}}, 0, 0));
  ASSERT_TRUE(again[0].has_value());
  EXPECT_EQ(*again[0], record);
}

// A record read from an SST file (and so in any cache), then rewritten or
// deleted with its whole feature set, is read back as it is now, by one-key
// (Get) and several-key (MultiGet) reads, also after the change is flushed.
// (RocksDB's row cache failed this: its MultiGet served deleted records.)
TEST_F(RocksDbOnlineStoreTest, ReadsAfterARewriteOrADeleteOfCachedRecordsSeeTheChange) {
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
  const EntityKey u{std::string("u")}, v{std::string("v")};
  const OnlineRecord old_record{10, 10, {{"x", int64_t{1}}}};
  const OnlineRecord new_record{20, 20, {{"x", int64_t{2}}}};
  ASSERT_OK(store->Write("fs", {{u, old_record}, {v, old_record}}));
  ASSERT_OK(store->Write("other", {{u, old_record}}));
  ASSERT_OK(store->Sync());  // into an SST file: reads now go through the block cache
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(auto got, store->Read("fs", {u}, 0, 0));  // one key: Get
    ASSERT_TRUE(got[0].has_value());
    EXPECT_EQ(*got[0], old_record);
  }
  EXPECT_EQ(store->CachedRecords(), 1u);  // the second read was the record cache's
  ASSERT_OK(store->Write("fs", {{u, new_record}}));
  for (bool flushed : {false, true}) {
    if (flushed) ASSERT_OK(store->Sync());
    ASSERT_OK_AND_ASSIGN(auto one, store->Read("fs", {u}, 0, 0));
    ASSERT_TRUE(one[0].has_value());
    EXPECT_EQ(*one[0], new_record) << "flushed " << flushed;
    ASSERT_OK_AND_ASSIGN(auto two, store->Read("fs", {u, v}, 0, 0));  // MultiGet
    ASSERT_TRUE(two[0].has_value() && two[1].has_value());
    EXPECT_EQ(*two[0], new_record) << "flushed " << flushed;
    EXPECT_EQ(*two[1], old_record) << "flushed " << flushed;
  }
  ASSERT_OK(store->DeleteFeatureSet("fs"));
  for (bool flushed : {false, true}) {
    if (flushed) ASSERT_OK(store->Sync());
    ASSERT_OK_AND_ASSIGN(auto one, store->Read("fs", {u}, 0, 0));
    EXPECT_FALSE(one[0].has_value()) << "flushed " << flushed;
    ASSERT_OK_AND_ASSIGN(auto two, store->Read("fs", {u, v}, 0, 0));
    EXPECT_FALSE(two[0].has_value() || two[1].has_value()) << "flushed " << flushed;
    ASSERT_OK_AND_ASSIGN(auto other, store->Read("other", {u}, 0, 0));
    ASSERT_TRUE(other[0].has_value());
    EXPECT_EQ(*other[0], old_record);
  }
  // A write after the delete compares against nothing: an older record than
  // the deleted one is taken, not ignored.
  ASSERT_OK_AND_ASSIGN(auto rewrite, store->Write("fs", {{u, old_record}, {v, old_record}}));
  EXPECT_EQ(rewrite, (WriteResult{2, 0}));
  ASSERT_OK_AND_ASSIGN(auto back, store->Read("fs", {u, v}, 0, 0));
  ASSERT_TRUE(back[0].has_value() && back[1].has_value());
  EXPECT_EQ(*back[0], old_record);
}

/// Every byte of every file under `dir`.
std::string AllBytes(const fs::path& dir) {
  std::string all;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

TEST_F(RocksDbOnlineStoreTest, EncryptedValuesLeaveNoPlaintextOnDisk) {
  const std::string marker = "PLAINTEXT-MARKER-ROCKSDB";
  OnlineRecord record{10, 20, {{"secret_feature", marker}, {"n", int64_t{0x5eed5eed5eed}}}};
  EntityKey key{std::string("u1")};
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher()));
    ASSERT_OK(store->Write("fs", {{key, record}}));
    ASSERT_OK(store->Sync());  // flushes the memtable to an SST file
    ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", {key}, 0, 0));
    ASSERT_TRUE(read[0].has_value());
    EXPECT_EQ(*read[0], record);
    ASSERT_OK(store->Close());
  }
  std::string bytes = AllBytes(dir_);
  EXPECT_EQ(bytes.find(marker), std::string::npos);
  EXPECT_EQ(bytes.find("secret_feature"), std::string::npos);
  EXPECT_NE(bytes.find("u1"), std::string::npos);  // entity keys are keys: in clear

  // The same without encryption finds the marker: the search works.
  auto plain_dir = dir_ / "plain";
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(plain_dir.string()));
    ASSERT_OK(store->Write("fs", {{key, record}}));
    ASSERT_OK(store->Sync());
    ASSERT_OK(store->Close());
  }
  EXPECT_NE(AllBytes(plain_dir).find(marker), std::string::npos);
}

TEST_F(RocksDbOnlineStoreTest, WrongMissingOrUnexpectedKeyFailsClearly) {
  OnlineRecord record{10, 20, {{"x", std::string("value")}}};
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher()));
    ASSERT_OK(store->Write("sealed", {{{std::string("u")}, record}}));
    ASSERT_OK(store->Close());
  }
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string()));
    auto read = store->Read("sealed", {{std::string("u")}}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kInternal);
    EXPECT_NE(read.status().message().find("feature set 'sealed'"), std::string::npos);
    EXPECT_NE(read.status().message().find("no encryption key is configured"), std::string::npos)
        << read.status().ToString();
    ASSERT_OK(store->Write("clear", {{{std::string("u")}, record}}));
    ASSERT_OK(store->Close());
  }
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher('8')));
    auto read = store->Read("sealed", {{std::string("u")}}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_NE(read.status().message().find("sealed with a different encryption key"), std::string::npos)
        << read.status().ToString();
    ASSERT_OK(store->Close());
  }
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher()));
    auto read = store->Read("clear", {{std::string("u")}}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_NE(read.status().message().find("written without encryption"), std::string::npos)
        << read.status().ToString();
    ASSERT_OK(store->Close());
  }
}

TEST_F(RocksDbOnlineStoreTest, SealedValueMovedToAnotherKeyFailsAuthentication) {
  OnlineRecord record{10, 20, {{"x", std::string("value")}}};
  std::string key_a = std::string("fs\0", 3) + EncodeEntityKey({std::string("a")});
  std::string key_b = std::string("fs\0", 3) + EncodeEntityKey({std::string("b")});
  {
    ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher()));
    ASSERT_OK(store->Write("fs", {{{std::string("a")}, record}}));
    ASSERT_OK(store->Close());
  }
  WithRawDb([&](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key_a, &value).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key_b, value).ok());
  });
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir_.string(), TestCipher()));
  auto read = store->Read("fs", {{std::string("b")}}, 0, 0);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("authentication failed"), std::string::npos)
      << read.status().ToString();
}

}  // namespace
}  // namespace fstore
