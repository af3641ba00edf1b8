// The offline store on S3 (scripts/test-s3.sh's server): the layout, the
// generations and their atomicity with S3's semantics (virtual directories,
// no rename), and S3 going down in the middle of a write. Skipped when
// FSTORE_TEST_S3_ENDPOINT is unset.

#include <algorithm>
#include <string>
#include <vector>

#include <arrow/api.h>
#include <arrow/filesystem/api.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fstore/offline/fault_injecting_filesystem.h"
#include "fstore/offline/offline_store.h"
#include "fstore/offline/s3_filesystem.h"
#include "fstore/offline/s3_test_env.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TimestampMicros T(const std::string& text) { return ParseTimestamp(text).ValueOrDie(); }

const TimestampMicros kJan1 = T("2024-01-01");
const TimestampMicros kJan2 = T("2024-01-02");
const TimestampMicros kJan3 = T("2024-01-03");
const TimestampMicros kJan4 = T("2024-01-04");
const TimestampMicros kC1 = T("2024-02-01");
const TimestampMicros kC2 = T("2024-02-02");

struct Row {
  int64_t key;
  TimestampMicros event;
  TimestampMicros created;
  double value;
};

std::shared_ptr<arrow::Table> IntRows(const std::vector<Row>& rows) {
  auto ts = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  arrow::Int64Builder keys;
  arrow::TimestampBuilder events(ts, arrow::default_memory_pool());
  arrow::TimestampBuilder created(ts, arrow::default_memory_pool());
  arrow::DoubleBuilder values;
  for (const auto& r : rows) {
    EXPECT_TRUE(keys.Append(r.key).ok());
    EXPECT_TRUE(events.Append(r.event).ok());
    EXPECT_TRUE(created.Append(r.created).ok());
    EXPECT_TRUE(values.Append(r.value).ok());
  }
  auto schema = arrow::schema({arrow::field("user_id", arrow::int64()),
                               arrow::field("event_timestamp", ts),
                               arrow::field("created_timestamp", ts),
                               arrow::field("score", arrow::float64())});
  return arrow::Table::Make(schema, {keys.Finish().ValueOrDie(), events.Finish().ValueOrDie(),
                                     created.Finish().ValueOrDie(), values.Finish().ValueOrDie()});
}

std::vector<std::string> RowsOf(const std::shared_ptr<arrow::Table>& table) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < table->num_rows(); ++i) {
    std::string row;
    for (int c = 0; c < table->num_columns(); ++c) {
      if (c > 0) row += "|";
      row += table->column(c)->GetScalar(i).ValueOrDie()->ToString();
    }
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<std::string> Strings(const std::vector<Row>& rows) { return RowsOf(IntRows(rows)); }

class S3OfflineStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto options = S3TestOptions();
    if (!options) GTEST_SKIP() << "FSTORE_TEST_S3_ENDPOINT is not set (scripts/test-s3.sh start)";
    options_ = *options;
    bucket_ = UniqueTestBucket("offline");
    root_ = bucket_ + "/stores/one";
    ASSERT_OK_AND_ASSIGN(store_, OfflineStore::Open("s3://" + root_, options_));
    ASSERT_OK_AND_ASSIGN(s3_, MakeS3FileSystem(options_));
    faulty_ = std::make_shared<FaultInjectingFileSystem>(s3_);
  }

  void TearDown() override {
    store_.reset();
    if (s3_ != nullptr) (void)s3_->DeleteDirContents(bucket_, /*missing_dir_ok=*/true);
  }

  // Every file and (implicit) directory under the store's root, relative to
  // it, sorted; directories end in '/'.
  std::vector<std::string> Objects() {
    arrow::fs::FileSelector selector;
    selector.base_dir = root_;
    selector.recursive = true;
    selector.allow_not_found = true;
    auto infos = s3_->GetFileInfo(selector).ValueOrDie();
    std::vector<std::string> out;
    for (const auto& info : infos) {
      std::string key = info.path().substr(root_.size() + 1);
      out.push_back(info.IsDirectory() ? key + "/" : key);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> Files() {
    std::vector<std::string> out;
    for (auto& o : Objects()) {
      if (o.back() != '/') out.push_back(o);
    }
    return out;
  }

  std::vector<std::string> ReadRows(OfflineStore& store, TimestampMicros start,
                                    TimestampMicros end) {
    auto table = store.Read("user_stats", 1, start, end);
    EXPECT_TRUE(table.ok()) << table.status().ToString();
    return table.ok() ? RowsOf(*table) : std::vector<std::string>{};
  }

  Result<WriteStats> Replace(OfflineStore& store, TimestampMicros start, TimestampMicros end,
                             const std::vector<Row>& rows, const std::string& job) {
    return store.ReplaceRange("user_stats", 1, {"user_id"}, start, end, IntRows(rows), job);
  }

  S3ConnectionOptions options_;
  std::string bucket_;
  std::string root_;
  std::unique_ptr<OfflineStore> store_;
  std::shared_ptr<arrow::fs::FileSystem> s3_;
  std::shared_ptr<FaultInjectingFileSystem> faulty_;
};

TEST_F(S3OfflineStoreTest, OpenCreatesTheBucketAndChecksHealth) {
  ASSERT_OK_AND_ASSIGN(auto info, s3_->GetFileInfo(bucket_));
  EXPECT_EQ(info.type(), arrow::fs::FileType::Directory);
  ASSERT_OK(store_->CheckHealth());
  // Opening again finds it.
  ASSERT_OK(OfflineStore::Open("s3://" + bucket_, options_).status());

  // Without permission to create it, a missing bucket is an error naming it.
  S3ConnectionOptions no_create = options_;
  no_create.create_bucket = false;
  const std::string missing = UniqueTestBucket("missing");
  auto refused = OfflineStore::Open("s3://" + missing + "/x", no_create);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("'" + missing + "' does not exist"));
  EXPECT_FALSE(OfflineStore::Open("s3://", options_).ok());
  EXPECT_FALSE(OfflineStore::Open("s3://key:secret@bucket/x", options_).ok());
}

TEST_F(S3OfflineStoreTest, RoundTripWithTheLocalLayout) {
  std::vector<Row> rows = {
      {2, kJan1 + 5, kC1, 2.5}, {1, kJan1 + 7, kC1, 1.5}, {1, kJan2 + 1, kC1, 3.0}};
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(*store_, kJan1, kJan3, rows, "job1"));
  EXPECT_EQ(stats.rows_written, 3);
  EXPECT_EQ(stats.files_written, 2);
  EXPECT_EQ(stats.partitions_written, 2);
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan3),
            Strings({{1, kJan1 + 7, kC1, 1.5}, {1, kJan2 + 1, kC1, 3.0}, {2, kJan1 + 5, kC1, 2.5}}));
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("user_stats", 1));
  EXPECT_THAT(partitions, ElementsAre("2024-01-01", "2024-01-02"));

  // Scan: date partitions in order, each sorted.
  ASSERT_OK_AND_ASSIGN(auto reader, store_->Scan("user_stats", 1, kJan1, kJan3, {"score"}));
  ASSERT_OK_AND_ASSIGN(auto scanned, reader->ToTable());
  EXPECT_EQ(RowsOf(scanned),
            Strings({{1, kJan1 + 7, kC1, 1.5}, {2, kJan1 + 5, kC1, 2.5}, {1, kJan2 + 1, kC1, 3.0}}));

  // The same keys as on disk, and no temporary objects.
  EXPECT_THAT(Files(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-1-job1.json",
                                   "user_stats/v1/date=2024-01-01/part-job1-0.parquet",
                                   "user_stats/v1/date=2024-01-02/_generation-1-job1.json",
                                   "user_stats/v1/date=2024-01-02/part-job1-0.parquet"));

  // A store opened afresh (another process) reads the same.
  ASSERT_OK_AND_ASSIGN(auto other, OfflineStore::Open("s3://" + root_, options_));
  EXPECT_EQ(ReadRows(*other, kJan1, kJan3), ReadRows(*store_, kJan1, kJan3));
  // A missing feature set reads as empty.
  ASSERT_OK_AND_ASSIGN(auto none, store_->Read("nothing_here", 1, kJan1, kJan3));
  EXPECT_EQ(none->num_rows(), 0);
}

// Encryption at rest on S3: the objects are Parquet with an encrypted
// footer, the key check object is written at the root, and a store opened
// without the key or with another one is refused.
TEST_F(S3OfflineStoreTest, EncryptedRoundTripAndKeyCheck) {
  auto key = *Cipher::FromHex(std::string(64, '3'));
  auto other_key = *Cipher::FromHex(std::string(64, '4'));
  const std::string root = bucket_ + "/encrypted";
  ASSERT_OK_AND_ASSIGN(auto store, OfflineStore::Open("s3://" + root, options_, key));
  ASSERT_OK(store->CheckEncryptionKey());
  std::vector<Row> rows = {{2, kJan1 + 5, kC1, 2.5}, {1, kJan1 + 7, kC1, 1.5}};
  ASSERT_OK(Replace(*store, kJan1, kJan2, rows, "job1").status());
  EXPECT_EQ(ReadRows(*store, kJan1, kJan2), Strings({{1, kJan1 + 7, kC1, 1.5}, {2, kJan1 + 5, kC1, 2.5}}));

  ASSERT_OK_AND_ASSIGN(auto in, s3_->OpenInputFile(root + "/user_stats/v1/date=2024-01-01/part-job1-0.parquet"));
  ASSERT_OK_AND_ASSIGN(int64_t size, in->GetSize());
  ASSERT_OK_AND_ASSIGN(auto tail, in->ReadAt(size - 4, 4));
  EXPECT_EQ(tail->ToString(), "PARE");
  ASSERT_OK_AND_ASSIGN(auto check, s3_->GetFileInfo(root + "/_encryption_key_check"));
  EXPECT_TRUE(check.IsFile());

  ASSERT_OK_AND_ASSIGN(auto without, OfflineStore::Open("s3://" + root, options_));
  Status refused = without->CheckEncryptionKey();
  EXPECT_NE(refused.message().find("no encryption key is configured"), std::string::npos)
      << refused.ToString();
  ASSERT_OK_AND_ASSIGN(auto other, OfflineStore::Open("s3://" + root, options_, other_key));
  refused = other->CheckEncryptionKey();
  EXPECT_NE(refused.message().find("is not the key this store was encrypted with"), std::string::npos)
      << refused.ToString();
  auto read = other->Read("user_stats", 1, kJan1, kJan2);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("different encryption key"), std::string::npos)
      << read.status().ToString();
}

TEST_F(S3OfflineStoreTest, NewGenerationReplacesTheOldOne) {
  ASSERT_OK(Replace(*store_, kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2}},
                    "job1")
                .status());
  // A sub-day rerun keeps the rows outside its range, replaces those inside
  // (keeping the version of (2, +2) that its newer row supersedes).
  ASSERT_OK(Replace(*store_, kJan1 + 2, kJan1 + 10, {{2, kJan1 + 2, kC2, 20}, {3, kJan1 + 3, kC2, 30}},
                    "job2")
                .status());
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2}, {2, kJan1 + 2, kC2, 20},
                     {3, kJan1 + 3, kC2, 30}}));
  EXPECT_THAT(Files(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-2-job2.json",
                                   "user_stats/v1/date=2024-01-01/part-job2-0.parquet"));
  // The same job again (a retry) never overwrites a visible file.
  ASSERT_OK(Replace(*store_, kJan1 + 2, kJan1 + 10, {{2, kJan1 + 2, kC2, 20}, {3, kJan1 + 3, kC2, 30}},
                    "job2")
                .status());
  EXPECT_THAT(Files(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-3-job2.json",
                                   "user_stats/v1/date=2024-01-01/part-job2-1.parquet"));
  // Emptying the day keeps its (empty) generation.
  ASSERT_OK(Replace(*store_, kJan1, kJan2, {}, "job3").status());
  EXPECT_THAT(ReadRows(*store_, kJan1, kJan2), IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("user_stats", 1));
  EXPECT_THAT(partitions, ElementsAre("2024-01-01"));
  EXPECT_THAT(Files(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-4-job3.json"));
}

TEST_F(S3OfflineStoreTest, IgnoresAndCleansStrayObjects) {
  ASSERT_OK(Replace(*store_, kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}}, "job1").status());
  const std::string part = root_ + "/user_stats/v1/date=2024-01-01/";
  // The leftover of an interrupted write: an uploaded but unlisted file.
  ASSERT_OK(s3_->CopyFile(part + "part-job1-0.parquet", part + "part-crashed-0.parquet"));
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan2), Strings({{1, kJan1 + 1, kC1, 1}}));
  ASSERT_OK(Replace(*store_, kJan1 + 5, kJan1 + 6, {{2, kJan1 + 5, kC1, 2}}, "job2").status());
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 5, kC1, 2}}));
  EXPECT_THAT(Files(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-2-job2.json",
                                   "user_stats/v1/date=2024-01-01/part-job2-0.parquet"));
}

// A crash at every mutating step of a ReplaceRange over three days: after it
// each day shows exactly its old or exactly its new rows, and a retry by a
// new store completes the write with nothing lost or duplicated.
TEST_F(S3OfflineStoreTest, CrashAtEveryStepLeavesOldOrNewPerPartition) {
  const std::vector<Row> old_rows = {{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2},
                                     {3, kJan3 + 1, kC1, 3}};
  const std::vector<Row> new_rows = {{1, kJan1 + 1, kC2, 10}, {3, kJan3 + 2, kC2, 30}};
  const std::vector<TimestampMicros> days = {kJan1, kJan2, kJan3};
  const std::vector<std::vector<std::string>> before = {
      Strings({old_rows[0]}), Strings({old_rows[1]}), Strings({old_rows[2]})};
  // Day 1: the old row stays beside the newer version of it; day 2: its row
  // is not brought again (gone); day 3: another row replaces the old one.
  const std::vector<std::vector<std::string>> after = {Strings({old_rows[0], new_rows[0]}), {},
                                                       Strings({new_rows[1]})};
  int crashes = 0;
  for (int64_t n = 1;; ++n) {
    SCOPED_TRACE("crash at mutation " + std::to_string(n));
    const std::string root = bucket_ + "/crash-" + std::to_string(n);
    faulty_->Recover();
    ASSERT_OK_AND_ASSIGN(auto store, OfflineStore::Make(faulty_, root));
    ASSERT_OK(Replace(*store, kJan1, kJan4, old_rows, "old").status());
    faulty_->CrashAt(n);
    auto result = Replace(*store, kJan1, kJan4, new_rows, "new");
    if (!faulty_->crashed()) {
      ASSERT_OK(result.status());
      break;
    }
    ++crashes;
    EXPECT_FALSE(result.ok());
    faulty_->Recover();
    ASSERT_OK_AND_ASSIGN(auto restarted, OfflineStore::Make(s3_, root));
    for (size_t d = 0; d < days.size(); ++d) {
      auto rows = ReadRows(*restarted, days[d], days[d] + kMicrosPerDay);
      EXPECT_TRUE(rows == before[d] || rows == after[d])
          << "day " << d << ": " << ::testing::PrintToString(rows);
    }
    ASSERT_OK(Replace(*restarted, kJan1, kJan4, new_rows, "new").status());
    for (size_t d = 0; d < days.size(); ++d) {
      EXPECT_EQ(ReadRows(*restarted, days[d], days[d] + kMicrosPerDay), after[d]) << "day " << d;
    }
  }
  // Three files and three markers written, the superseded files deleted.
  EXPECT_GE(crashes, 6);
}

// S3 itself goes down (the connection to it is cut) in the middle of a
// write: the write fails with an error naming S3, in bounded time (no hang),
// no partial generation is visible, and once S3 is back a re-run completes.
TEST_F(S3OfflineStoreTest, S3DownMidWriteThenRerun) {
  auto proxy = TcpProxy::Start(options_.endpoint);
  ASSERT_NE(proxy, nullptr);
  S3ConnectionOptions through = options_;
  through.endpoint = proxy->endpoint();
  through.max_attempts = 2;
  through.connect_timeout_seconds = 1;
  through.request_timeout_seconds = 3;
  ASSERT_OK_AND_ASSIGN(auto s3, MakeS3FileSystem(through));
  auto faulty = std::make_shared<FaultInjectingFileSystem>(s3);
  faulty->SetOutage([&] { proxy->Cut(); });

  const std::vector<Row> old_rows = {{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}};
  const std::vector<Row> new_rows = {{1, kJan1 + 1, kC2, 10}, {2, kJan2 + 1, kC2, 20},
                                     {3, kJan2 + 2, kC2, 30}};
  ASSERT_OK_AND_ASSIGN(auto store, OfflineStore::Make(faulty, root_));
  ASSERT_OK(Replace(*store, kJan1, kJan3, old_rows, "old").status());
  ASSERT_OK(store->CheckHealth());

  // Down when the first new data file is uploaded (its Close).
  faulty->CrashAt(2);
  auto result = Replace(*store, kJan1, kJan3, new_rows, "new");
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(faulty->crashed());
  EXPECT_THAT(result.status().ToString(), HasSubstr("AWS Error"));

  // Readers (through the healthy server) see the old generation only.
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan3), Strings(old_rows));

  // Back up: a re-run finishes it, no row lost or duplicated.
  ASSERT_TRUE(proxy->Resume());
  faulty->Recover();
  ASSERT_OK(Replace(*store, kJan1, kJan3, new_rows, "new").status());
  // Each old row is superseded by a newer version: both are kept.
  EXPECT_EQ(ReadRows(*store_, kJan1, kJan3),
            Strings({old_rows[0], new_rows[0], old_rows[1], new_rows[1], new_rows[2]}));
  for (const auto& f : Files()) {
    auto name = f.substr(f.rfind('/') + 1);
    EXPECT_TRUE(name.rfind("part-new-", 0) == 0 || name.rfind("_generation-", 0) == 0) << f;
  }
}

}  // namespace
}  // namespace fstore
