// The job machinery on real embedded stores: the scheduler's missed-slot rule,
// runs of one feature set never overlapping, a failed chunked run resumed
// by a retry where it stopped, and a feature set with a Python transformation.

#include "fstore/materialize/materialization_engine.h"

#include <unistd.h>

#include <atomic>
#include <map>
#include <filesystem>

#include <arrow/api.h>
#include <arrow/io/api.h>
#include <parquet/arrow/writer.h>

#include "fstore/core/ids.h"
#include "fstore/materialize/materialization_scheduler.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

constexpr TimestampMicros kJan1 = 1'704'067'200'000'000;  // 2024-01-01T00:00:00Z

class MaterializationEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("fstore_engine_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFromUri("sqlite://" + (dir_ / "registry.db").string()));
    ASSERT_OK(registry_->Migrate().status());
    ASSERT_OK_AND_ASSIGN(offline_, OfflineStore::Open("file://" + (dir_ / "offline").string()));
    ASSERT_OK_AND_ASSIGN(online_, OnlineStoreFromUri("rocksdb://" + (dir_ / "online").string()));
  }
  void TearDown() override {
    engine_.reset();
    online_.reset();
    offline_.reset();
    registry_.reset();
    fs::remove_all(dir_);
  }

  // Events of users u0..u2, one per hour over `days` days; amount = 10 x the
  // day's index + hour % 5 (day 0: 0..4, day 1: 10..14, ...).
  void WriteSource(int days) {
    arrow::StringBuilder users;
    arrow::TimestampBuilder times(arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"),
                                  arrow::default_memory_pool());
    arrow::DoubleBuilder amounts;
    for (int h = 0; h < days * 24; ++h) {
      ASSERT_OK(users.Append("u" + std::to_string(h % 3)));
      ASSERT_OK(times.Append(kJan1 + h * kMicrosPerHour));
      ASSERT_OK(amounts.Append((h / 24) * 10 + h % 5));
    }
    std::shared_ptr<arrow::Array> u, t, a;
    ASSERT_OK(users.Finish(&u));
    ASSERT_OK(times.Finish(&t));
    ASSERT_OK(amounts.Finish(&a));
    auto table = arrow::Table::Make(
        arrow::schema({arrow::field("user_id", arrow::utf8()), arrow::field("event_timestamp", t->type()),
                       arrow::field("amount", arrow::float64())}),
        {u, t, a});
    ASSERT_OK_AND_ASSIGN(auto out, arrow::io::FileOutputStream::Open((dir_ / "events.parquet").string()));
    ASSERT_OK(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 1000));
    ASSERT_OK(out->Close());
  }

  // A feature set "txn" over the source with one feature `amount`, whose
  // max_value rule is given.
  FeatureSet Define(const std::string& schedule, double max_value, TimestampMicros created_at) {
    Entity user;
    user.id = NewUuid();
    user.name = "user";
    user.join_keys = {"user_id"};
    FeatureSet set;
    set.id = NewUuid();
    set.name = "txn";
    set.entities = {"user"};
    set.source = SourceDefinition{"file", (dir_ / "events.parquet").string(), "parquet", "", "", ""};
    set.materialization_schedule = schedule;
    set.created_at = set.updated_at = created_at;
    Feature amount;
    amount.id = NewUuid();
    amount.name = "amount";
    amount.feature_set_id = set.id;
    amount.data_type = "float";
    amount.validation_rules.max_value = max_value;
    RegistryWrite write;
    write.new_entities = {user};
    write.feature_sets = {{set, 0}};
    write.features = {{amount, 0}};
    EXPECT_OK(registry_->Commit(write));
    amount_ = amount;
    return set;
  }

  void StartEngine(int threads, std::function<TimestampMicros()> now = NowMicros) {
    engine_ = std::make_unique<MaterializationEngine>(registry_.get(), offline_.get(),
                                                      online_.get(), threads, std::move(now));
  }

  fs::path dir_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<OfflineStore> offline_;
  std::unique_ptr<OnlineStore> online_;
  std::unique_ptr<MaterializationEngine> engine_;
  Feature amount_;
};

TEST_F(MaterializationEngineTest, MissedSlotsRunOnceNotOncePerSlot) {
  WriteSource(2);
  FeatureSet set = Define("0 * * * *", 1000, kJan1);  // hourly
  std::atomic<TimestampMicros> now{kJan1 + 3 * kMicrosPerHour + 5 * kMicrosPerMinute};
  StartEngine(1, [&] { return now.load(); });
  MaterializationScheduler scheduler(registry_.get(), engine_.get(), [&] { return now.load(); },
                                     /*start_thread=*/false);
  // Slots 01:00, 02:00 and 03:00 have passed since creation: one run.
  ASSERT_OK_AND_ASSIGN(int submitted, scheduler.Tick());
  EXPECT_EQ(submitted, 1);
  ASSERT_OK_AND_ASSIGN(auto slot, registry_->LastScheduledSlot(set.id));
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(*slot, kJan1 + 3 * kMicrosPerHour);
  ASSERT_OK_AND_ASSIGN(submitted, scheduler.Tick());
  EXPECT_EQ(submitted, 0);  // nothing new
  // A "restart" after 5 more hours: still one run.
  now = now.load() + 5 * kMicrosPerHour;
  MaterializationScheduler restarted(registry_.get(), engine_.get(), [&] { return now.load(); },
                                     /*start_thread=*/false);
  ASSERT_OK_AND_ASSIGN(submitted, restarted.Tick());
  EXPECT_EQ(submitted, 1);
  ASSERT_OK_AND_ASSIGN(auto jobs, registry_->ListJobs(set.id, 10));
  ASSERT_EQ(jobs.size(), 2u);
  for (const auto& job : jobs) {
    EXPECT_EQ(job.trigger, "schedule");
    EXPECT_TRUE(job.incremental);
  }
  ASSERT_OK_AND_ASSIGN(auto done, engine_->Wait(jobs[0].id, std::chrono::seconds(60)));
  EXPECT_EQ(JobStatusName(done.status), "succeeded") << done.error;
}

TEST_F(MaterializationEngineTest, RunsOfOneFeatureSetNeverOverlap) {
  WriteSource(3);
  Define("", 1000, kJan1);
  StartEngine(2);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    MaterializationRequest request{"txn", kJan1, kJan1 + 3 * kMicrosPerDay, "api"};
    ASSERT_OK_AND_ASSIGN(auto job, engine_->Submit(request));
    ids.push_back(job.id);
  }
  std::vector<std::pair<TimestampMicros, TimestampMicros>> spans;
  for (const auto& id : ids) {
    ASSERT_OK_AND_ASSIGN(auto job, engine_->Wait(id, std::chrono::seconds(60)));
    ASSERT_EQ(JobStatusName(job.status), "succeeded") << job.error;
    spans.emplace_back(*job.started_at, *job.finished_at);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    EXPECT_LE(spans[i - 1].second, spans[i].first) << "runs " << i - 1 << " and " << i << " overlap";
  }
}

TEST_F(MaterializationEngineTest, AFailedChunkedRunResumesWhereItStopped) {
  WriteSource(3);
  // max_value 5: day 0 (amounts 0..4) passes, day 1 (10..14) fails.
  FeatureSet set = Define("", 5, kJan1);
  StartEngine(1);
  MaterializationRequest request{"txn", kJan1, kJan1 + 3 * kMicrosPerDay, "api"};
  ASSERT_OK_AND_ASSIGN(auto job, engine_->Submit(request));
  ASSERT_OK_AND_ASSIGN(job, engine_->Wait(job.id, std::chrono::seconds(60)));
  ASSERT_EQ(JobStatusName(job.status), "failed");
  EXPECT_EQ(job.completed_until, kJan1 + kMicrosPerDay);  // day 0 is durable, day 1 not
  EXPECT_GT(job.quality_report.at("amount").as_object().at("max_value").as_object().at("count").to_number<int64_t>(), 0);
  ASSERT_OK_AND_ASSIGN(auto watermark, registry_->Watermark(set.id));
  EXPECT_FALSE(watermark.has_value());

  // Relax the rule and retry: the job resumes and succeeds.
  Feature relaxed = amount_;
  relaxed.validation_rules.max_value = 100;
  relaxed.version = amount_.version + 1;
  RegistryWrite write;
  write.features = {{relaxed, amount_.version}};
  ASSERT_OK(registry_->Commit(write));
  ASSERT_OK_AND_ASSIGN(auto day0_before, offline_->Read("txn", 1, kJan1, kJan1 + kMicrosPerDay));
  int64_t rows_before = job.rows_read;
  ASSERT_OK(engine_->Retry(job.id).status());
  ASSERT_OK_AND_ASSIGN(job, engine_->Wait(job.id, std::chrono::seconds(60)));
  ASSERT_EQ(JobStatusName(job.status), "succeeded") << job.error;
  // The retry read days 1 and 2 only.
  EXPECT_EQ(job.rows_read - rows_before, 48);
  ASSERT_OK_AND_ASSIGN(auto day0_after, offline_->Read("txn", 1, kJan1, kJan1 + kMicrosPerDay));
  EXPECT_TRUE(day0_after->Equals(*day0_before));
  EXPECT_EQ(job.completed_until, kJan1 + 3 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(watermark, registry_->Watermark(set.id));
  EXPECT_EQ(watermark, kJan1 + 3 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto rows, offline_->Read("txn", 1, kJan1, kJan1 + 3 * kMicrosPerDay));
  EXPECT_EQ(rows->num_rows(), 3 * 24);
  ASSERT_OK_AND_ASSIGN(auto partitions, offline_->Partitions("txn", 1));
  EXPECT_EQ(partitions.size(), 3u);
  // A succeeded job cannot be retried.
  EXPECT_EQ(ErrorCodeOf(engine_->Retry(job.id).status()), ErrorCode::kConflict);
}

TEST_F(MaterializationEngineTest, ChunksRecordProgressAndOnlineGetsTheLatestRows) {
  WriteSource(3);
  FeatureSet set = Define("", 1000, kJan1);
  StartEngine(1);
  ASSERT_OK_AND_ASSIGN(auto job, engine_->RunNow({"txn", kJan1, kJan1 + 3 * kMicrosPerDay, "cli"}));
  ASSERT_EQ(JobStatusName(job.status), "succeeded") << job.error;
  EXPECT_EQ(job.rows_read, 72);
  EXPECT_EQ(job.rows_written_offline, 72);
  ASSERT_OK_AND_ASSIGN(auto records,
                       online_->Read("txn", {EntityKey{std::string("u0")}, EntityKey{std::string("u2")},
                                             EntityKey{std::string("nobody")}},
                                     0, NowMicros()));
  ASSERT_TRUE(records[0].has_value());
  ASSERT_TRUE(records[1].has_value());
  EXPECT_FALSE(records[2].has_value());
  // Last events: hour 69 (u0), hour 71 (u2).
  EXPECT_EQ(records[0]->event_time, kJan1 + 69 * kMicrosPerHour);
  EXPECT_EQ(records[1]->event_time, kJan1 + 71 * kMicrosPerHour);
  EXPECT_EQ(std::get<double>(records[1]->values.at(0).second), 21.0);  // day 2, 71 % 5
}

// A Python step before the SQL features: its output columns are read by a
// plain feature, an expression and a window; a source column it does not
// return stays readable (the rows are kept).
TEST_F(MaterializationEngineTest, PythonTransformedFeatureSet) {
  WriteSource(3);
  FeatureSet set = Define("", 1000, kJan1);
  PythonTransformationDefinition python;
  python.code =
      "import pyarrow as pa\n"
      "import pyarrow.compute as pc\n"
      "def transform(batch):\n"
      "    amount = batch.column('amount')\n"
      "    return pa.RecordBatch.from_arrays(\n"
      "        [pc.multiply(amount, 3), pc.if_else(pc.greater(amount, 20), 'high', 'low')],\n"
      "        names=['amount_x3', 'bucket'])\n";
  python.output_columns = {{"amount_x3", "float"}, {"bucket", "string"}};
  set.python_transformation = python;
  set.version = 2;
  auto feature = [&](std::string name, std::string type, std::string sql, std::string window) {
    Feature f;
    f.id = NewUuid();
    f.name = std::move(name);
    f.feature_set_id = set.id;
    f.data_type = std::move(type);
    f.transformation = std::move(sql);
    f.window_size = std::move(window);
    return VersionedPut<Feature>{f, 0};
  };
  RegistryWrite write;
  write.feature_sets = {{set, 1}};
  write.features = {feature("amount_x3", "float", "", ""), feature("bucket", "string", "", ""),
                    feature("x3_plus_one", "float", "amount_x3 + 1", ""),
                    feature("x3_6h", "float", "SUM(amount_x3)", "6h")};
  ASSERT_OK(registry_->Commit(write));
  StartEngine(1);
  ASSERT_OK_AND_ASSIGN(auto job, engine_->RunNow({"txn", kJan1, kJan1 + 3 * kMicrosPerDay, "cli"}));
  ASSERT_EQ(JobStatusName(job.status), "succeeded") << job.error;
  EXPECT_EQ(job.rows_written_offline, 72);

  auto amount_at = [](int64_t h) { return static_cast<double>((h / 24) * 10 + h % 5); };
  ASSERT_OK_AND_ASSIGN(auto rows, offline_->Read("txn", 1, kJan1, kJan1 + 3 * kMicrosPerDay));
  ASSERT_EQ(rows->num_rows(), 72);
  ASSERT_OK_AND_ASSIGN(auto batch, rows->CombineChunksToBatch());
  auto users = std::static_pointer_cast<arrow::StringArray>(batch->GetColumnByName("user_id"));
  auto times = std::static_pointer_cast<arrow::TimestampArray>(batch->GetColumnByName("event_timestamp"));
  auto x3 = std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("amount_x3"));
  auto bucket = std::static_pointer_cast<arrow::StringArray>(batch->GetColumnByName("bucket"));
  auto plus_one = std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("x3_plus_one"));
  auto window = std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("x3_6h"));
  auto amount = std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("amount"));
  ASSERT_TRUE(users && times && x3 && bucket && plus_one && window && amount);
  for (int64_t i = 0; i < batch->num_rows(); ++i) {
    int64_t h = (times->Value(i) - kJan1) / kMicrosPerHour;
    EXPECT_EQ(users->GetView(i), "u" + std::to_string(h % 3));
    EXPECT_DOUBLE_EQ(x3->Value(i), 3 * amount_at(h)) << h;
    EXPECT_EQ(bucket->GetView(i), amount_at(h) > 20 ? "high" : "low") << h;
    EXPECT_DOUBLE_EQ(plus_one->Value(i), 3 * amount_at(h) + 1) << h;
    EXPECT_DOUBLE_EQ(amount->Value(i), amount_at(h)) << h;
    // The user's events in [t - 6h, t]: hours h, h-3, h-6.
    double sum = 0;
    for (int64_t k = h; k >= 0 && k >= h - 6; k -= 3) sum += 3 * amount_at(k);
    EXPECT_DOUBLE_EQ(window->Value(i), sum) << h;
  }

  ASSERT_OK_AND_ASSIGN(auto records, online_->Read("txn", {EntityKey{std::string("u2")}}, 0, NowMicros()));
  ASSERT_TRUE(records[0].has_value());
  EXPECT_EQ(records[0]->event_time, kJan1 + 71 * kMicrosPerHour);
  std::map<std::string, FeatureValue> values(records[0]->values.begin(), records[0]->values.end());
  EXPECT_DOUBLE_EQ(std::get<double>(values.at("amount_x3")), 3 * amount_at(71));
  EXPECT_EQ(std::get<std::string>(values.at("bucket")), "high");
  // At the run's end (hour 72) the 6h window holds u2's hours 68 and 71.
  EXPECT_DOUBLE_EQ(std::get<double>(values.at("x3_6h")), 3 * (amount_at(68) + amount_at(71)));
}

// A function that raises fails the job with its traceback in the error.
TEST_F(MaterializationEngineTest, PythonExceptionFailsTheJobWithItsTraceback) {
  WriteSource(1);
  FeatureSet set = Define("", 1000, kJan1);
  PythonTransformationDefinition python;
  python.code = "def transform(batch):\n    raise KeyError('no such thing')\n";
  python.output_columns = {{"amount", "float"}};
  set.python_transformation = python;
  set.version = 2;
  RegistryWrite write;
  write.feature_sets = {{set, 1}};
  ASSERT_OK(registry_->Commit(write));
  StartEngine(1);
  ASSERT_OK_AND_ASSIGN(auto job, engine_->RunNow({"txn", kJan1, kJan1 + kMicrosPerDay, "cli"}));
  ASSERT_EQ(JobStatusName(job.status), "failed");
  EXPECT_NE(job.error.find("Traceback (most recent call last)"), std::string::npos) << job.error;
  EXPECT_NE(job.error.find("KeyError: 'no such thing'"), std::string::npos) << job.error;
}

}  // namespace
}  // namespace fstore
