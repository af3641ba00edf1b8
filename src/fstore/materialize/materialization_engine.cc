#include "fstore/materialize/materialization_engine.h"

#include <sys/resource.h>

#include <malloc.h>

#include <algorithm>
#include <future>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "fstore/compute/source_schema.h"
#include "fstore/core/duration.h"
#include "fstore/core/ids.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/materialize/postgres_source.h"
#include "fstore/materialize/python_step.h"
#include "fstore/materialize/source_reader.h"
#include "fstore/monitoring/feature_statistics.h"
#include "fstore/monitoring/metrics.h"
#include "fstore/registry/codec.h"
#include "fstore/online/online_writer.h"

namespace fstore {

namespace {

double ThreadCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

bool Finished(const MaterializationJob& job) {
  return job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed;
}

struct RunInputs {
  FeatureSet feature_set;
  FeaturePlan plan;
  /// The source columns to read: the plan's, or with a Python transformation
  /// all of them (the code may read any).
  std::vector<std::string> read_columns;
  /// for_run and the set has a Python transformation: compiled for this run.
  std::shared_ptr<PythonTransformation> python;
};

// Loads the definitions a run needs and compiles them against the source;
// `for_run`: also asks a postgres source with pushdown which features it
// computes (postgres_source.h).
Result<RunInputs> LoadRunInputs(Registry* registry, std::string_view feature_set_ref,
                                bool for_run) {
  ARROW_ASSIGN_OR_RAISE(auto fs, registry->FindFeatureSet(feature_set_ref, false));
  if (!fs) return NotFound("feature set '" + std::string(feature_set_ref) + "' not found");
  if (!fs->offline_enabled && !fs->online_enabled) {
    return Unprocessable("offline_enabled", "feature set '" + fs->name +
                                                "' has both the offline and the online store "
                                                "disabled: there is nowhere to materialize to");
  }
  if (!fs->source || (fs->source->type != "file" && fs->source->type != "postgres")) {
    return Unprocessable("source", "feature set '" + fs->name +
                                       "' has no file or postgres source to materialize from "
                                       "(a push source's rows come from the API)");
  }
  ARROW_ASSIGN_OR_RAISE(auto schema, RequireSourceSchema(*fs->source));
  ARROW_ASSIGN_OR_RAISE(auto all_features, registry->ListFeatures(false));
  std::vector<Feature> features;
  for (auto& f : all_features) {
    if (f.feature_set_id == fs->id) features.push_back(std::move(f));
  }
  std::sort(features.begin(), features.end(),
            [](const Feature& a, const Feature& b) { return a.name < b.name; });
  if (features.empty()) {
    return Unprocessable("features", "feature set '" + fs->name + "' has no features yet");
  }
  ARROW_ASSIGN_OR_RAISE(auto entities, registry->ListEntities());
  ARROW_ASSIGN_OR_RAISE(auto plan, PlanMaterialization(*fs, features, entities, schema));
  RunInputs inputs{*fs, std::move(plan), {}, nullptr};
  if (!fs->python_transformation) {
    if (for_run) ARROW_RETURN_NOT_OK(PlanPostgresPushdown(&inputs.plan, schema));
    inputs.read_columns = inputs.plan.source_columns;
    return inputs;
  }
  // The SQL features read the Python step's output, not the source: nothing
  // is pushed down to PostgreSQL.
  inputs.read_columns = schema->field_names();
  if (for_run) {
    ARROW_ASSIGN_OR_RAISE(auto spec, PythonSpecOf(*fs));
    ARROW_ASSIGN_OR_RAISE(inputs.python, PythonTransformation::Make(std::move(spec)));
  }
  return inputs;
}

std::vector<std::string> FeatureColumns(const arrow::Table& table,
                                        const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  for (const auto& f : table.schema()->fields()) {
    const std::string& name = f->name();
    if (name == "event_timestamp" || name == "created_timestamp") continue;
    if (std::find(keys.begin(), keys.end(), name) != keys.end()) continue;
    out.push_back(name);
  }
  return out;
}


/// The newest event_timestamp in `table`; unset when it has no rows.
std::optional<TimestampMicros> MaxEventTime(const arrow::Table& table) {
  auto column = table.GetColumnByName("event_timestamp");
  if (!column || table.num_rows() == 0) return std::nullopt;
  auto minmax = arrow::compute::MinMax(column);
  if (!minmax.ok()) return std::nullopt;
  auto max = minmax->scalar_as<arrow::StructScalar>().value[1];
  if (!max->is_valid) return std::nullopt;
  return std::static_pointer_cast<arrow::TimestampScalar>(max)->value;
}

void MaxInto(std::optional<TimestampMicros>* slot, std::optional<TimestampMicros> value) {
  if (value) *slot = std::max(slot->value_or(*value), *value);
}

}  // namespace

/// The statistics a run gathers chunk by chunk (monitoring/feature_statistics.h);
/// Execute owns them and stores them only for a run that succeeded.
struct MaterializationEngine::RunStatistics {
  std::map<std::string, monitoring::FeatureStatisticsBuilder> features;
};

namespace {
void RecordJobMetrics(const MaterializationJob& job);
void StoreStatistics(Registry* registry, const Cipher* cipher, const MaterializationJob& job,
                     const MaterializationEngine::RunStatistics& statistics);
}  // namespace

MaterializationEngine::MaterializationEngine(Registry* registry, OfflineStore* offline,
                                             OnlineStore* online, int threads,
                                             std::function<TimestampMicros()> now)
    : registry_(registry), offline_(offline), online_(online), now_(std::move(now)) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

MaterializationEngine::~MaterializationEngine() { Shutdown(); }

void MaterializationEngine::Shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

Result<MaterializationJob> MaterializationEngine::PrepareJob(const MaterializationRequest& request) {
  ARROW_ASSIGN_OR_RAISE(RunInputs inputs, LoadRunInputs(registry_, request.feature_set, false));
  const FeatureSet& fs = inputs.feature_set;
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = fs.id;
  job.feature_set_name = fs.name;
  job.feature_set_version = fs.version;
  job.trigger = request.trigger;
  job.created_at = now_();
  job.incremental = !request.start.has_value();
  if (request.start) {
    job.start = *request.start;
  } else {
    ARROW_ASSIGN_OR_RAISE(auto watermark, registry_->Watermark(fs.id));
    if (watermark) {
      job.start = *watermark;
    } else {
      ARROW_ASSIGN_OR_RAISE(auto earliest, EarliestSourceEvent(fs));
      job.start = earliest.value_or(job.created_at);
    }
  }
  job.end = request.end.value_or(job.created_at);
  if (request.start && request.end && *request.end <= *request.start) {
    return InvalidArgument("end_date", "must be after start_date (" + FormatTimestamp(*request.start) +
                                           ")");
  }
  if (job.end < job.start) job.end = job.start;  // an incremental run with nothing to do
  job.completed_until = job.start;
  return job;
}

Result<MaterializationJob> MaterializationEngine::Submit(const MaterializationRequest& request) {
  ARROW_ASSIGN_OR_RAISE(MaterializationJob job, PrepareJob(request));
  ARROW_RETURN_NOT_OK(registry_->PutJob(job));
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Unavailable("the server is shutting down");
    queue_.push_back(job.id);
    queued_feature_set_[job.id] = job.feature_set_id;
  }
  work_ready_.notify_one();
  return job;
}

Result<MaterializationJob> MaterializationEngine::RunNow(const MaterializationRequest& request) {
  ARROW_ASSIGN_OR_RAISE(MaterializationJob job, PrepareJob(request));
  ARROW_RETURN_NOT_OK(registry_->PutJob(job));
  {
    std::unique_lock lock(mutex_);
    // Never overlap a run of the same feature set.
    job_done_.wait(lock, [&] { return !busy_feature_sets_.count(job.feature_set_id); });
    busy_feature_sets_.insert(job.feature_set_id);
  }
  Execute(job);
  {
    std::lock_guard lock(mutex_);
    busy_feature_sets_.erase(job.feature_set_id);
  }
  job_done_.notify_all();
  work_ready_.notify_all();
  return GetJob(job.id);
}

Result<MaterializationJob> MaterializationEngine::Retry(const std::string& job_id) {
  ARROW_ASSIGN_OR_RAISE(MaterializationJob job, GetJob(job_id));
  if (job.status == JobStatus::kSucceeded) {
    return Conflict("job " + job_id + " already succeeded");
  }
  {
    std::lock_guard lock(mutex_);
    if (queued_feature_set_.count(job_id)) return Conflict("job " + job_id + " is queued already");
  }
  job.status = JobStatus::kQueued;
  job.error.clear();
  job.finished_at.reset();
  ARROW_RETURN_NOT_OK(registry_->PutJob(job));
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(job.id);
    queued_feature_set_[job.id] = job.feature_set_id;
  }
  work_ready_.notify_one();
  return job;
}

Status MaterializationEngine::RecoverInterruptedJobs() {
  for (JobStatus status : {JobStatus::kRunning, JobStatus::kQueued}) {
    ARROW_ASSIGN_OR_RAISE(auto jobs, registry_->ListJobsByStatus(status));
    for (auto& job : jobs) {
      spdlog::info("resuming materialization job {} of {} at {}", job.id, job.feature_set_name,
                   FormatTimestamp(job.completed_until));
      job.status = JobStatus::kQueued;
      ARROW_RETURN_NOT_OK(registry_->PutJob(job));
      std::lock_guard lock(mutex_);
      queue_.push_back(job.id);
      queued_feature_set_[job.id] = job.feature_set_id;
    }
  }
  work_ready_.notify_all();
  return Status::OK();
}

Result<MaterializationJob> MaterializationEngine::Wait(const std::string& job_id,
                                                       std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(MaterializationJob job, GetJob(job_id));
    if (Finished(job) || std::chrono::steady_clock::now() >= deadline) return job;
    std::unique_lock lock(mutex_);
    job_done_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() +
                                                      std::chrono::milliseconds(200)));
  }
}

Result<MaterializationJob> MaterializationEngine::GetJob(const std::string& job_id) {
  ARROW_ASSIGN_OR_RAISE(auto job, registry_->FindJob(job_id));
  if (!job) return NotFound("materialization job '" + job_id + "' not found");
  return *job;
}

Result<std::vector<MaterializationJob>> MaterializationEngine::ListJobs(
    const std::string& feature_set, size_t limit) {
  ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(feature_set, true));
  if (!fs) return NotFound("feature set '" + feature_set + "' not found");
  return registry_->ListJobs(fs->id, limit);
}

void MaterializationEngine::WorkerLoop() {
  while (true) {
    std::string job_id, fs_id;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] {
        if (stopping_) return true;
        return std::any_of(queue_.begin(), queue_.end(), [&](const std::string& id) {
          return !busy_feature_sets_.count(queued_feature_set_[id]);
        });
      });
      if (stopping_) return;
      auto it = std::find_if(queue_.begin(), queue_.end(), [&](const std::string& id) {
        return !busy_feature_sets_.count(queued_feature_set_[id]);
      });
      job_id = *it;
      fs_id = queued_feature_set_[job_id];
      queue_.erase(it);
      queued_feature_set_.erase(job_id);
      busy_feature_sets_.insert(fs_id);
    }
    auto job = registry_->FindJob(job_id);
    if (job.ok() && job->has_value()) {
      Execute(**job);
    } else {
      spdlog::error("materialization job {} vanished: {}", job_id,
                    job.ok() ? "not found" : job.status().ToString());
    }
    {
      std::lock_guard lock(mutex_);
      busy_feature_sets_.erase(fs_id);
    }
    job_done_.notify_all();
    work_ready_.notify_all();
  }
}

void MaterializationEngine::Execute(MaterializationJob job) {
  auto started = std::chrono::steady_clock::now();
  double cpu_before = ThreadCpuSeconds();
  job.status = JobStatus::kRunning;
  job.started_at = now_();
  (void)registry_->PutJob(job);
  spdlog::info("materialization job {} of {}: [{}, {})", job.id, job.feature_set_name,
               FormatTimestamp(job.start), FormatTimestamp(job.end));

  RunStatistics statistics;
  Status st = RunChunks(&job, &statistics);
  // The run's buffers are free now: hand them back to the system.
  malloc_trim(0);
  job.duration_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  job.cpu_seconds += ThreadCpuSeconds() - cpu_before;
  job.finished_at = now_();
  if (st.IsCancelled()) {
    // Left "running" at completed_until: the next start resumes it.
    job.finished_at.reset();
    (void)registry_->PutJob(job);
    return;
  }
  if (!st.ok()) {
    job.status = JobStatus::kFailed;
    job.error = st.message();
    spdlog::warn("materialization job {} failed: {}", job.id, job.error);
    Status put = registry_->PutJob(job);
    if (!put.ok()) spdlog::error("recording job {} failed: {}", job.id, put.ToString());
    RecordJobMetrics(job);
    return;
  }
  job.status = JobStatus::kSucceeded;
  Status commit = registry_->CommitJobAndWatermark(job, job.end);
  if (!commit.ok()) {
    spdlog::error("committing job {} failed: {}", job.id, commit.ToString());
    job.status = JobStatus::kFailed;
    job.error = "committing the job failed: " + commit.message();
    (void)registry_->PutJob(job);
    RecordJobMetrics(job);
    return;
  }
  RecordJobMetrics(job);
  if (!statistics.features.empty()) StoreStatistics(registry_, cipher_.get(), job, statistics);
  spdlog::debug("arrow memory pool {}: peak {} MB, now {} MB", arrow::default_memory_pool()->backend_name(),
                arrow::default_memory_pool()->max_memory() >> 20,
                arrow::default_memory_pool()->bytes_allocated() >> 20);
  spdlog::info("materialization job {} succeeded: {} rows read, {} offline, {} online, {:.3f}s",
               job.id, job.rows_read, job.rows_written_offline, job.rows_written_online,
               job.duration_seconds);
}

namespace {

void RecordJobMetrics(const MaterializationJob& job) {
  auto& m = monitoring::FstoreMetrics::Get();
  const bool succeeded = job.status == JobStatus::kSucceeded;
  m.materialization_jobs->With({succeeded ? "succeeded" : "failed"})->Inc();
  m.materialization_rows->With({"read"})->Inc(static_cast<double>(job.rows_read));
  m.materialization_rows->With({"offline"})->Inc(static_cast<double>(job.rows_written_offline));
  m.materialization_rows->With({"online"})->Inc(static_cast<double>(job.rows_written_online));
  m.materialization_rows->With({"rejected"})->Inc(static_cast<double>(job.rows_rejected));
  m.materialization_cpu_seconds->Inc(job.cpu_seconds);
  m.materialization_bytes_read->Inc(static_cast<double>(job.bytes_read));
  m.materialization_bytes_written->Inc(static_cast<double>(job.bytes_written));
  m.materialization_duration->With({job.feature_set_name})->Set(job.duration_seconds);
  if (succeeded) {
    m.materialization_rows_per_second->With({job.feature_set_name})
        ->Set(job.duration_seconds > 0 ? static_cast<double>(job.rows_read) / job.duration_seconds
                                       : 0);
    if (job.finished_at) {
      m.materialization_last_success->With({job.feature_set_name})
          ->Set(static_cast<double>(*job.finished_at) / 1e6);
    }
  }
}

/// Stores the run's statistics (sealed with `cipher` when set), with drift
/// against the previous run of each feature.
void StoreStatistics(Registry* registry, const Cipher* cipher, const MaterializationJob& job,
                     const MaterializationEngine::RunStatistics& statistics) {
  // Statistics never fail a run: every problem is logged and the run stands.
  auto fail = [&job](const std::string& why) {
    spdlog::warn("feature statistics of job {} not stored: {}", job.id, why);
  };
  // The previous run's body per feature, for drift: the newest record of
  // each feature within kDriftLookback (older history is not read per run).
  constexpr int64_t kDriftLookback = 35 * kMicrosPerDay;
  std::map<std::string, std::pair<std::string, boost::json::object>> previous;
  auto stored = registry->ListFeatureStatistics(job.created_at - kDriftLookback,
                                                 job.feature_set_id);
  if (!stored.ok()) return fail(stored.status().ToString());
  for (auto it = stored->rbegin(); it != stored->rend(); ++it) {  // newest first
    const FeatureStatisticsRecord& r = *it;
    if (r.job_id == job.id || !statistics.features.count(r.feature)) continue;
    if (previous.count(r.feature)) continue;
    // Unreadable ones (sealed under another key, damaged) give no drift.
    auto body = monitoring::OpenStatisticsBody(r, cipher);
    if (!body.ok()) continue;
    previous[r.feature] = {r.job_id, std::move(*body)};
  }
  std::vector<FeatureStatisticsRecord> records;
  const TimestampMicros computed_at = job.finished_at.value_or(NowMicros());
  for (const auto& [feature, builder] : statistics.features) {
    auto prev = previous.find(feature);
    boost::json::object body =
        prev == previous.end() ? builder.Finish(nullptr, "")
                               : builder.Finish(&prev->second.second, prev->second.first);
    FeatureStatisticsRecord record{job.id, job.feature_set_id, job.feature_set_name, feature,
                                   computed_at, ""};
    auto sealed = monitoring::SealStatisticsBody(body, cipher, record);
    if (!sealed.ok()) return fail("sealing failed: " + sealed.status().ToString());
    record.body = std::move(*sealed);
    records.push_back(std::move(record));
  }
  if (Status put = registry->PutFeatureStatistics(records); !put.ok()) fail(put.ToString());
}


/// Source rows a chunk aims at (a chunk is never shorter than a day).
constexpr double kChunkTargetRows = 2'000'000;
constexpr int64_t kMaxChunkDays = 31;
}  // namespace

Status MaterializationEngine::RunChunks(MaterializationJob* job, RunStatistics* statistics) {
  ARROW_ASSIGN_OR_RAISE(RunInputs inputs, LoadRunInputs(registry_, job->feature_set_id, true));
  const FeatureSet& fs = inputs.feature_set;
  const FeaturePlan& plan = inputs.plan;
  // A chunk is a whole number of days (date partitions of the offline store):
  // one day first, then as many days as the last chunk's row rate says fit in
  // kChunkTargetRows, at least one. The windows' look-back is read once, for
  // the first chunk, then carried from chunk to chunk as keys, times and
  // window arguments only (WindowCarry). Peak memory is a chunk plus that,
  // not the source. (Fewer, larger chunks matter when the source is not
  // ordered by time: each chunk's read scans every file whose statistics
  // overlap it.)
  int64_t chunk = kMicrosPerDay;
  WindowCarry carry;
  carry.run_end = job->end;
  // Clock functions see the run's end, so a re-run computes exactly what a
  // clean run does. created_timestamp (when the source has none) is when the
  // store learns the rows: the wall clock as each chunk is computed, just
  // before it is written. Time travel (`as_of`) then sees what the store
  // knew at any moment, also across backfills and re-runs of a range; a row a
  // re-run brings again unchanged keeps its first created time (the offline
  // store keeps no identical version, OfflineStore::ReplaceRange).
  const TimestampMicros clock = job->end;
  const std::vector<SourceExpression> pushed_down = PushedDownExpressions(plan);

  // One chunk's writes run on a second thread while the next chunk is read and
  // computed; progress (completed_until) is recorded only once a chunk's
  // writes are durable, so the crash-safety argument is unchanged.
  struct ChunkWrite {
    TimestampMicros end = 0;
    int64_t offline_rows = 0;
    int64_t online_records = 0;
    int64_t bytes = 0;
    double cpu_seconds = 0;
  };
  auto write_chunk = [this, &fs, &plan, statistics, job_id = job->id](
                         std::shared_ptr<ComputedFeatures> computed, TimestampMicros start,
                         TimestampMicros end) -> Result<ChunkWrite> {
    double cpu_before = ThreadCpuSeconds();
    // Statistics over the rows this chunk writes offline (online when the
    // offline store is off), here on the write thread, overlapping the next
    // chunk's read and compute; one write runs at a time, so the builders are
    // never touched by two threads at once.
    {
      const arrow::Table& rows = fs.offline_enabled ? *computed->offline : *computed->online;
      auto& features = statistics->features;
      for (const std::string& name : FeatureColumns(rows, plan.key_columns)) {
        if (name.rfind("__src__", 0) == 0) continue;  // stored clock inputs, not features
        auto column = rows.GetColumnByName(name);
        auto it = features.find(name);
        if (it == features.end()) {
          it = features.emplace(name, monitoring::FeatureStatisticsBuilder(column->type())).first;
        }
        it->second.Add(*column);
      }
    }
    auto t0 = std::chrono::steady_clock::now();
    ChunkWrite w;
    w.end = end;
    if (fs.offline_enabled) {
      ARROW_ASSIGN_OR_RAISE(auto stats,
                            offline_->ReplaceRange(fs.name, kOfflineSchemaVersion, plan.key_columns,
                                                   start, end, computed->offline, job_id));
      w.offline_rows = computed->offline->num_rows();
      w.bytes = stats.bytes_written;
    }
    auto t1 = std::chrono::steady_clock::now();
    if (fs.online_enabled) {
      if (computed->online->num_rows() > 0) {
        // The feature set's ttl also becomes the records' expiry where the
        // store has one (Redis); reads apply the ttl either way.
        OnlineWriteOptions write_options;
        if (!fs.ttl.empty()) {
          ARROW_ASSIGN_OR_RAISE(write_options.ttl_micros, ParseDuration(fs.ttl));
        }
        ARROW_ASSIGN_OR_RAISE(auto written,
                              WriteLatestRows(online_, fs.name, plan.key_columns,
                                              FeatureColumns(*computed->online, plan.key_columns),
                                              *computed->online, kDefaultOnlineWriteBatch,
                                              write_options));
        w.online_records = written.applied;
      }
      ARROW_RETURN_NOT_OK(online_->Sync());  // durable before progress is recorded
      if (online_write_listener_ && w.online_records > 0) online_write_listener_(fs.name);
    }
    auto t2 = std::chrono::steady_clock::now();
    spdlog::debug("job {} chunk [{}, {}) written: offline {:.0f} ms, online {:.0f} ms; arrow {} MB, peak {} MB", job_id,
                  FormatTimestamp(start), FormatTimestamp(end),
                  std::chrono::duration<double, std::milli>(t1 - t0).count(),
                  std::chrono::duration<double, std::milli>(t2 - t1).count(),
                  arrow::default_memory_pool()->bytes_allocated() >> 20,
                  arrow::default_memory_pool()->max_memory() >> 20);
    w.cpu_seconds = ThreadCpuSeconds() - cpu_before;
    return w;
  };
  std::future<Result<ChunkWrite>> pending;
  auto finish_pending = [&]() -> Status {
    if (!pending.valid()) return Status::OK();
    ARROW_ASSIGN_OR_RAISE(ChunkWrite w, pending.get());
    job->rows_written_offline += w.offline_rows;
    job->rows_written_online += w.online_records;
    job->bytes_written += w.bytes;
    job->cpu_seconds += w.cpu_seconds;
    job->completed_until = w.end;
    return registry_->PutJob(*job);
  };

  TimestampMicros next = job->completed_until;
  while (next < job->end) {
    bool stopping;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
    }
    if (stopping) {
      ARROW_RETURN_NOT_OK(finish_pending());
      return arrow::Status::Cancelled("interrupted by shutdown");
    }
    TimestampMicros chunk_start = next;
    TimestampMicros chunk_end = std::min(job->end, chunk_start + chunk);
    auto t0 = std::chrono::steady_clock::now();
    SourceReadStats read;
    const TimestampMicros read_start =
        carry.until == chunk_start ? chunk_start : chunk_start - plan.max_window_micros;
    ARROW_ASSIGN_OR_RAISE(auto source, ReadSourceRange(fs, inputs.read_columns, read_start,
                                                       chunk_end, &read, pushed_down));
    job->bytes_read += read.bytes;
    if (inputs.python) {
      // The Python step, batch by batch in source order, before the SQL
      // transformations; windows then read its output.
      ARROW_ASSIGN_OR_RAISE(source, ApplyPythonStep(*inputs.python, source, plan.source_columns));
    }
    auto t1 = std::chrono::steady_clock::now();
    auto computed = std::make_shared<ComputedFeatures>();
    ARROW_ASSIGN_OR_RAISE(*computed,
                          ComputeFeatures(plan, source, chunk_start, chunk_end, clock, now_(),
                                          &carry));
    auto t2 = std::chrono::steady_clock::now();
    spdlog::debug("job {} chunk [{}, {}): {} source rows, {} carried; read {:.0f} ms, "
                  "compute {:.0f} ms; arrow {} MB, peak {} MB",
                  job->id, FormatTimestamp(chunk_start), FormatTimestamp(chunk_end),
                  source->num_rows(), carry.num_rows(), std::chrono::duration<double, std::milli>(t1 - t0).count(),
                  std::chrono::duration<double, std::milli>(t2 - t1).count(),
                  arrow::default_memory_pool()->bytes_allocated() >> 20,
                  arrow::default_memory_pool()->max_memory() >> 20);
    // Rows read: those of this chunk's range (the look-back is re-read context).
    job->rows_read += computed->offline->num_rows() + computed->rows_rejected;
    job->rows_rejected += computed->rows_rejected;
    // Freshness: the newest event time this chunk writes to each store.
    if (fs.offline_enabled) MaxInto(&job->max_event_time_offline, MaxEventTime(*computed->offline));
    if (fs.online_enabled) MaxInto(&job->max_event_time_online, MaxEventTime(*computed->online));
    for (const auto& [feature, rules] : computed->quality_report) {
      auto& slot = job->quality_report[feature];
      if (!slot.is_object()) slot.emplace_object();
      for (const auto& [rule, report] : rules.as_object()) {
        auto& existing = slot.as_object()[rule];
        if (!existing.is_object()) {
          existing = report;
          // Samples are feature values: with encryption at rest they are not
          // kept in the job record (in clear in the registry); counts are.
          if (cipher_ && existing.is_object() && existing.as_object().erase("samples") > 0) {
            existing.as_object()["samples_withheld"] = "encryption at rest";
          }
        } else {
          existing.as_object()["count"] = existing.as_object()["count"].to_number<int64_t>() +
                                          report.as_object().at("count").to_number<int64_t>();
        }
      }
    }
    // The previous chunk's writes must be durable (and recorded) before this
    // one's start: one write in flight at a time, in order.
    ARROW_RETURN_NOT_OK(finish_pending());
    if (computed->failed_validation) {
      return Unprocessable("validation_rules",
                           "values failed validation and the feature set's on_invalid policy "
                           "is 'fail' (see the quality report); nothing of [" +
                               FormatTimestamp(chunk_start) + ", " + FormatTimestamp(chunk_end) +
                               ") was written");
    }
    pending = std::async(std::launch::async, write_chunk, computed, chunk_start, chunk_end);
    next = chunk_end;
    const double rows_per_day =
        static_cast<double>(computed->offline->num_rows() + computed->rows_rejected) /
        (static_cast<double>(chunk_end - chunk_start) / kMicrosPerDay);
    const double days = rows_per_day > 0 ? std::round(kChunkTargetRows / rows_per_day) : kMaxChunkDays;
    chunk = std::clamp<int64_t>(static_cast<int64_t>(days), 1, kMaxChunkDays) * kMicrosPerDay;
  }
  return finish_pending();
}

}  // namespace fstore
