// FeatureStore with its offline store on S3 (scripts/test-s3.sh's server):
// materialization writes there, historical retrieval and batch serving read
// from there, batch serving reads entities from and writes output to s3://
// paths, /ready follows S3. Skipped when FSTORE_TEST_S3_ENDPOINT is unset.

#include <unistd.h>

#include <filesystem>

#include <arrow/api.h>
#include <arrow/filesystem/api.h>
#include <arrow/io/file.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>

#include "fstore/offline/s3_filesystem.h"
#include "fstore/offline/s3_test_env.h"
#include "fstore/service/feature_store.h"
#include "fstore/service/historical_serving.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const auto kUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

TimestampMicros T(const char* text) { return *ParseTimestamp(text); }

// user_id, event_timestamp, and `value_column`: 1.0, 2.0, ...
Result<std::shared_ptr<arrow::Table>> Events(const std::vector<std::string>& users,
                                             const std::vector<TimestampMicros>& times,
                                             const std::string& value_column) {
  arrow::StringBuilder u;
  arrow::TimestampBuilder t(kUtc, arrow::default_memory_pool());
  arrow::DoubleBuilder a;
  ARROW_RETURN_NOT_OK(u.AppendValues(users));
  ARROW_RETURN_NOT_OK(t.AppendValues(times));
  for (size_t i = 0; i < users.size(); ++i) ARROW_RETURN_NOT_OK(a.Append(1.0 + i));
  ARROW_ASSIGN_OR_RAISE(auto ua, u.Finish());
  ARROW_ASSIGN_OR_RAISE(auto ta, t.Finish());
  ARROW_ASSIGN_OR_RAISE(auto aa, a.Finish());
  return arrow::Table::Make(
      arrow::schema({arrow::field("user_id", arrow::utf8()), arrow::field("event_timestamp", kUtc),
                     arrow::field(value_column, arrow::float64())}),
      {ua, ta, aa});
}

Status WriteParquet(arrow::fs::FileSystem& fs, const std::string& path,
                    const std::shared_ptr<arrow::Table>& table) {
  ARROW_ASSIGN_OR_RAISE(auto out, fs.OpenOutputStream(path));
  ARROW_RETURN_NOT_OK(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 2));
  return out->Close();
}

Result<std::shared_ptr<arrow::Table>> ReadParquet(arrow::fs::FileSystem& fs,
                                                  const std::string& path) {
  ARROW_ASSIGN_OR_RAISE(auto in, fs.OpenInputFile(path));
  ARROW_ASSIGN_OR_RAISE(auto reader, parquet::arrow::OpenFile(in, arrow::default_memory_pool()));
  return reader->ReadTable();
}

std::vector<double> Doubles(const std::shared_ptr<arrow::ChunkedArray>& column) {
  std::vector<double> out;
  for (const auto& chunk : column->chunks()) {
    const auto& values = static_cast<const arrow::DoubleArray&>(*chunk);
    for (int64_t i = 0; i < values.length(); ++i) out.push_back(values.Value(i));
  }
  return out;
}

class S3FeatureStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto options = S3TestOptions();
    if (!options) GTEST_SKIP() << "FSTORE_TEST_S3_ENDPOINT is not set (scripts/test-s3.sh start)";
    s3_options_ = *options;
    bucket_ = UniqueTestBucket("service");
    dir_ = fs::temp_directory_path() /
           ("fstore_s3_feature_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_OK_AND_ASSIGN(s3_, MakeS3FileSystem(s3_options_));
    // Events of u1: amount 1.0 on Jan 1st, 2.0 on Jan 2nd, 3.0 on Jan 3rd.
    ASSERT_OK_AND_ASSIGN(auto events,
                         Events({"u1", "u1", "u1"},
                                {T("2024-01-01T00:00:00Z"), T("2024-01-02T00:00:00Z"),
                                 T("2024-01-03T00:00:00Z")},
                                "amount"));
    ASSERT_OK_AND_ASSIGN(auto out,
                         arrow::io::FileOutputStream::Open((dir_ / "events.parquet").string()));
    ASSERT_OK(parquet::arrow::WriteTable(*events, arrow::default_memory_pool(), out, 2));
    ASSERT_OK(out->Close());
  }

  void TearDown() override {
    store_.reset();
    if (s3_ != nullptr) (void)s3_->DeleteDirContents(bucket_, /*missing_dir_ok=*/true);
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Opens the store on s3://<bucket>/offline through `endpoint` (default:
  // the test server) and defines the feature set "s" with feature "amount".
  void OpenStore(const std::string& endpoint = "") {
    FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir_ / "registry.db").string();
    options.offline_store_uri = "s3://" + bucket_ + "/offline";
    options.online_store_uri = "rocksdb://" + (dir_ / "online").string();
    options.s3 = s3_options_;
    if (!endpoint.empty()) options.s3.endpoint = endpoint;
    ASSERT_OK_AND_ASSIGN(store_, FeatureStore::Open(options));
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
  }

  Result<MaterializationJob> Materialize() {
    MaterializeOptions m;
    m.start = T("2024-01-01T00:00:00Z");
    m.end = T("2024-01-04T00:00:00Z");
    return store_->MaterializeNow("s", m);
  }

  // Historical values of "amount" for u1 at each time.
  std::vector<double> Historical(const std::vector<std::string>& times) {
    json::array data;
    for (const auto& t : times) data.push_back(json::array{"u1", json::string(t)});
    json::object body{{"feature_sets", json::array{"s"}},
                      {"features", json::array{"amount"}},
                      {"entity_df", json::object{{"columns", json::array{"user_id",
                                                                         "event_timestamp"}},
                                                 {"data", data}}}};
    auto table = ServeHistorical(store_.get(), body);
    EXPECT_TRUE(table.ok()) << table.status().ToString();
    if (!table.ok()) return {};
    std::vector<double> out;
    const auto& values = static_cast<const arrow::DoubleArray&>(*(*table)->column(2));
    for (int64_t i = 0; i < values.length(); ++i) out.push_back(values.Value(i));
    return out;
  }

  // Files under s3://<bucket>/<prefix>, relative to the bucket.
  std::vector<std::string> Objects(const std::string& prefix) {
    arrow::fs::FileSelector selector;
    selector.base_dir = bucket_ + "/" + prefix;
    selector.recursive = true;
    selector.allow_not_found = true;
    std::vector<std::string> out;
    for (const auto& info : s3_->GetFileInfo(selector).ValueOrDie()) {
      if (info.IsFile()) out.push_back(info.path().substr(bucket_.size() + 1));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  S3ConnectionOptions s3_options_;
  std::string bucket_;
  fs::path dir_;
  std::shared_ptr<arrow::fs::FileSystem> s3_;
  std::unique_ptr<FeatureStore> store_;
};

TEST_F(S3FeatureStoreTest, MaterializesToS3AndRetrievesHistoricalValues) {
  OpenStore();
  ASSERT_OK(store_->CheckReady());
  ASSERT_OK_AND_ASSIGN(auto job, Materialize());
  ASSERT_EQ(job.status, JobStatus::kSucceeded) << job.error;
  // The layout, in the bucket (the offline store created it).
  auto objects = Objects("offline/s");
  ASSERT_EQ(objects.size(), 6u) << ::testing::PrintToString(objects);
  EXPECT_THAT(objects[0], HasSubstr("offline/s/v1/date=2024-01-01/"));
  EXPECT_EQ(Historical({"2023-12-31T00:00:00Z", "2024-01-01T12:00:00Z", "2024-01-02T00:00:00Z",
                        "2024-01-05T00:00:00Z"}),
            (std::vector<double>{-1.0, 1.0, 2.0, 3.0}));
}

TEST_F(S3FeatureStoreTest, BatchServingReadsEntitiesFromS3AndWritesOutputThere) {
  OpenStore();
  ASSERT_OK_AND_ASSIGN(auto job, Materialize());
  ASSERT_EQ(job.status, JobStatus::kSucceeded) << job.error;
  // Entities in two objects under a prefix (read in name order), plus one to skip.
  ASSERT_OK_AND_ASSIGN(auto first,
                       Events({"u1", "u2"}, {T("2023-12-31T00:00:00Z"), T("2024-01-02T00:00:00Z")},
                              "label"));
  ASSERT_OK_AND_ASSIGN(auto second, Events({"u1"}, {T("2024-01-02T12:00:00Z")}, "label"));
  ASSERT_OK(WriteParquet(*s3_, bucket_ + "/entities/a.parquet", first));
  ASSERT_OK(WriteParquet(*s3_, bucket_ + "/entities/b.parquet", second));
  ASSERT_OK(WriteParquet(*s3_, bucket_ + "/entities/_ignored.parquet", second));

  const std::string uri = "s3://" + bucket_;
  ASSERT_OK_AND_ASSIGN(
      auto batch,
      store_->batch_serving()->Submit(json::parse(
          R"({"feature_sets": ["s"], "features": ["amount"], "wait": true, "batch_rows": 1,
              "entity_source": {"path": ")" + uri + R"(/entities"},
              "output": {"path": ")" + uri + R"(/out/"}})")));
  ASSERT_EQ(batch.status, JobStatus::kSucceeded) << batch.error.value_or("");
  EXPECT_EQ(batch.rows_written, 3);
  EXPECT_EQ(batch.output, uri + "/out/" + batch.id + ".parquet");
  ASSERT_OK_AND_ASSIGN(auto table, ReadParquet(*s3_, bucket_ + "/out/" + batch.id + ".parquet"));
  ASSERT_EQ(table->num_columns(), 4);
  EXPECT_EQ(Doubles(table->GetColumnByName("amount")), (std::vector<double>{-1.0, -1.0, 2.0}));
  EXPECT_EQ(Objects("out"), (std::vector<std::string>{"out/" + batch.id + ".parquet"}));

  // A named output file; an existing one is a conflict without overwrite.
  auto body = [&](const std::string& output) {
    return json::parse(R"({"feature_sets": ["s"], "features": ["amount"], "wait": true,
                           "entity_source": {"path": ")" + uri + R"(/entities/b.parquet"},
                           "output": {"path": ")" + output + R"("}})");
  };
  ASSERT_OK_AND_ASSIGN(auto named, store_->batch_serving()->Submit(body(uri + "/out/train.parquet")));
  ASSERT_EQ(named.status, JobStatus::kSucceeded) << named.error.value_or("");
  auto again = store_->batch_serving()->Submit(body(uri + "/out/train.parquet"));
  EXPECT_EQ(ErrorCodeOf(again.status()), ErrorCode::kConflict) << again.status().ToString();
  // Refused before queueing, naming the field.
  auto missing = store_->batch_serving()->Submit(body("s3://" + UniqueTestBucket("nope") + "/o.parquet"));
  EXPECT_EQ(ErrorCodeOf(missing.status()), ErrorCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist"));
  auto no_source = store_->batch_serving()->Submit(json::parse(
      R"({"feature_sets": ["s"], "features": ["amount"],
          "entity_source": {"path": ")" + uri + R"(/nothing"},
          "output": {"path": ")" + uri + R"(/out/x.parquet"}})"));
  ASSERT_FALSE(no_source.ok());
  EXPECT_EQ(ErrorOf(no_source.status())->field(), "entity_source.path");
}

// S3 down: /ready says so within seconds, a materialization fails with an
// error naming the offline store and commits nothing (no watermark, no
// generation), and once S3 is back a re-run completes with every row once.
TEST_F(S3FeatureStoreTest, S3DownFailsReadyAndTheJobThenARerunCompletes) {
  auto proxy = TcpProxy::Start(s3_options_.endpoint);
  ASSERT_NE(proxy, nullptr);
  OpenStore(proxy->endpoint());
  ASSERT_OK(store_->CheckReady());

  proxy->Cut();
  Status ready = store_->CheckReady();
  EXPECT_EQ(ErrorCodeOf(ready), ErrorCode::kUnavailable) << ready.ToString();
  ASSERT_OK_AND_ASSIGN(auto failed, Materialize());
  EXPECT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_THAT(failed.error, HasSubstr("offline store"));
  EXPECT_THAT(Objects("offline"), IsEmpty());

  ASSERT_TRUE(proxy->Resume());
  ASSERT_OK(store_->CheckReady());
  ASSERT_OK_AND_ASSIGN(auto job, Materialize());
  ASSERT_EQ(job.status, JobStatus::kSucceeded) << job.error;
  ASSERT_OK_AND_ASSIGN(auto rows, store_->offline_store()->Read("s", kOfflineSchemaVersion,
                                                                T("2024-01-01T00:00:00Z"),
                                                                T("2024-01-04T00:00:00Z")));
  EXPECT_EQ(rows->num_rows(), 3);
  EXPECT_EQ(Historical({"2024-01-02T00:00:00Z", "2024-01-05T00:00:00Z"}),
            (std::vector<double>{2.0, 3.0}));
}

}  // namespace
}  // namespace fstore
