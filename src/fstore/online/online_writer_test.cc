#include "fstore/online/online_writer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include <arrow/api.h>
#include <arrow/json/from_string.h>

#include "fstore/core/ids.h"
#include "fstore/online/rocksdb/rocksdb_online_store.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;

/// An in-memory store that records the Write calls it gets (newer-wins included).
class RecordingStore : public OnlineStore {
 public:
  Status CheckHealth() override { return Status::OK(); }
  Status Close() override { return Status::OK(); }
  using OnlineStore::Write;
  Result<WriteResult> Write(const std::string& feature_set,
                            const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
                            const OnlineWriteOptions&) override {
    calls.push_back(records.size());
    WriteResult result;
    for (const auto& [key, record] : records) {
      auto [it, inserted] = data.try_emplace(EncodeEntityKey(key), record);
      if (!inserted) {
        if (std::tie(record.event_time, record.created_time) <
            std::tie(it->second.event_time, it->second.created_time)) {
          ++result.ignored;
          continue;
        }
        it->second = record;
      }
      ++result.applied;
    }
    return result;
  }
  Result<std::vector<std::optional<OnlineRecord>>> Read(const std::string&, const std::vector<EntityKey>& keys,
                                                        int64_t, TimestampMicros) override {
    std::vector<std::optional<OnlineRecord>> out;
    for (const auto& key : keys) {
      auto it = data.find(EncodeEntityKey(key));
      out.push_back(it == data.end() ? std::nullopt : std::optional<OnlineRecord>(it->second));
    }
    return out;
  }
  Status DeleteFeatureSet(const std::string&) override { return Status::OK(); }
  Status Sync() override { return Status::OK(); }

  std::vector<size_t> calls;
  std::map<std::string, OnlineRecord> data;
};

std::shared_ptr<arrow::ChunkedArray> Column(const std::shared_ptr<arrow::DataType>& type,
                                            const std::vector<std::string>& chunks) {
  auto column = arrow::json::ChunkedArrayFromJSONString(type, chunks);
  EXPECT_TRUE(column.ok()) << column.status().ToString();
  return *column;
}

std::shared_ptr<arrow::Table> MakeTable(
    const std::vector<std::pair<std::string, std::shared_ptr<arrow::ChunkedArray>>>& columns) {
  arrow::FieldVector fields;
  arrow::ChunkedArrayVector arrays;
  for (const auto& [name, array] : columns) {
    fields.push_back(arrow::field(name, array->type()));
    arrays.push_back(array);
  }
  return arrow::Table::Make(arrow::schema(fields), arrays);
}

OnlineRecord Get(OnlineStore* store, const EntityKey& key) {
  auto read = store->Read("fs", {key}, 0, kT0);
  EXPECT_TRUE(read.ok()) << read.status().ToString();
  if (!read.ok() || !(*read)[0].has_value()) {
    ADD_FAILURE() << "no record";
    return {};
  }
  return *(*read)[0];
}

std::string Us(TimestampMicros t) { return std::to_string(t); }

/// "[a,b,...]" (built by appending: GCC 12 warns falsely on chains of string +).
std::string Ints(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  out += ']';
  return out;
}

TEST(OnlineWriterTest, EveryTypeAcrossMisalignedChunks) {
  // Three rows, chunked differently per column: the reader realigns them.
  auto table = MakeTable({
      {"user_id", Column(arrow::utf8(), {R"(["a", "b"])", R"(["c"])"})},
      {"event_timestamp", Column(arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"),
                                 {"[" + Us(kT0) + "]", "[" + Us(kT0 + 1) + ", " + Us(-5) + "]"})},
      {"created_timestamp", Column(arrow::int64(), {"[1, null, 3]"})},
      {"i", Column(arrow::int64(), {"[1]", "[null]", "[-9223372036854775808]"})},
      {"i32", Column(arrow::int32(), {"[7, 8, 9]"})},
      {"f", Column(arrow::float64(), {"[1.5, null, -0.25]"})},
      {"f32", Column(arrow::float32(), {"[0.5, 1, 2]"})},
      {"s", Column(arrow::utf8(), {R"(["x", "", null])"})},
      {"ls", Column(arrow::large_utf8(), {R"(["日本", "y", "z"])"})},
      {"b", Column(arrow::boolean(), {"[true, false, null]"})},
      {"ts_ms", Column(arrow::timestamp(arrow::TimeUnit::MILLI), {"[1, -1, null]"})},
      {"ts_ns", Column(arrow::timestamp(arrow::TimeUnit::NANO), {"[1999, -1, 0]"})},
      {"li", Column(arrow::list(arrow::int64()), {"[[1, null, 3], [], null]"})},
      {"lf", Column(arrow::large_list(arrow::float64()), {"[[0.5]]", "[null, [1, 2]]"})},
      {"lss", Column(arrow::list(arrow::utf8()), {R"([["a", null], ["b"], []])"})},
      {"lb", Column(arrow::list(arrow::boolean()), {"[[true], [false, null], null]"})},
      {"lt", Column(arrow::list(arrow::timestamp(arrow::TimeUnit::SECOND)), {"[[1], [], [-1]]"})},
  });
  ASSERT_OK(table->ValidateFull());
  std::vector<std::string> features = {"i", "i32", "f", "f32", "s", "ls", "b", "ts_ms", "ts_ns",
                                       "li", "lf", "lss", "lb", "lt"};
  RecordingStore store;
  ASSERT_OK_AND_ASSIGN(auto result, WriteLatestRows(&store, "fs", {"user_id"}, features, *table));
  EXPECT_EQ(result, (WriteResult{3, 0}));
  using V = FeatureValue;
  auto L = [](std::vector<FeatureValue> items) { return V(ListValue{std::move(items)}); };
  OnlineRecord a{kT0, 1, {{"i", int64_t{1}}, {"i32", int64_t{7}}, {"f", 1.5}, {"f32", 0.5},
                          {"s", std::string("x")}, {"ls", std::string("日本")}, {"b", true},
                          {"ts_ms", TimestampValue{1000}}, {"ts_ns", TimestampValue{1}},
                          {"li", L({int64_t{1}, std::monostate{}, int64_t{3}})}, {"lf", L({0.5})},
                          {"lss", L({std::string("a"), std::monostate{}})}, {"lb", L({true})},
                          {"lt", L({TimestampValue{kMicrosPerSecond}})}}};
  OnlineRecord b{kT0 + 1, 0, {{"i", std::monostate{}}, {"i32", int64_t{8}}, {"f", std::monostate{}},
                              {"f32", 1.0}, {"s", std::string()}, {"ls", std::string("y")}, {"b", false},
                              {"ts_ms", TimestampValue{-1000}}, {"ts_ns", TimestampValue{-1}},
                              {"li", L({})}, {"lf", std::monostate{}}, {"lss", L({std::string("b")})},
                              {"lb", L({false, std::monostate{}})}, {"lt", L({})}}};
  OnlineRecord c{-5, 3, {{"i", std::numeric_limits<int64_t>::min()}, {"i32", int64_t{9}}, {"f", -0.25},
                         {"f32", 2.0}, {"s", std::monostate{}}, {"ls", std::string("z")},
                         {"b", std::monostate{}}, {"ts_ms", std::monostate{}}, {"ts_ns", TimestampValue{0}},
                         {"li", std::monostate{}}, {"lf", L({1.0, 2.0})}, {"lss", L({})},
                         {"lb", std::monostate{}}, {"lt", L({TimestampValue{-kMicrosPerSecond}})}}};
  EXPECT_TRUE(Get(&store, {std::string("a")}) == a);
  EXPECT_TRUE(Get(&store, {std::string("b")}) == b);
  EXPECT_TRUE(Get(&store, {std::string("c")}) == c);
}

TEST(OnlineWriterTest, OnlyTheNewestRowPerKeyIsWritten) {
  auto table = MakeTable({
      {"user_id", Column(arrow::int64(), {"[1, 2, 1, 1, 2, 1]"})},
      {"region", Column(arrow::utf8(), {R"(["eu", "eu", "eu", "us", "eu", "eu"])"})},
      {"event_timestamp", Column(arrow::int64(), {"[10, 5, 30, 1, 5, 30]"})},
      {"created_timestamp", Column(arrow::int64(), {"[0, 2, 0, 0, 1, 0]"})},
      {"v", Column(arrow::int64(), {"[100, 200, 300, 400, 500, 600]"})},
  });
  RecordingStore store;
  ASSERT_OK_AND_ASSIGN(auto result,
                       WriteLatestRows(&store, "fs", {"user_id", "region"}, {"v"}, *table));
  EXPECT_EQ(result, (WriteResult{3, 3}));
  // (1, eu): event 30 twice, full tie: the later row. (2, eu): the greater created time.
  EXPECT_TRUE(Get(&store, {int64_t{1}, std::string("eu")}) == (OnlineRecord{30, 0, {{"v", int64_t{600}}}}));
  EXPECT_TRUE(Get(&store, {int64_t{2}, std::string("eu")}) == (OnlineRecord{5, 2, {{"v", int64_t{200}}}}));
  EXPECT_TRUE(Get(&store, {int64_t{1}, std::string("us")}) == (OnlineRecord{1, 0, {{"v", int64_t{400}}}}));
}

TEST(OnlineWriterTest, WritesInBatchesAndWithoutCreatedColumn) {
  std::string ids = "[", times = "[";
  for (int i = 0; i < 25; ++i) {
    if (i > 0) ids += ',', times += ',';
    ids += std::to_string(i);
    times += std::to_string(kT0 + i);
  }
  auto table = MakeTable({{"id", Column(arrow::int32(), {ids + "]"})},
                          {"event_timestamp", Column(arrow::timestamp(arrow::TimeUnit::MICRO), {times + "]"})}});
  RecordingStore store;
  ASSERT_OK_AND_ASSIGN(auto result, WriteLatestRows(&store, "fs", {"id"}, {}, *table, 10));
  EXPECT_EQ(result, (WriteResult{25, 0}));
  EXPECT_EQ(store.calls, (std::vector<size_t>{10, 10, 5}));
  EXPECT_TRUE(Get(&store, {int64_t{24}}) == (OnlineRecord{kT0 + 24, 0, {}}));
}

TEST(OnlineWriterTest, ReRunsOfOlderRowsAreIgnoredByTheStore) {
  auto dir = fs::temp_directory_path() / ("fstore-online-writer-" + NewUuid());
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir.string()));
  auto table = [](TimestampMicros t, int64_t v) {
    return MakeTable({{"id", Column(arrow::utf8(), {R"(["a", "b"])"})},
                      {"event_timestamp", Column(arrow::int64(), {Ints({t, t})})},
                      {"v", Column(arrow::int64(), {Ints({v, 0})})}});
  };
  ASSERT_OK_AND_ASSIGN(auto first, WriteLatestRows(store.get(), "fs", {"id"}, {"v"}, *table(kT0, 1)));
  EXPECT_EQ(first, (WriteResult{2, 0}));
  ASSERT_OK_AND_ASSIGN(auto older, WriteLatestRows(store.get(), "fs", {"id"}, {"v"}, *table(kT0 - 1, 2)));
  EXPECT_EQ(older, (WriteResult{0, 2}));
  EXPECT_TRUE(Get(store.get(), {std::string("a")}) == (OnlineRecord{kT0, 0, {{"v", int64_t{1}}}}));
  ASSERT_OK(store->Close());
  fs::remove_all(dir);
}

TEST(OnlineWriterTest, BadColumnsAreInvalidArgumentsAndWriteNothing) {
  auto base = [] {
    return std::vector<std::pair<std::string, std::shared_ptr<arrow::ChunkedArray>>>{
        {"id", Column(arrow::utf8(), {R"(["a", "b"])"})},
        {"event_timestamp", Column(arrow::int64(), {"[1, 2]"})},
        {"v", Column(arrow::int64(), {"[1, 2]"})}};
  };
  auto expect_error = [](const std::shared_ptr<arrow::Table>& table, const std::vector<std::string>& keys,
                         const std::vector<std::string>& features, const std::string& field) {
    RecordingStore store;
    auto result = WriteLatestRows(&store, "fs", keys, features, *table);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(ErrorCodeOf(result.status()), ErrorCode::kInvalidArgument) << result.status().ToString();
    const ErrorDetail* detail = ErrorOf(result.status());
    ASSERT_NE(detail, nullptr);
    EXPECT_EQ(detail->field(), field) << result.status().ToString();
    EXPECT_TRUE(store.calls.empty());
  };
  expect_error(MakeTable(base()), {"missing"}, {"v"}, "missing");
  expect_error(MakeTable(base()), {"id"}, {"nope"}, "nope");
  expect_error(MakeTable(base()), {}, {"v"}, "key_columns");
  auto cols = base();
  cols[0].second = Column(arrow::float64(), {"[1, 2]"});
  expect_error(MakeTable(cols), {"id"}, {"v"}, "id");  // float key
  cols = base();
  cols[0].second = Column(arrow::utf8(), {R"(["a", null])"});
  expect_error(MakeTable(cols), {"id"}, {"v"}, "id");  // null key
  cols = base();
  cols[1].second = Column(arrow::int64(), {"[1, null]"});
  expect_error(MakeTable(cols), {"id"}, {"v"}, "event_timestamp");  // null event time
  cols = base();
  cols[1].second = Column(arrow::utf8(), {R"(["x", "y"])"});
  expect_error(MakeTable(cols), {"id"}, {"v"}, "event_timestamp");  // wrong type
  cols = base();
  cols.erase(cols.begin() + 1);
  expect_error(MakeTable(cols), {"id"}, {"v"}, "event_timestamp");  // missing
  cols = base();
  cols[2].second = Column(arrow::list(arrow::list(arrow::int64())), {"[[[1]], null]"});
  expect_error(MakeTable(cols), {"id"}, {"v"}, "v");  // nested lists
  cols = base();
  cols.emplace_back("v", Column(arrow::int64(), {"[1, 2]"}));
  expect_error(MakeTable(cols), {"id"}, {"v"}, "v");  // ambiguous
}

TEST(OnlineWriterTest, EmptyTableWritesNothing) {
  auto table = MakeTable({{"id", Column(arrow::utf8(), {"[]"})},
                          {"event_timestamp", Column(arrow::int64(), {"[]"})}});
  RecordingStore store;
  ASSERT_OK_AND_ASSIGN(auto result, WriteLatestRows(&store, "fs", {"id"}, {}, *table));
  EXPECT_EQ(result, (WriteResult{0, 0}));
  EXPECT_TRUE(store.calls.empty());
}

/// Prints rows/s into RocksDB (never asserts on time: see bench/ and
/// online_writer_benchmark.cc for the measurement that counts).
TEST(OnlineWriterTest, PrintsThroughputIntoRocksDb) {
  constexpr int64_t kRows = 200'000;
  arrow::Int64Builder ids, times, ints[5];
  arrow::DoubleBuilder floats[5];
  for (int64_t i = 0; i < kRows; ++i) {
    ASSERT_OK(ids.Append(i));
    ASSERT_OK(times.Append(kT0 + i));
    for (int f = 0; f < 5; ++f) {
      ASSERT_OK(ints[f].Append(i * f));
      ASSERT_OK(floats[f].Append(i * 0.5 + f));
    }
  }
  std::vector<std::pair<std::string, std::shared_ptr<arrow::ChunkedArray>>> columns;
  std::vector<std::string> features;
  auto add = [&](const std::string& name, arrow::ArrayBuilder& builder) {
    std::shared_ptr<arrow::Array> array;
    ASSERT_OK(builder.Finish(&array));
    columns.emplace_back(name, std::make_shared<arrow::ChunkedArray>(array));
  };
  add("id", ids);
  add("event_timestamp", times);
  for (int f = 0; f < 5; ++f) {
    add("int_" + std::to_string(f), ints[f]);
    add("float_" + std::to_string(f), floats[f]);
    features.push_back("int_" + std::to_string(f));
    features.push_back("float_" + std::to_string(f));
  }
  auto table = MakeTable(columns);
  auto dir = fs::temp_directory_path() / ("fstore-online-writer-" + NewUuid());
  ASSERT_OK_AND_ASSIGN(auto store, RocksDbOnlineStore::Open(dir.string()));
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(auto result, WriteLatestRows(store.get(), "fs", {"id"}, features, *table));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result, (WriteResult{kRows, 0}));
  std::printf("[ info     ] WriteLatestRows: %lld rows x 10 features into RocksDB: %.0f rows/s\n",
              static_cast<long long>(kRows), kRows / seconds);
  ASSERT_OK(store->Close());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fstore
