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
  // Closed cleanly: it opens again.
  ASSERT_OK_AND_ASSIGN(auto again, OnlineStoreFromUri("rocksdb://" + dir.string()));
  ASSERT_OK(again->Close());
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
