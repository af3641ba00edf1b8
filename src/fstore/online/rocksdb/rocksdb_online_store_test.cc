// The RocksDB online store: the conformance suite, and what it cannot say
// about RocksDB (the key layout, a corrupt stored value).

#include "fstore/online/rocksdb/rocksdb_online_store.h"

#include <filesystem>

#include <rocksdb/db.h>

#include "fstore/core/ids.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/online_store_conformance.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

OnlineStoreBackend RocksDbBackend() {
  OnlineStoreBackend backend;
  backend.name = "RocksDb";
  backend.new_store = []() -> Result<OnlineStoreInstance> {
    auto dir = fs::temp_directory_path() / ("fstore-online-rocksdb-" + NewUuid());
    OnlineStoreInstance instance;
    instance.open = [dir]() -> Result<std::unique_ptr<OnlineStore>> {
      return OnlineStoreFromUri("rocksdb://" + dir.string());
    };
    instance.drop = [dir] {
      std::error_code ec;
      fs::remove_all(dir, ec);
    };
    return instance;
  };
  return backend;
}

INSTANTIATE_TEST_SUITE_P(RocksDb, OnlineStoreConformanceTest, ::testing::Values(RocksDbBackend()),
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

}  // namespace
}  // namespace fstore
