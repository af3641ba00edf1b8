#include "fstore/service/batch_serving.h"

#include <unistd.h>

#include <filesystem>

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>

#include "fstore/service/feature_store.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

const auto kUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

TimestampMicros T(const char* text) { return *ParseTimestamp(text); }

// user_id, event_timestamp, and `value_column`: 1.0, 2.0, ...
Status WriteParquet(const fs::path& path, const std::vector<std::string>& users,
                    const std::vector<TimestampMicros>& times,
                    const std::string& value_column = "label") {
  arrow::StringBuilder u;
  arrow::TimestampBuilder t(kUtc, arrow::default_memory_pool());
  arrow::DoubleBuilder a;
  ARROW_RETURN_NOT_OK(u.AppendValues(users));
  ARROW_RETURN_NOT_OK(t.AppendValues(times));
  for (size_t i = 0; i < users.size(); ++i) ARROW_RETURN_NOT_OK(a.Append(1.0 + i));
  ARROW_ASSIGN_OR_RAISE(auto ua, u.Finish());
  ARROW_ASSIGN_OR_RAISE(auto ta, t.Finish());
  ARROW_ASSIGN_OR_RAISE(auto aa, a.Finish());
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("user_id", arrow::utf8()), arrow::field("event_timestamp", kUtc),
                     arrow::field(value_column, arrow::float64())}),
      {ua, ta, aa});
  ARROW_ASSIGN_OR_RAISE(auto out, arrow::io::FileOutputStream::Open(path.string()));
  return parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 2);
}

Result<std::shared_ptr<arrow::Table>> ReadParquet(const fs::path& path) {
  ARROW_ASSIGN_OR_RAISE(auto in, arrow::io::ReadableFile::Open(path.string()));
  ARROW_ASSIGN_OR_RAISE(auto reader, parquet::arrow::OpenFile(in, arrow::default_memory_pool()));
  return reader->ReadTable();
}

class BatchServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("fstore_batch_serving_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
    FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir_ / "registry.db").string();
    options.offline_store_uri = "file://" + (dir_ / "offline").string();
    options.online_store_uri = "rocksdb://" + (dir_ / "online").string();
    ASSERT_OK_AND_ASSIGN(store_, FeatureStore::Open(options));
    // Events of u1: amount 1.0 on Jan 1st, 2.0 on Jan 2nd.
    ASSERT_OK(WriteParquet(dir_ / "events.parquet", {"u1", "u1"},
                           {T("2024-01-01T00:00:00Z"), T("2024-01-02T00:00:00Z")}, "amount"));
    ASSERT_OK(store_
                  ->CreateFeatureSet(json::parse(
                      R"({"name": "s", "entities": ["user"], "source": {"type": "file", "path": ")" +
                      (dir_ / "events.parquet").string() + R"(", "format": "parquet"}})"))
                  .status());
    ASSERT_OK(store_
                  ->CreateFeature(json::parse(
                      R"({"name": "amount", "feature_set_id": "s", "data_type": "float",
                          "default_value": -1.0})"))
                  .status());
    MaterializeOptions m;
    m.start = T("2024-01-01T00:00:00Z");
    m.end = T("2024-01-03T00:00:00Z");
    ASSERT_OK_AND_ASSIGN(auto job, store_->MaterializeNow("s", m));
    ASSERT_EQ(job.status, JobStatus::kSucceeded) << job.error;
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  json::value Body(const std::string& entities, const std::string& output,
                   const std::string& extra = "") {
    return json::parse(R"({"feature_sets": ["s"], "features": ["amount"],
                           "entity_source": {"path": ")" + entities + R"("},
                           "output": {"path": ")" + output + R"("})" + extra + "}");
  }

  std::vector<std::string> TempFiles() {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.path().extension() == ".tmp") out.push_back(e.path().string());
    }
    return out;
  }

  fs::path dir_;
  std::unique_ptr<FeatureStore> store_;
};

TEST_F(BatchServingTest, JoinsEachBatchAndRenamesTheOutput) {
  ASSERT_OK(WriteParquet(dir_ / "entities.parquet", {"u1", "u1", "u1", "u2", "u1"},
                         {T("2023-12-31T00:00:00Z"), T("2024-01-01T12:00:00Z"),
                          T("2024-01-03T00:00:00Z"), T("2024-01-03T00:00:00Z"),
                          T("2024-01-01T00:00:00Z")}));
  std::string out = (dir_ / "out" / "train.parquet").string();
  ASSERT_OK_AND_ASSIGN(
      auto job, store_->batch_serving()->Submit(Body((dir_ / "entities.parquet").string(), out,
                                                     R"(, "batch_rows": 2, "wait": true)")));
  ASSERT_EQ(job.status, JobStatus::kSucceeded) << job.error.value_or("");
  EXPECT_EQ(job.rows_read, 5);
  EXPECT_EQ(job.rows_written, 5);
  EXPECT_EQ(job.batches, 3);
  EXPECT_EQ(job.output, out);
  ASSERT_OK_AND_ASSIGN(auto table, ReadParquet(out));
  ASSERT_EQ(table->num_columns(), 4);
  EXPECT_EQ(table->schema()->field(3)->name(), "amount");
  EXPECT_EQ(table->schema()->field(1)->type()->ToString(), kUtc->ToString());
  ASSERT_OK_AND_ASSIGN(auto combined, arrow::Concatenate(table->column(3)->chunks()));
  const auto& values = static_cast<const arrow::DoubleArray&>(*combined);
  // Entity rows: before any event, after the first, after the second, an
  // unknown user, exactly at the first event.
  std::vector<double> want{-1.0, 1.0, 2.0, -1.0, 1.0};
  ASSERT_EQ(values.length(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(values.Value(i), want[i]) << i;
  EXPECT_THAT(TempFiles(), ::testing::IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto again, store_->batch_serving()->GetJob(job.id));
  EXPECT_EQ(again.status, JobStatus::kSucceeded);
}

TEST_F(BatchServingTest, RefusesBeforeQueueingNamingTheField) {
  ASSERT_OK(WriteParquet(dir_ / "entities.parquet", {"u1"}, {T("2024-01-02T00:00:00Z")}));
  std::string entities = (dir_ / "entities.parquet").string();
  struct Case {
    json::value body;
    ErrorCode code;
    std::string field;
  } cases[] = {
      {json::parse("[]"), ErrorCode::kInvalidArgument, ""},
      {Body(entities + ".missing", (dir_ / "o.parquet").string()), ErrorCode::kInvalidArgument,
       "entity_source.path"},
      {Body(entities, "o.parquet"), ErrorCode::kInvalidArgument, "output.path"},
      {Body(entities, entities), ErrorCode::kConflict, "output.path"},
      {Body(entities, (dir_ / "o.parquet").string(), R"(, "batch_rows": -1)"),
       ErrorCode::kInvalidArgument, "batch_rows"},
  };
  for (const auto& c : cases) {
    auto r = store_->batch_serving()->Submit(c.body);
    ASSERT_FALSE(r.ok()) << json::serialize(c.body);
    EXPECT_EQ(ErrorCodeOf(r.status()), c.code) << r.status().ToString();
    const ErrorDetail* detail = ErrorOf(r.status());
    EXPECT_EQ(detail ? detail->field() : "", c.field) << r.status().ToString();
  }
  EXPECT_FALSE(fs::exists(dir_ / "o.parquet"));
  auto unknown = store_->batch_serving()->GetJob("nope");
  EXPECT_EQ(ErrorCodeOf(unknown.status()), ErrorCode::kNotFound);
}

TEST_F(BatchServingTest, ShutdownEndsEveryJobAndLeavesNoTemporaryFile) {
  std::vector<std::string> users(5000, "u1");
  std::vector<TimestampMicros> times(5000, T("2024-01-02T00:00:00Z"));
  ASSERT_OK(WriteParquet(dir_ / "entities.parquet", users, times));
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(
        auto job, store_->batch_serving()->Submit(
                      Body((dir_ / "entities.parquet").string(),
                           (dir_ / "out" / ("o" + std::to_string(i) + ".parquet")).string(),
                           R"(, "batch_rows": 10)")));
    ids.push_back(job.id);
  }
  store_->batch_serving()->Shutdown();
  for (const auto& id : ids) {
    ASSERT_OK_AND_ASSIGN(auto job, store_->batch_serving()->GetJob(id));
    EXPECT_TRUE(job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed);
    if (job.status == JobStatus::kFailed) {
      EXPECT_THAT(job.error.value_or(""), HasSubstr("shut down"));
      EXPECT_FALSE(fs::exists(job.output)) << job.output;
    }
  }
  EXPECT_THAT(TempFiles(), ::testing::IsEmpty());
  auto refused = store_->batch_serving()->Submit(
      Body((dir_ / "entities.parquet").string(), (dir_ / "out" / "late.parquet").string()));
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace fstore
