#include "fstore/offline/offline_store.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <set>

#include <arrow/api.h>
#include <arrow/filesystem/api.h>
#include <arrow/json/from_string.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <parquet/arrow/reader.h>
#include <parquet/metadata.h>
#include <parquet/statistics.h>

#include "fstore/offline/fault_injecting_filesystem.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

TimestampMicros T(const std::string& text) { return ParseTimestamp(text).ValueOrDie(); }

// ---------------------------------------------------------------------------
// Building and comparing tables

struct Row {
  int64_t key;
  TimestampMicros event;
  TimestampMicros created;
  double value;
};

std::shared_ptr<arrow::DataType> Ts() { return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"); }

std::shared_ptr<arrow::Array> TimestampArray(const std::vector<TimestampMicros>& values) {
  arrow::TimestampBuilder b(Ts(), arrow::default_memory_pool());
  EXPECT_TRUE(b.AppendValues(values).ok());
  return b.Finish().ValueOrDie();
}

template <typename Builder, typename T>
std::shared_ptr<arrow::Array> ArrayOf(const std::vector<T>& values) {
  Builder b;
  for (const auto& v : values) EXPECT_TRUE(b.Append(v).ok());
  return b.Finish().ValueOrDie();
}

// Columns user_id (int64), event_timestamp, created_timestamp, score (double).
std::shared_ptr<arrow::Table> IntRows(const std::vector<Row>& rows) {
  std::vector<int64_t> keys;
  std::vector<TimestampMicros> events, created;
  std::vector<double> values;
  for (const auto& r : rows) {
    keys.push_back(r.key);
    events.push_back(r.event);
    created.push_back(r.created);
    values.push_back(r.value);
  }
  auto schema = arrow::schema(
      {arrow::field("user_id", arrow::int64()), arrow::field("event_timestamp", Ts()),
       arrow::field("created_timestamp", Ts()), arrow::field("score", arrow::float64())});
  return arrow::Table::Make(
      schema, {ArrayOf<arrow::Int64Builder>(keys), TimestampArray(events), TimestampArray(created),
               ArrayOf<arrow::DoubleBuilder>(values)});
}

// One string per row: the columns' values joined by '|'.
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

class OfflineStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("fstore_offline_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    local_ = std::make_shared<arrow::fs::LocalFileSystem>();
    faulty_ = std::make_shared<FaultInjectingFileSystem>(local_);
    store_ = OfflineStore::Make(faulty_, dir_.string()).ValueOrDie();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The files (relative paths) under the root, sorted.
  std::vector<std::string> FilesOnDisk() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir_).string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> ReadRows(TimestampMicros start, TimestampMicros end,
                                    const std::string& feature_set = "user_stats") {
    auto table = store_->Read(feature_set, 1, start, end);
    EXPECT_TRUE(table.ok()) << table.status().ToString();
    if (!table.ok()) return {};
    return RowsOf(*table);
  }

  Result<WriteStats> Replace(TimestampMicros start, TimestampMicros end,
                             const std::vector<Row>& rows, const std::string& job = "job1") {
    return store_->ReplaceRange("user_stats", 1, {"user_id"}, start, end, IntRows(rows), job);
  }

  fs::path dir_;
  std::shared_ptr<arrow::fs::LocalFileSystem> local_;
  std::shared_ptr<FaultInjectingFileSystem> faulty_;
  std::unique_ptr<OfflineStore> store_;
};

const TimestampMicros kJan1 = T("2024-01-01");
const TimestampMicros kJan2 = T("2024-01-02");
const TimestampMicros kJan3 = T("2024-01-03");
const TimestampMicros kJan4 = T("2024-01-04");
const TimestampMicros kC1 = T("2024-02-01");  // created times
const TimestampMicros kC2 = T("2024-02-02");

TEST_F(OfflineStoreTest, RoundTrip) {
  std::vector<Row> rows = {
      {2, kJan1 + 5, kC1, 2.5}, {1, kJan1 + 7, kC1, 1.5}, {1, kJan2 + 1, kC1, 3.0}};
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan1, kJan3, rows));
  EXPECT_EQ(stats.rows_written, 3);
  EXPECT_EQ(stats.files_written, 2);
  EXPECT_EQ(stats.partitions_written, 2);
  EXPECT_GT(stats.bytes_written, 0);
  EXPECT_EQ(
      ReadRows(kJan1, kJan3),
      Strings({{1, kJan1 + 7, kC1, 1.5}, {1, kJan2 + 1, kC1, 3.0}, {2, kJan1 + 5, kC1, 2.5}}));
  ASSERT_OK_AND_ASSIGN(auto table, store_->Read("user_stats", 1, kJan1, kJan3));
  EXPECT_TRUE(table->schema()->field(1)->type()->Equals(*Ts()));
  EXPECT_EQ(table->schema()->field(0)->name(), "user_id");
  // Another schema version or feature set is another table.
  ASSERT_OK_AND_ASSIGN(auto other, store_->Read("user_stats", 2, kJan1, kJan3));
  EXPECT_EQ(other->num_rows(), 0);
}

TEST_F(OfflineStoreTest, OpensFileUri) {
  ASSERT_OK_AND_ASSIGN(auto store, OfflineStore::Open("file://" + dir_.string() + "/sub"));
  ASSERT_OK(
      store->ReplaceRange("fs", 1, {"user_id"}, kJan1, kJan2, IntRows({{1, kJan1, kC1, 1}}), "j")
          .status());
  EXPECT_TRUE(fs::exists(dir_ / "sub/fs/v1/date=2024-01-01"));
  ASSERT_OK_AND_ASSIGN(auto table, store->Read("fs", 1, kJan1, kJan2));
  EXPECT_EQ(table->num_rows(), 1);
  EXPECT_FALSE(OfflineStore::Open("nosuchscheme://x/y").ok());
}

TEST_F(OfflineStoreTest, LayoutOnDisk) {
  ASSERT_OK(
      Replace(kJan1, kJan3, {{1, kJan1 + 1, kC1, 1}, {1, kJan2 + 1, kC1, 2}}, "mat-42").status());
  EXPECT_THAT(FilesOnDisk(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-1-mat-42.json",
                                         "user_stats/v1/date=2024-01-01/part-mat-42-0.parquet",
                                         "user_stats/v1/date=2024-01-02/_generation-1-mat-42.json",
                                         "user_stats/v1/date=2024-01-02/part-mat-42-0.parquet"));
  // The Parquet file: the columns in the stored order and types; integers
  // and times delta-encoded without a codec, floats PLAIN without one.
  ASSERT_OK_AND_ASSIGN(
      auto in, local_->OpenInputFile(
                   (dir_ / "user_stats/v1/date=2024-01-01/part-mat-42-0.parquet").string()));
  ASSERT_OK_AND_ASSIGN(auto reader, parquet::arrow::OpenFile(in, arrow::default_memory_pool()));
  std::shared_ptr<arrow::Schema> schema;
  ASSERT_OK(reader->GetSchema(&schema));
  ASSERT_EQ(schema->num_fields(), 4);
  EXPECT_EQ(schema->field(0)->name(), "user_id");
  EXPECT_EQ(schema->field(1)->name(), "event_timestamp");
  EXPECT_EQ(schema->field(2)->name(), "created_timestamp");
  EXPECT_EQ(schema->field(3)->name(), "score");
  EXPECT_TRUE(schema->field(1)->type()->Equals(*Ts())) << schema->field(1)->type()->ToString();
  EXPECT_TRUE(schema->field(2)->type()->Equals(*Ts()));
  auto metadata = reader->parquet_reader()->metadata();
  for (int c : {0, 1, 2}) {
    auto chunk = metadata->RowGroup(0)->ColumnChunk(c);
    EXPECT_EQ(chunk->compression(), arrow::Compression::UNCOMPRESSED) << c;
    EXPECT_THAT(chunk->encodings(), testing::Contains(parquet::Encoding::DELTA_BINARY_PACKED)) << c;
  }
  EXPECT_EQ(metadata->RowGroup(0)->ColumnChunk(3)->compression(),
            arrow::Compression::UNCOMPRESSED);
  EXPECT_THAT(metadata->RowGroup(0)->ColumnChunk(3)->encodings(),
              testing::Contains(parquet::Encoding::PLAIN));
  EXPECT_TRUE(metadata->RowGroup(0)->ColumnChunk(1)->statistics()->HasMinMax());
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("user_stats", 1));
  EXPECT_THAT(partitions, ElementsAre("2024-01-01", "2024-01-02"));
}

TEST_F(OfflineStoreTest, ColumnsAreReorderedIntoTheLayout) {
  // Features first, time columns in ns: stored as keys, event, created, features.
  arrow::TimestampBuilder ns(arrow::timestamp(arrow::TimeUnit::NANO), arrow::default_memory_pool());
  ASSERT_OK(ns.Append((kJan1 + 3) * 1000));
  ASSERT_OK_AND_ASSIGN(auto event, ns.Finish());
  auto rows = arrow::Table::Make(
      arrow::schema({arrow::field("score", arrow::float64()),
                     arrow::field("created_timestamp", Ts()),
                     arrow::field("event_timestamp", arrow::timestamp(arrow::TimeUnit::NANO)),
                     arrow::field("user_id", arrow::int64())}),
      {ArrayOf<arrow::DoubleBuilder>(std::vector<double>{9.0}), TimestampArray({kC1}), event,
       ArrayOf<arrow::Int64Builder>(std::vector<int64_t>{7})});
  ASSERT_OK(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan2, rows, "j").status());
  EXPECT_EQ(ReadRows(kJan1, kJan2), Strings({{7, kJan1 + 3, kC1, 9.0}}));
  // Precision would be lost: refused.
  arrow::TimestampBuilder ns2(arrow::timestamp(arrow::TimeUnit::NANO),
                              arrow::default_memory_pool());
  ASSERT_OK(ns2.Append((kJan1 + 3) * 1000 + 1));
  ASSERT_OK_AND_ASSIGN(auto fine, ns2.Finish());
  auto lossy = rows->SetColumn(2, arrow::field("event_timestamp", fine->type()),
                               std::make_shared<arrow::ChunkedArray>(fine))
                   .ValueOrDie();
  auto st = store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan2, lossy, "j").status();
  EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kInvalidArgument) << st.ToString();
}

TEST_F(OfflineStoreTest, SortsAndDeduplicates) {
  std::vector<Row> rows = {
      {3, kJan1 + 9, kC1, 30}, {1, kJan1 + 9, kC1, 10},
      {1, kJan1 + 2, kC2, 11},                           // two versions of (1, +2): both kept
      {1, kJan1 + 2, kC1, 12}, {2, kJan1 + 4, kC1, 20},  // same created time: the later row wins
      {2, kJan1 + 4, kC1, 21}, {2, kJan1 + 4, kC1, 22},
      {1, kJan1 + 2, kC1, 13},
  };
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan1, kJan2, rows));
  EXPECT_EQ(stats.rows_written, 5);
  EXPECT_EQ(ReadRows(kJan1, kJan2), Strings({{1, kJan1 + 2, kC1, 13},
                                             {1, kJan1 + 2, kC2, 11},
                                             {1, kJan1 + 9, kC1, 10},
                                             {2, kJan1 + 4, kC1, 22},
                                             {3, kJan1 + 9, kC1, 30}}));
}

TEST_F(OfflineStoreTest, ARewriteKeepsTheVersionsItSupersedes) {
  // Day one as first materialized (created kC1).
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2},
                                   {3, kJan1 + 3, kC2, 3}}, "a")
                .status());
  // A re-run brings a corrected (1, +1) created later, (2, +2) unchanged, and
  // no (3, +3); (3, +3) came before with a greater created time.
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC2, 10}, {2, kJan1 + 2, kC1, 20}}, "b")
                .status());
  // (1, +1): the old version stays beside the new one; (2, +2): same created
  // time, replaced; (3, +3): not brought again, gone.
  EXPECT_EQ(ReadRows(kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {1, kJan1 + 1, kC2, 10}, {2, kJan1 + 2, kC1, 20}}));
  // A re-run bringing (1, +1) with an older created time only: both stored
  // versions go, it is the only one.
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC1 - 1, 7}}, "c").status());
  EXPECT_EQ(ReadRows(kJan1, kJan2), Strings({{1, kJan1 + 1, kC1 - 1, 7}}));
}

TEST_F(OfflineStoreTest, ARowBroughtAgainUnchangedKeepsItsFirstCreatedTime) {
  // What a re-run does that writes the wall clock as created time: every
  // row comes again with a later created time, most of them unchanged.
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2}}, "a")
                .status());
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC2, 1}, {2, kJan1 + 2, kC2, 20}}, "b")
                .status());
  // (1, +1) unchanged: no second version, known since kC1. (2, +2) changed:
  // both versions.
  EXPECT_EQ(ReadRows(kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2}, {2, kJan1 + 2, kC2, 20}}));
  // A third run, (2, +2) back to its first value: a version again (it
  // differs from the one just before it), and (1, +1) still once.
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC2 + 5, 1}, {2, kJan1 + 2, kC2 + 5, 2}}, "c")
                .status());
  EXPECT_EQ(ReadRows(kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 2, kC1, 2}, {2, kJan1 + 2, kC2, 20},
                     {2, kJan1 + 2, kC2 + 5, 2}}));
  // NaN equals NaN here: a row holding one, brought again, is one version.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ASSERT_OK(Replace(kJan2, kJan3, {{3, kJan2 + 1, kC1, nan}}, "d").status());
  ASSERT_OK(Replace(kJan2, kJan3, {{3, kJan2 + 1, kC2, nan}}, "e").status());
  EXPECT_EQ(ReadRows(kJan2, kJan3).size(), 1u);
}

TEST_F(OfflineStoreTest, AVersionIsNewWhenAnyColumnOfAnyTypeChanges) {
  // Six entities at one event time, written twice (created kC1, then kC2):
  // 1 unchanged, 2 a string changed, 3 a bool, 4 a list, 5 only nulls
  // (unchanged), 6 a null that became a value.
  auto table = [](TimestampMicros created, const char* strings, const char* bools,
                  const char* lists, const char* ints) {
    auto column = [](const std::shared_ptr<arrow::DataType>& type, const char* json) {
      return arrow::json::ArrayFromJSONString(type, json).ValueOrDie();
    };
    return arrow::Table::Make(
        arrow::schema({arrow::field("user_id", arrow::int64()), arrow::field("event_timestamp", Ts()),
                       arrow::field("created_timestamp", Ts()), arrow::field("s", arrow::utf8()),
                       arrow::field("b", arrow::boolean()),
                       arrow::field("l", arrow::list(arrow::int64())),
                       arrow::field("i", arrow::int64())}),
        {column(arrow::int64(), "[1, 2, 3, 4, 5, 6]"),
         TimestampArray(std::vector<TimestampMicros>(6, kJan1 + 1)),
         TimestampArray(std::vector<TimestampMicros>(6, created)), column(arrow::utf8(), strings),
         column(arrow::boolean(), bools), column(arrow::list(arrow::int64()), lists),
         column(arrow::int64(), ints)});
  };
  ASSERT_OK(store_->ReplaceRange("mixed", 1, {"user_id"}, kJan1, kJan2,
                                 table(kC1, R"(["a", "b", "c", "d", null, "f"])",
                                       "[true, true, true, true, null, true]",
                                       "[[1], [2], [3], [4, 5], null, [6]]",
                                       "[1, 2, 3, 4, null, null]"),
                                 "a")
                .status());
  ASSERT_OK(store_->ReplaceRange("mixed", 1, {"user_id"}, kJan1, kJan2,
                                 table(kC2, R"(["a", "B", "c", "d", null, "f"])",
                                       "[true, true, false, true, null, true]",
                                       "[[1], [2], [3], [4, 6], null, [6]]",
                                       "[1, 2, 3, 4, null, 6]"),
                                 "b")
                .status());
  ASSERT_OK_AND_ASSIGN(auto read, store_->Read("mixed", 1, kJan1, kJan2));
  ASSERT_OK_AND_ASSIGN(auto batch, read->CombineChunksToBatch());
  std::map<int64_t, std::vector<TimestampMicros>> versions;
  const auto& keys = static_cast<const arrow::Int64Array&>(*batch->GetColumnByName("user_id"));
  const auto& created =
      static_cast<const arrow::TimestampArray&>(*batch->GetColumnByName("created_timestamp"));
  for (int64_t r = 0; r < batch->num_rows(); ++r) versions[keys.Value(r)].push_back(created.Value(r));
  using V = std::vector<TimestampMicros>;
  EXPECT_EQ(versions, (std::map<int64_t, V>{{1, V{kC1}}, {2, V{kC1, kC2}}, {3, V{kC1, kC2}},
                                            {4, V{kC1, kC2}}, {5, V{kC1}}, {6, V{kC1, kC2}}}));
}

TEST_F(OfflineStoreTest, ASubDayRewriteKeepsSupersededVersionsOnlyInsideItsRange) {
  const TimestampMicros noon = kJan1 + 12 * kMicrosPerHour;
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}, {1, noon + 1, kC1, 2}}, "a").status());
  ASSERT_OK(Replace(noon, kJan2, {{1, noon + 1, kC2, 20}}, "b").status());
  EXPECT_EQ(ReadRows(kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {1, noon + 1, kC1, 2}, {1, noon + 1, kC2, 20}}));
  // Read asks for the same order across partitions.
  ASSERT_OK(Replace(kJan2, kJan3, {{1, kJan2 + 1, kC2, 5}, {1, kJan2 + 1, kC1, 4}}, "c").status());
  EXPECT_EQ(ReadRows(kJan1, kJan3),
            Strings({{1, kJan1 + 1, kC1, 1}, {1, noon + 1, kC1, 2}, {1, noon + 1, kC2, 20},
                     {1, kJan2 + 1, kC1, 4}, {1, kJan2 + 1, kC2, 5}}));
}

TEST_F(OfflineStoreTest, RerunOfTheSameRangeLeavesIdenticalContents) {
  std::vector<Row> rows = {{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}, {1, kJan2 + 5, kC1, 3}};
  ASSERT_OK(Replace(kJan1, kJan3, rows, "a").status());
  auto first = ReadRows(kJan1, kJan3);
  ASSERT_OK(Replace(kJan1, kJan3, rows, "b").status());
  EXPECT_EQ(ReadRows(kJan1, kJan3), first);
  // The same job id again (a retry): still no duplicates, older files gone.
  ASSERT_OK(Replace(kJan1, kJan3, rows, "b").status());
  EXPECT_EQ(ReadRows(kJan1, kJan3), first);
  EXPECT_THAT(FilesOnDisk(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-3-b.json",
                                         "user_stats/v1/date=2024-01-01/part-b-1.parquet",
                                         "user_stats/v1/date=2024-01-02/_generation-3-b.json",
                                         "user_stats/v1/date=2024-01-02/part-b-1.parquet"));
}

TEST_F(OfflineStoreTest, SubDayRerunKeepsTheDaysRowsOutsideTheRange) {
  const TimestampMicros noon = kJan1 + 12 * kMicrosPerHour;
  ASSERT_OK(Replace(kJan1, kJan2,
                    {{1, kJan1 + 1, kC1, 1},
                     {1, noon, kC1, 2},
                     {1, noon + 7, kC1, 3},
                     {2, kJan2 - 1, kC1, 4}})
                .status());
  // Replace [noon, noon + 1h): one old row inside it goes, another comes.
  ASSERT_OK(Replace(noon, noon + kMicrosPerHour, {{3, noon + 5, kC2, 5}}, "j2").status());
  EXPECT_EQ(ReadRows(kJan1, kJan2),
            Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan2 - 1, kC1, 4}, {3, noon + 5, kC2, 5}}));
}

TEST_F(OfflineStoreTest, NarrowerRewriteWithFewerRowsRemovesTheOldRows) {
  ASSERT_OK(Replace(kJan1, kJan4,
                    {{1, kJan1 + 1, kC1, 1},
                     {2, kJan2 + 1, kC1, 2},
                     {3, kJan3 + 1, kC1, 3},
                     {4, kJan2 + 2, kC1, 4}})
                .status());
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan2, kJan3, {{4, kJan2 + 2, kC2, 40}}, "j2"));
  EXPECT_EQ(stats.partitions_written, 1);
  // (2, Jan 2) is not brought again: gone. (4, Jan 2): superseded, kept.
  EXPECT_EQ(ReadRows(kJan1, kJan4),
            Strings({{1, kJan1 + 1, kC1, 1}, {3, kJan3 + 1, kC1, 3}, {4, kJan2 + 2, kC1, 4},
                     {4, kJan2 + 2, kC2, 40}}));
}

TEST_F(OfflineStoreTest, RangeOverSeveralDaysEmptiesPartitionsWhollyInside) {
  const TimestampMicros late_jan3 = kJan3 + 13 * kMicrosPerHour;
  ASSERT_OK(Replace(kJan1, kJan4,
                    {{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}, {3, late_jan3, kC1, 3}})
                .status());
  // [Jan 1 12:00, Jan 3 12:00): Jan 2 is wholly inside and gets no rows;
  // Jan 1 and Jan 3 keep their rows outside the range.
  const TimestampMicros start = kJan1 + 12 * kMicrosPerHour, end = kJan3 + 12 * kMicrosPerHour;
  ASSERT_OK_AND_ASSIGN(auto stats,
                       Replace(start, end, {{9, kJan3 + 5 * kMicrosPerHour, kC2, 9}}, "j2"));
  EXPECT_EQ(stats.partitions_written, 3);
  EXPECT_EQ(ReadRows(kJan1, kJan4), Strings({{1, kJan1 + 1, kC1, 1},
                                             {3, late_jan3, kC1, 3},
                                             {9, kJan3 + 5 * kMicrosPerHour, kC2, 9}}));
  // Jan 2 is an empty generation: present, no data files.
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("user_stats", 1));
  EXPECT_THAT(partitions, ElementsAre("2024-01-01", "2024-01-02", "2024-01-03"));
  EXPECT_THAT(ReadRows(kJan2, kJan3), IsEmpty());
  EXPECT_FALSE(fs::exists(dir_ / "user_stats/v1/date=2024-01-02/part-job1-0.parquet"));
  // Dates in a range with neither old nor new rows are not created; an
  // already empty partition is left alone.
  ASSERT_OK_AND_ASSIGN(stats, Replace(kJan2, T("2024-03-01"), {}, "j3"));
  EXPECT_EQ(stats.partitions_written, 1);  // Jan 3 only
  ASSERT_OK_AND_ASSIGN(partitions, store_->Partitions("user_stats", 1));
  EXPECT_THAT(partitions, ElementsAre("2024-01-01", "2024-01-02", "2024-01-03"));
  EXPECT_EQ(ReadRows(kJan1, T("2024-03-01")), Strings({{1, kJan1 + 1, kC1, 1}}));
}

TEST_F(OfflineStoreTest, RejectsBadInput) {
  auto code = [](const Result<WriteStats>& r) { return ErrorCodeOf(r.status()); };
  EXPECT_EQ(code(Replace(kJan1, kJan2, {{1, kJan2, kC1, 1}})),
            ErrorCode::kInvalidArgument);  // end excluded
  EXPECT_EQ(code(Replace(kJan2, kJan3, {{1, kJan2 - 1, kC1, 1}})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(Replace(kJan2, kJan2, {})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(Replace(kJan1, kJan2, {}, "")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(Replace(kJan1, kJan2, {}, "a/b")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(store_->ReplaceRange("../x", 1, {"user_id"}, kJan1, kJan2, IntRows({}), "j")),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(store_->ReplaceRange("user_stats", 1, {"nope"}, kJan1, kJan2, IntRows({}), "j")),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(store_->ReplaceRange("user_stats", 1, {"score"}, kJan1, kJan2, IntRows({}), "j")),
            ErrorCode::kInvalidArgument);  // double key
  EXPECT_EQ(code(store_->ReplaceRange("user_stats", 1, {}, kJan1, kJan2, IntRows({}), "j")),
            ErrorCode::kInvalidArgument);
  // Null keys.
  arrow::Int64Builder keys;
  ASSERT_OK(keys.AppendNull());
  auto with_null = IntRows({{1, kJan1, kC1, 1}});
  with_null = with_null
                  ->SetColumn(0, with_null->schema()->field(0),
                              std::make_shared<arrow::ChunkedArray>(keys.Finish().ValueOrDie()))
                  .ValueOrDie();
  EXPECT_EQ(code(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan2, with_null, "j")),
            ErrorCode::kInvalidArgument);
  EXPECT_THAT(FilesOnDisk(), IsEmpty());
  // A schema different from the stored one.
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1, kC1, 1}}).status());
  auto renamed = IntRows({{1, kJan2, kC1, 1}})
                     ->RenameColumns({"user_id", "event_timestamp", "created_timestamp", "other"})
                     .ValueOrDie();
  EXPECT_EQ(code(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan2, kJan3, renamed, "j")),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorCodeOf(store_->Read("user_stats", 1, kJan1, kJan2, {"nope"}).status()),
            ErrorCode::kInvalidArgument);
}

TEST_F(OfflineStoreTest, ReadOpensOnlyThePartitionsOfTheRange) {
  ASSERT_OK(Replace(kJan1, kJan4,
                    {{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}, {3, kJan3 + 1, kC1, 3}})
                .status());
  faulty_->ClearOpened();
  EXPECT_EQ(ReadRows(kJan2, kJan2 + kMicrosPerHour), Strings({{2, kJan2 + 1, kC1, 2}}));
  auto opened = faulty_->opened();
  ASSERT_FALSE(opened.empty());
  for (const auto& path : opened)
    EXPECT_THAT(path, ::testing::HasSubstr("/date=2024-01-02/")) << path;
  // And a deleted partition outside the range does not matter.
  fs::remove_all(dir_ / "user_stats/v1/date=2024-01-03");
  EXPECT_EQ(ReadRows(kJan1, kJan3), Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}}));
}

TEST_F(OfflineStoreTest, ReadFiltersAcrossRowGroups) {
  // One entity, 300k events one per 100ms: three row groups with narrow time
  // statistics; a read in the middle skips some, filters others.
  const int64_t n = 300'000;
  std::vector<Row> rows;
  rows.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    rows.push_back({1, kJan1 + i * 100'000, kC1, static_cast<double>(i)});
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan1, kJan2, rows));
  EXPECT_EQ(stats.rows_written, n);
  const TimestampMicros start = kJan1 + 140'000 * 100'000LL, end = kJan1 + 270'000 * 100'000LL;
  ASSERT_OK_AND_ASSIGN(auto table, store_->Read("user_stats", 1, start, end));
  ASSERT_EQ(table->num_rows(), 130'000);
  EXPECT_EQ(table->column(3)->GetScalar(0).ValueOrDie()->ToString(), "140000");
  EXPECT_EQ(table->column(3)->GetScalar(129'999).ValueOrDie()->ToString(), "269999");
  // Streaming gives the same rows in bounded batches.
  ASSERT_OK_AND_ASSIGN(auto reader, store_->Scan("user_stats", 1, start, end, {"score"}));
  int64_t total = 0, batches = 0;
  while (true) {
    std::shared_ptr<arrow::RecordBatch> batch;
    ASSERT_OK(reader->ReadNext(&batch));
    if (batch == nullptr) break;
    EXPECT_LE(batch->num_rows(), kOfflineRowGroupRows);
    total += batch->num_rows();
    ++batches;
  }
  EXPECT_EQ(total, 130'000);
  EXPECT_GE(batches, 2);
}

// A table of every fixed-width type ReadFixedWidth reads, nulls in `score`
// only from row 200,000 on (after the first row groups), and a string
// column: `n` rows 100 ms apart from `start`, keys cycling over 1000.
std::shared_ptr<arrow::Table> FixedWidthRowsTable(int64_t n, TimestampMicros start) {
  arrow::Int64Builder keys;
  arrow::TimestampBuilder events(Ts(), arrow::default_memory_pool()),
      created(Ts(), arrow::default_memory_pool());
  arrow::DoubleBuilder score;
  arrow::Int32Builder count;
  arrow::FloatBuilder ratio;
  arrow::Date32Builder day;
  arrow::TimestampBuilder seen_ms(arrow::timestamp(arrow::TimeUnit::MILLI, "UTC"),
                                  arrow::default_memory_pool());
  arrow::StringBuilder name;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(keys.Append(i % 1000).ok());
    EXPECT_TRUE(events.Append(start + i * 100'000).ok());
    EXPECT_TRUE(created.Append(start + i * 100'000 + 1).ok());
    if (i >= 200'000 && i % 7 == 0) {
      EXPECT_TRUE(score.AppendNull().ok());
    } else {
      EXPECT_TRUE(score.Append(i * 0.5).ok());
    }
    EXPECT_TRUE(count.Append(static_cast<int32_t>(i % 100'000)).ok());
    EXPECT_TRUE(ratio.Append(static_cast<float>(i % 1000) / 8.0f).ok());
    EXPECT_TRUE(day.Append(static_cast<int32_t>(19'000 + i % 50)).ok());
    EXPECT_TRUE(seen_ms.Append(1'700'000'000'000 + i).ok());
    EXPECT_TRUE(name.Append("n" + std::to_string(i % 10)).ok());
  }
  auto schema = arrow::schema(
      {arrow::field("user_id", arrow::int64()), arrow::field("event_timestamp", Ts()),
       arrow::field("created_timestamp", Ts()), arrow::field("score", arrow::float64()),
       arrow::field("count", arrow::int32()), arrow::field("ratio", arrow::float32()),
       arrow::field("day", arrow::date32()),
       arrow::field("seen", arrow::timestamp(arrow::TimeUnit::MILLI, "UTC")),
       arrow::field("name", arrow::utf8())});
  std::vector<std::shared_ptr<arrow::Array>> columns;
  for (arrow::ArrayBuilder* b : std::vector<arrow::ArrayBuilder*>{
           &keys, &events, &created, &score, &count, &ratio, &day, &seen_ms, &name}) {
    columns.push_back(b->Finish().ValueOrDie());
  }
  return arrow::Table::Make(schema, columns);
}

// Checks that `got` holds Scan's rows of [start, end) for its columns.
void ExpectSameAsScan(OfflineStore* store, TimestampMicros start, TimestampMicros end,
                      const FixedWidthRows& got) {
  ASSERT_OK_AND_ASSIGN(auto reader, store->Scan("user_stats", 1, start, end));
  ASSERT_OK_AND_ASSIGN(auto table, reader->ToTable());
  ASSERT_OK_AND_ASSIGN(auto scanned, table->CombineChunksToBatch());
  ASSERT_EQ(got.rows, scanned->num_rows());
  ASSERT_GT(got.rows, 0);
  for (const FixedWidthColumn& col : got.columns) {
    SCOPED_TRACE(col.name);
    auto expected = scanned->GetColumnByName(col.name);
    ASSERT_NE(expected, nullptr);
    ASSERT_NE(col.type, nullptr);
    EXPECT_TRUE(col.type->Equals(*expected->type()));
    ASSERT_EQ(col.width, col.type->byte_width());
    ASSERT_EQ(col.values->size(), got.rows * col.width);
    EXPECT_EQ(col.has_nulls, expected->null_count() > 0);
    const uint8_t* want = expected->data()->buffers[1]->data() + expected->offset() * col.width;
    int64_t mismatches = 0;
    for (int64_t i = 0; i < got.rows; ++i) {
      const bool valid = !col.has_nulls || col.valid->data()[i] != 0;
      if (valid != expected->IsValid(i)) ++mismatches;
      if (valid && std::memcmp(col.values->data() + i * col.width, want + i * col.width,
                               static_cast<size_t>(col.width)) != 0) {
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST_F(OfflineStoreTest, ReadFixedWidthDecodesWhatScanGives) {
  // 11.1 hours from 20:00: 144,000 rows on Jan 1 (no nulls), the rest on
  // Jan 2 (nulls in `score`).
  const int64_t n = 400'000;
  const TimestampMicros start = T("2024-01-01T20:00:00Z");
  ASSERT_OK(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan1 + 2 * kMicrosPerDay,
                                 FixedWidthRowsTable(n, start), "job1")
                .status());
  const std::vector<std::string> columns{"user_id", "event_timestamp", "created_timestamp",
                                         "score",   "count",           "ratio",
                                         "day",     "seen"};
  FixedWidthRows rows;
  // The first day: ranges starting and ending inside row groups, and all of
  // it (rows with nulls in later row groups only).
  for (auto [from, to] : std::vector<std::pair<TimestampMicros, TimestampMicros>>{
           {start + 1'000 * 100'000LL + 50, start + 290'000 * 100'000LL},
           {kJan1, kJan1 + kMicrosPerDay},
           {start + 250'000 * 100'000LL, start + 250'010 * 100'000LL}}) {
    ASSERT_OK(store_->ReadFixedWidth("user_stats", 1, from, to, columns, &rows));
    ExpectSameAsScan(store_.get(), from, to, rows);
  }
  // Both days, read into the same (reused) buffers again.
  ASSERT_OK(store_->ReadFixedWidth("user_stats", 1, kJan1, kJan1 + 2 * kMicrosPerDay, columns,
                                   &rows));
  EXPECT_EQ(rows.rows, n);
  ExpectSameAsScan(store_.get(), kJan1, kJan1 + 2 * kMicrosPerDay, rows);
  ASSERT_TRUE(rows.Find("score")->has_nulls);
  EXPECT_FALSE(rows.Find("count")->has_nulls);
  // Numbers and times are stored without a codec, strings LZ4_RAW.
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    if (e.path().extension() != ".parquet") continue;
    ASSERT_OK_AND_ASSIGN(auto in, local_->OpenInputFile(e.path().string()));
    ASSERT_OK_AND_ASSIGN(auto reader, parquet::arrow::OpenFile(in, arrow::default_memory_pool()));
    auto row_group = reader->parquet_reader()->metadata()->RowGroup(0);
    for (int c = 0; c < row_group->num_columns(); ++c) {
      // The one string column ("name") is the one BYTE_ARRAY column.
      const bool is_string = row_group->ColumnChunk(c)->type() == parquet::Type::BYTE_ARRAY;
      EXPECT_EQ(row_group->ColumnChunk(c)->compression(),
                is_string ? arrow::Compression::LZ4 : arrow::Compression::UNCOMPRESSED)
          << e.path() << " column " << c;
    }
  }
}

TEST_F(OfflineStoreTest, ReadFixedWidthRefusesWhatItDoesNotReadRaw) {
  const TimestampMicros start = T("2024-01-01T10:00:00Z");
  FixedWidthRows rows;
  // No data yet: nothing, and no error.
  ASSERT_OK(store_->ReadFixedWidth("user_stats", 1, kJan1, kJan2, {"event_timestamp", "score"},
                                   &rows));
  EXPECT_EQ(rows.rows, 0);
  ASSERT_OK(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan2,
                                 FixedWidthRowsTable(1000, start), "job1")
                .status());
  // A string column is not fixed width: NotImplemented, for Scan to read.
  auto st = store_->ReadFixedWidth("user_stats", 1, kJan1, kJan2, {"event_timestamp", "name"},
                                   &rows);
  EXPECT_TRUE(st.IsNotImplemented()) << st.ToString();
  // The event time is needed for the range.
  st = store_->ReadFixedWidth("user_stats", 1, kJan1, kJan2, {"score"}, &rows);
  EXPECT_TRUE(st.IsInvalid()) << st.ToString();
  // A column the stored schema lacks comes back typeless; the others read.
  ASSERT_OK(store_->ReadFixedWidth("user_stats", 1, kJan1, kJan2,
                                   {"event_timestamp", "added_later", "count"}, &rows));
  EXPECT_EQ(rows.rows, 1000);
  EXPECT_EQ(rows.Find("added_later")->type, nullptr);
  EXPECT_EQ(reinterpret_cast<const int32_t*>(rows.Find("count")->values->data())[999], 999);
}

TEST_F(OfflineStoreTest, SplitsLargePartitionsIntoFiles) {
  const int64_t n = kOfflineFileRows + 1000;
  std::vector<Row> rows;
  rows.reserve(n);
  for (int64_t i = 0; i < n; ++i) rows.push_back({i % 2, kJan1 + i * 10'000, kC1, 0.0});
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan1, kJan2, rows));
  EXPECT_EQ(stats.files_written, 2);
  EXPECT_EQ(stats.rows_written, n);
  EXPECT_TRUE(fs::exists(dir_ / "user_stats/v1/date=2024-01-01/part-job1-1.parquet"));
  // The files are consecutive slices of the key order.
  ASSERT_OK_AND_ASSIGN(auto reader, store_->Scan("user_stats", 1, kJan1, kJan2));
  int64_t total = 0, last_key = -1;
  TimestampMicros last_event = 0;
  while (true) {
    std::shared_ptr<arrow::RecordBatch> batch;
    ASSERT_OK(reader->ReadNext(&batch));
    if (batch == nullptr) break;
    const auto& keys = static_cast<const arrow::Int64Array&>(*batch->column(0));
    const auto& events = static_cast<const arrow::TimestampArray&>(*batch->column(1));
    for (int64_t i = 0; i < batch->num_rows(); ++i, ++total) {
      ASSERT_TRUE(keys.Value(i) > last_key ||
                  (keys.Value(i) == last_key && events.Value(i) > last_event));
      last_key = keys.Value(i);
      last_event = events.Value(i);
    }
  }
  EXPECT_EQ(total, n);
}

TEST_F(OfflineStoreTest, ProjectsColumns) {
  // A table with a list feature (several Parquet leaves are not an issue).
  arrow::ListBuilder lists(arrow::default_memory_pool(), std::make_shared<arrow::Int64Builder>());
  auto* items = static_cast<arrow::Int64Builder*>(lists.value_builder());
  ASSERT_OK(lists.Append());
  ASSERT_OK(items->AppendValues({1, 2}));
  ASSERT_OK(lists.AppendNull());
  ASSERT_OK_AND_ASSIGN(auto list_array, lists.Finish());
  auto rows = IntRows({{1, kJan1 + 1, kC1, 1.5}, {2, kJan1 + 2, kC1, 2.5}});
  ASSERT_OK_AND_ASSIGN(rows, rows->AddColumn(4, arrow::field("recent", list_array->type()),
                                             std::make_shared<arrow::ChunkedArray>(list_array)));
  ASSERT_OK_AND_ASSIGN(
      rows, rows->AddColumn(5, arrow::field("name", arrow::utf8()),
                            std::make_shared<arrow::ChunkedArray>(ArrayOf<arrow::StringBuilder>(
                                std::vector<std::string>{"a", "b"}))));
  ASSERT_OK(store_->ReplaceRange("user_stats", 1, {"user_id"}, kJan1, kJan2, rows, "j").status());
  ASSERT_OK_AND_ASSIGN(auto table, store_->Read("user_stats", 1, kJan1, kJan2, {"name", "recent"}));
  ASSERT_EQ(table->num_columns(), 5);
  EXPECT_EQ(table->schema()->field(3)->name(), "name");
  EXPECT_EQ(table->schema()->field(4)->name(), "recent");
  EXPECT_EQ(table->column(4)->GetScalar(0).ValueOrDie()->ToString(), "list<element: int64>[1, 2]");
  EXPECT_FALSE(table->column(4)->GetScalar(1).ValueOrDie()->is_valid);
  ASSERT_OK_AND_ASSIGN(auto all, store_->Read("user_stats", 1, kJan1, kJan2));
  EXPECT_EQ(all->num_columns(), 6);
}

TEST_F(OfflineStoreTest, ScanStreamsPartitionsInDateOrder) {
  ASSERT_OK(Replace(kJan1, kJan3,
                    {{2, kJan1 + 1, kC1, 1}, {1, kJan2 + 1, kC1, 2}, {1, kJan1 + 3, kC1, 3}})
                .status());
  ASSERT_OK_AND_ASSIGN(auto reader, store_->Scan("user_stats", 1, kJan1, kJan3));
  ASSERT_OK_AND_ASSIGN(auto table, reader->ToTable());
  EXPECT_EQ(RowsOf(table),
            Strings({{1, kJan1 + 3, kC1, 3}, {2, kJan1 + 1, kC1, 1}, {1, kJan2 + 1, kC1, 2}}));
}

TEST_F(OfflineStoreTest, StringAndCompositeKeys) {
  auto make =
      [](const std::vector<std::tuple<std::string, int64_t, TimestampMicros, double>>& rows) {
        std::vector<std::string> a;
        std::vector<int64_t> b;
        std::vector<TimestampMicros> e, c;
        std::vector<double> v;
        for (const auto& [ka, kb, t, x] : rows) {
          a.push_back(ka);
          b.push_back(kb);
          e.push_back(t);
          c.push_back(kC1);
          v.push_back(x);
        }
        auto schema = arrow::schema(
            {arrow::field("merchant", arrow::utf8()), arrow::field("store", arrow::int64()),
             arrow::field("event_timestamp", Ts()), arrow::field("created_timestamp", Ts()),
             arrow::field("amount", arrow::float64())});
        return arrow::Table::Make(
            schema, {ArrayOf<arrow::StringBuilder>(a), ArrayOf<arrow::Int64Builder>(b),
                     TimestampArray(e), TimestampArray(c), ArrayOf<arrow::DoubleBuilder>(v)});
      };
  auto rows = make({{"m2", 1, kJan1 + 1, 1},
                    {"m1", 2, kJan1 + 1, 2},
                    {"m1", 1, kJan1 + 1, 3},
                    {"m1", 1, kJan1 + 1, 4},
                    {"m10", 1, kJan1 + 0, 5},
                    {"m1", 1, kJan1 - kMicrosPerDay, 6}});
  ASSERT_OK(
      store_->ReplaceRange("txn", 1, {"merchant", "store"}, kJan1 - kMicrosPerDay, kJan2, rows, "j")
          .status());
  ASSERT_OK_AND_ASSIGN(auto table, store_->Read("txn", 1, kJan1 - kMicrosPerDay, kJan2));
  EXPECT_EQ(RowsOf(table), RowsOf(make({{"m1", 1, kJan1 - kMicrosPerDay, 6},
                                        {"m1", 1, kJan1 + 1, 4},
                                        {"m1", 2, kJan1 + 1, 2},
                                        {"m10", 1, kJan1, 5},
                                        {"m2", 1, kJan1 + 1, 1}})));
  // Single string key.
  auto single = arrow::Table::Make(
      arrow::schema({arrow::field("user", arrow::utf8()), arrow::field("event_timestamp", Ts()),
                     arrow::field("created_timestamp", Ts())}),
      {ArrayOf<arrow::StringBuilder>(std::vector<std::string>{"b", "a", "b"}),
       TimestampArray({kJan1, kJan1, kJan1}), TimestampArray({kC1, kC1, kC2})});
  ASSERT_OK(store_->ReplaceRange("users", 1, {"user"}, kJan1, kJan2, single, "j").status());
  ASSERT_OK_AND_ASSIGN(auto users, store_->Read("users", 1, kJan1, kJan2));
  // a; b once: with no feature column its later version differs in nothing,
  // so the first stays (ARowBroughtAgainUnchangedKeepsItsFirstCreatedTime).
  ASSERT_EQ(users->num_rows(), 2);
  EXPECT_EQ(users->column(0)->GetScalar(0).ValueOrDie()->ToString(), "a");
  EXPECT_EQ(users->column(0)->GetScalar(1).ValueOrDie()->ToString(), "b");
  EXPECT_EQ(users->column(2)->GetScalar(1).ValueOrDie()->ToString(),
            arrow::TimestampScalar(kC1, Ts()).ToString());
}

TEST_F(OfflineStoreTest, TimestampsBefore1970) {
  const TimestampMicros epoch = 0;
  std::vector<Row> rows = {{1, epoch - 1, kC1, 1},
                           {1, epoch, kC1, 2},
                           {1, T("1969-12-31"), kC1, 3},
                           {2, T("1900-03-01T05:00:00Z"), kC1, 4}};
  ASSERT_OK(store_
                ->ReplaceRange("old", 1, {"user_id"}, T("1900-01-01"), T("1970-01-02"),
                               IntRows(rows), "j")
                .status());
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("old", 1));
  EXPECT_THAT(partitions, ElementsAre("1900-03-01", "1969-12-31", "1970-01-01"));
  ASSERT_OK_AND_ASSIGN(auto table, store_->Read("old", 1, epoch - 1, epoch + 1));
  EXPECT_EQ(RowsOf(table), Strings({{1, epoch - 1, kC1, 1}, {1, epoch, kC1, 2}}));
  // Replacing [1969-12-31T12:00, 1970-01-01) keeps the start of that day.
  ASSERT_OK(
      store_
          ->ReplaceRange("old", 1, {"user_id"}, T("1969-12-31T12:00:00Z"), epoch, IntRows({}), "j2")
          .status());
  ASSERT_OK_AND_ASSIGN(table, store_->Read("old", 1, T("1900-01-01"), T("1971-01-01")));
  EXPECT_EQ(RowsOf(table), Strings({{1, T("1969-12-31"), kC1, 3},
                                    {1, epoch, kC1, 2},
                                    {2, T("1900-03-01T05:00:00Z"), kC1, 4}}));
}

TEST_F(OfflineStoreTest, EmptyWritesAndMissingFeatureSets) {
  // Nothing stored: an empty table without columns, not an error.
  ASSERT_OK_AND_ASSIGN(auto none, store_->Read("nothing", 1, kJan1, kJan2));
  EXPECT_EQ(none->num_rows(), 0);
  EXPECT_EQ(none->num_columns(), 0);
  ASSERT_OK_AND_ASSIGN(auto partitions, store_->Partitions("nothing", 1));
  EXPECT_THAT(partitions, IsEmpty());
  // An empty write into an empty store creates nothing.
  ASSERT_OK_AND_ASSIGN(auto stats, Replace(kJan1, kJan3, {}));
  EXPECT_EQ(stats.partitions_written, 0);
  EXPECT_THAT(FilesOnDisk(), IsEmpty());
  // With data elsewhere, an empty range reads with the stored schema.
  ASSERT_OK(Replace(kJan3, kJan4, {{1, kJan3, kC1, 1}}).status());
  ASSERT_OK_AND_ASSIGN(auto empty, store_->Read("user_stats", 1, kJan1, kJan2));
  EXPECT_EQ(empty->num_rows(), 0);
  EXPECT_EQ(empty->num_columns(), 4);
  // An empty write over it empties it.
  ASSERT_OK(Replace(kJan3, kJan4, {}).status());
  EXPECT_THAT(ReadRows(kJan1, kJan4), IsEmpty());
}

TEST_F(OfflineStoreTest, IgnoresAndCleansStrayFiles) {
  ASSERT_OK(Replace(kJan1, kJan2, {{1, kJan1 + 1, kC1, 1}}).status());
  const fs::path part = dir_ / "user_stats/v1/date=2024-01-01";
  // Leftovers of a crashed write: a temp file, a moved but uncommitted file.
  fs::copy_file(part / "part-job1-0.parquet", part / "part-crashed-0.parquet");
  fs::copy_file(part / "part-job1-0.parquet", part / ".part-crashed-1.parquet.tmp");
  { std::ofstream(part / "._generation-2-crashed.json.tmp") << "{"; }
  EXPECT_EQ(ReadRows(kJan1, kJan2), Strings({{1, kJan1 + 1, kC1, 1}}));
  ASSERT_OK(Replace(kJan1 + 5, kJan1 + 6, {{2, kJan1 + 5, kC1, 2}}, "job2").status());
  EXPECT_EQ(ReadRows(kJan1, kJan2), Strings({{1, kJan1 + 1, kC1, 1}, {2, kJan1 + 5, kC1, 2}}));
  EXPECT_THAT(FilesOnDisk(), ElementsAre("user_stats/v1/date=2024-01-01/_generation-2-job2.json",
                                         "user_stats/v1/date=2024-01-01/part-job2-0.parquet"));
}

// ---------------------------------------------------------------------------
// Crash at every step of a ReplaceRange: afterwards each date partition shows
// exactly its old or exactly its new rows, and a retry completes the write.

struct CrashCase {
  std::vector<Row> old_rows;
  TimestampMicros old_start, old_end;
  std::vector<Row> new_rows;
  TimestampMicros new_start, new_end;
  std::vector<TimestampMicros> days;  // the partitions to check
};

class OfflineStoreCrashTest : public OfflineStoreTest {
 protected:
  // The rows of each day after the old write, and after old then new.
  void Expected(const CrashCase& c, std::vector<std::vector<std::string>>* before,
                std::vector<std::vector<std::string>>* after) {
    EXPECT_OK(Replace(c.old_start, c.old_end, c.old_rows, "old").status());
    for (auto day : c.days) before->push_back(ReadRows(day, day + kMicrosPerDay));
    EXPECT_OK(Replace(c.new_start, c.new_end, c.new_rows, "new").status());
    for (auto day : c.days) after->push_back(ReadRows(day, day + kMicrosPerDay));
    fs::remove_all(dir_ / "user_stats");
  }

  void Run(const CrashCase& c) {
    std::vector<std::vector<std::string>> before, after;
    Expected(c, &before, &after);
    ASSERT_NE(before, after);
    int64_t crashes = 0;
    for (int64_t n = 1;; ++n) {
      SCOPED_TRACE("crash at mutation " + std::to_string(n));
      fs::remove_all(dir_ / "user_stats");
      faulty_->Recover();
      ASSERT_OK(Replace(c.old_start, c.old_end, c.old_rows, "old").status());
      faulty_->CrashAt(n);
      auto result = Replace(c.new_start, c.new_end, c.new_rows, "new");
      if (!faulty_->crashed()) {
        ASSERT_OK(result.status());
        break;
      }
      ++crashes;
      EXPECT_FALSE(result.ok());
      // "Restart": a healthy filesystem, a new store.
      faulty_->Recover();
      ASSERT_OK_AND_ASSIGN(auto store, OfflineStore::Make(faulty_, dir_.string()));
      for (size_t d = 0; d < c.days.size(); ++d) {
        ASSERT_OK_AND_ASSIGN(auto table,
                             store->Read("user_stats", 1, c.days[d], c.days[d] + kMicrosPerDay));
        auto rows = RowsOf(table);
        EXPECT_TRUE(rows == before[d] || rows == after[d])
            << "day " << d << ": " << ::testing::PrintToString(rows);
      }
      // A retry completes the write, and leaves only the new generation.
      ASSERT_OK(store
                    ->ReplaceRange("user_stats", 1, {"user_id"}, c.new_start, c.new_end,
                                   IntRows(c.new_rows), "new")
                    .status());
      for (size_t d = 0; d < c.days.size(); ++d) {
        ASSERT_OK_AND_ASSIGN(auto table,
                             store->Read("user_stats", 1, c.days[d], c.days[d] + kMicrosPerDay));
        EXPECT_EQ(RowsOf(table), after[d]) << "day " << d;
      }
      for (const auto& f : FilesOnDisk()) {
        auto name = fs::path(f).filename().string();
        EXPECT_TRUE(name.rfind("part-new-", 0) == 0 || name.rfind("_generation-", 0) == 0) << f;
      }
    }
    // Each file write, move, the marker write and move, and the deletions.
    EXPECT_GE(crashes, 6);
  }
};

TEST_F(OfflineStoreCrashTest, SinglePartitionSubDayRange) {
  const TimestampMicros noon = kJan1 + 12 * kMicrosPerHour;
  Run(CrashCase{{{1, kJan1 + 1, kC1, 1}, {1, noon + 1, kC1, 2}, {2, noon + 2, kC1, 3}},
                kJan1,
                kJan2,
                {{1, noon + 1, kC2, 20}, {3, noon + 3, kC2, 30}},
                noon,
                kJan2,
                {kJan1}});
}

TEST_F(OfflineStoreCrashTest, SeveralPartitions) {
  Run(CrashCase{{{1, kJan1 + 1, kC1, 1}, {2, kJan2 + 1, kC1, 2}, {3, kJan3 + 1, kC1, 3}},
                kJan1,
                kJan4,
                {{1, kJan1 + 1, kC2, 10}, {3, kJan3 + 2, kC2, 30}},
                kJan1,
                kJan4,
                {kJan1, kJan2, kJan3}});
}

}  // namespace
}  // namespace fstore
