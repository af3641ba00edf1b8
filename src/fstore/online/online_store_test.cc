#include "fstore/online/online_store.h"

#include <unistd.h>

#include <filesystem>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

TEST(OnlineStoreTest, RocksDbOpensChecksAndCloses) {
  auto dir = std::filesystem::temp_directory_path() /
             ("fstore_online_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ASSERT_OK_AND_ASSIGN(auto store, OnlineStoreFromUri("rocksdb://" + dir.string()));
  EXPECT_TRUE(std::filesystem::exists(dir / "CURRENT"));
  ASSERT_OK(store->CheckHealth());
  // A second open of the same directory is refused by RocksDB's lock.
  EXPECT_FALSE(OnlineStoreFromUri("rocksdb://" + dir.string()).ok());
  ASSERT_OK(store->Close());
  ASSERT_OK(store->Close());
  EXPECT_EQ(ErrorCodeOf(store->CheckHealth()), ErrorCode::kUnavailable);
  // Closed cleanly: it opens again, also with a record cache size.
  ASSERT_OK_AND_ASSIGN(auto again, OnlineStoreFromUri("rocksdb://" + dir.string()));
  ASSERT_OK(again->Close());
  for (const char* option : {"?record_cache_mb=0", "?record_cache_mb=64"}) {
    ASSERT_OK_AND_ASSIGN(auto sized, OnlineStoreFromUri("rocksdb://" + dir.string() + option));
    ASSERT_OK(sized->Write("fs", {{{int64_t{1}}, OnlineRecord{1, 0, {{"x", int64_t{7}}}}}}));
    ASSERT_OK_AND_ASSIGN(auto read, sized->Read("fs", {{int64_t{1}}}, 0, 0));
    EXPECT_TRUE(read[0].has_value()) << option;
    ASSERT_OK(sized->Close());
  }
  // A bad option is refused, naming what is expected.
  for (const char* option : {"?record_cache_mb=", "?record_cache_mb=-1", "?record_cache_mb=1x",
                             "?record_cache_mb=99999999", "?cache=1", "?"}) {
    auto bad = OnlineStoreFromUri("rocksdb://" + dir.string() + option);
    ASSERT_FALSE(bad.ok()) << option;
    EXPECT_EQ(ErrorCodeOf(bad.status()), ErrorCode::kInvalidArgument) << option;
    EXPECT_NE(ErrorMessageOf(bad.status()).find("record_cache_mb"), std::string::npos) << option;
  }
  EXPECT_FALSE(OnlineStoreFromUri("rocksdb://?record_cache_mb=1").ok());
  std::filesystem::remove_all(dir);
}

TEST(OnlineStoreTest, UnknownSchemesAndARedisNotReachableYet) {
  // Nothing listens on port 1: the store opens (Redis may start after the
  // server) and says Unavailable until it can connect.
  for (const char* uri : {"redis://127.0.0.1:1", "redis+cluster://127.0.0.1:1"}) {
    auto store = OnlineStoreFromUri(uri);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(ErrorCodeOf((*store)->CheckHealth()), ErrorCode::kUnavailable) << uri;
    auto read = (*store)->Read("fs", {{int64_t{1}}}, 0, 0);
    EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kUnavailable) << uri;
    auto written = (*store)->Write("fs", {{{int64_t{1}}, OnlineRecord{1, 0, {}}}});
    EXPECT_EQ(ErrorCodeOf(written.status()), ErrorCode::kUnavailable) << uri;
    ASSERT_TRUE((*store)->Close().ok());
  }
  EXPECT_EQ(ErrorCodeOf(OnlineStoreFromUri("redis://127.0.0.1:1?no_such_option=1").status()),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorCodeOf(OnlineStoreFromUri("memcached://x").status()),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorCodeOf(OnlineStoreFromUri("rocksdb://").status()), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace fstore
