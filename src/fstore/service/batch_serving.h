#pragma once

// POST /api/v1/serving/batch: historical (point-in-time) retrieval over an
// entity source too large for a request body, run as a job that writes
// Parquet.
//
// Request:
//   {"feature_sets": ["user_profile", ...],
//    "features": ["user_age", "user_profile:purchase_count", ...],
//    "entity_source": {"path": "/abs/entities.parquet", "format": "parquet"},
//    "output": {"path": "/abs/out.parquet", "format": "parquet"},
//    "as_of": "2024-02-01T00:00:00",   (optional, as in historical serving)
//    "overwrite": false,               (optional: replace an existing output file)
//    "batch_rows": 1000000,            (optional: entity rows per record batch)
//    "wait": false}                    (optional: answer when the job has ended)
// feature_sets, features and as_of mean what they mean for
// POST /api/v1/serving/historical (historical_serving.h). entity_source.path
// is an absolute path (or file:// URI) of a Parquet file, a directory of them
// or a glob; it must hold every join key of the requested feature sets'
// entities (integer or string columns, no nulls) and a time column:
// `event_timestamp`, or `timestamp` when there is none (a timestamp, a date or
// ISO 8601 strings; timezone-less is UTC). output.path is an absolute path (or
// URI) of the Parquet file to write, or a directory (an existing one, or a
// path ending in '/') in which the job writes "<job id>.parquet"; its
// directory is created when missing.
//
// On S3: entity_source.path may be s3://bucket/key (one Parquet object) or
// s3://bucket/prefix (every object under it, names starting with '.' or '_'
// skipped; no globs), and output.path s3://bucket/key or s3://bucket/prefix/;
// both are reached with the store's S3 settings (FeatureStoreOptions::s3:
// endpoint, credentials, region), not the AWS default chain. The output's
// bucket must exist. S3 not answering is Unavailable.
//
// Output: the entity source's columns, unchanged, then one column per
// requested feature (named as requested, of its declared type), one row per
// entity row in the source's order (files in name order).
//
// Everything that can be checked without reading the rows is checked before
// the job is queued, each error naming its field ("entity_source.path",
// "output.path", "features[1]"); an existing output file without
// "overwrite": true is a Conflict. Problems only the rows show (a null key, an
// unparseable time) fail the job, with the row in its error.
//
// Streaming: the entity source is scanned in record batches of at most
// batch_rows rows; each batch is joined and appended to the output as it
// comes, so memory is bounded by a batch (plus the point-in-time join's
// partition, retrieval/point_in_time_join.h). The file is written under a
// hidden temporary name in the output's directory (".<name>.<job id>.tmp")
// and renamed when complete: the final name never shows a partial file, and
// a failed job leaves nothing behind.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/registry/materialization_job.h"
#include "fstore/service/request_context.h"

namespace fstore {

class FeatureStore;

/// A batch serving job's record.
struct BatchServingJob {
  std::string id;  ///< UUID
  JobStatus status = JobStatus::kQueued;
  std::vector<std::string> feature_sets;  ///< as requested
  std::vector<std::string> features;      ///< as requested: the output's feature columns
  std::string entity_source;              ///< entity_source.path as requested
  std::string output;                     ///< the output file's path (as written)
  std::optional<TimestampMicros> as_of;
  int64_t batch_rows = 0;
  int64_t rows_read = 0;     ///< entity rows read so far
  int64_t rows_written = 0;  ///< rows appended to the output so far
  int64_t batches = 0;       ///< record batches joined so far
  std::optional<std::string> error;  ///< why the job failed
  bool cancelled = false;            ///< it failed because Cancel() stopped it
  TimestampMicros created_at = 0;
  std::optional<TimestampMicros> started_at;
  std::optional<TimestampMicros> finished_at;
  double duration_seconds = 0;  ///< from start to end (or to now while running)
};

/// {"id", "status", "feature_sets", "features", "entity_source", "output",
/// "as_of", "batch_rows", "rows_read", "rows_written", "batches", "error",
/// "cancelled", "created_at", "started_at", "finished_at", "duration_seconds"}; times as
/// ISO 8601 strings, null when unset.
boost::json::object ToJson(const BatchServingJob& job);

/// Runs batch serving jobs on a small pool of worker threads, started at the
/// first submission. Jobs are kept in memory only (the last kMaxJobsKept):
/// a restart forgets them, and a job still queued or running at shutdown
/// fails ("the server shut down"), its temporary file removed.
///
/// Thread safety: every method may be called concurrently.
class BatchServing {
 public:
  static constexpr int kDefaultWorkers = 2;
  static constexpr size_t kMaxJobsKept = 1000;
  static constexpr int64_t kDefaultBatchRows = 1'000'000;

  /// `store` must outlive this object (FeatureStore owns it). At most
  /// `workers` jobs run at once; more wait in submission order.
  BatchServing(FeatureStore* store, int workers = kDefaultWorkers);
  ~BatchServing();

  BatchServing(const BatchServing&) = delete;
  BatchServing& operator=(const BatchServing&) = delete;

  /// Checks the request (the header's rules), records a queued job and
  /// schedules it; with "wait": true, returns once it has ended.
  /// PermissionDenied (before any job exists) naming a feature set
  /// context.principal may not use; context.usage gets the sets and features.
  Result<BatchServingJob> Submit(const boost::json::value& body,
                                 const RequestContext& context = {});
  /// The job's record; NotFound for an unknown (or forgotten) id.
  Result<BatchServingJob> GetJob(std::string_view id);
  /// Waits until the job has ended or `timeout` passed; returns its record.
  Result<BatchServingJob> Wait(std::string_view id, std::chrono::milliseconds timeout);
  /// The jobs kept, newest first (by creation), in `status` when given, at
  /// most `limit`; only those whose feature sets `principal` may all use.
  std::vector<BatchServingJob> ListJobs(std::optional<JobStatus> status, size_t limit,
                                        const Principal& principal = Principal::Anonymous());
  /// Cancels a job: a queued one fails at once ("cancelled"), a running one
  /// stops before its next record batch (its temporary file removed, the
  /// output untouched) and fails the same way; returns the record as it is
  /// now (a running job may still be running: poll or Wait). NotFound for an
  /// unknown id; Conflict for a job that has already ended.
  Result<BatchServingJob> Cancel(std::string_view id);
  /// Stops taking jobs, fails the queued ones, stops running ones at their
  /// next batch and joins the workers. Idempotent.
  void Shutdown();

 private:
  struct Plan;  // a checked request, ready to run

  Result<std::shared_ptr<Plan>> PlanJob(const boost::json::object& body, BatchServingJob* job,
                                        const RequestContext& context);
  void WorkerLoop();
  void Execute(const std::string& id, const std::shared_ptr<Plan>& plan);
  Status Run(const std::string& id, const Plan& plan);
  void Forget();  // drops the oldest ended jobs beyond kMaxJobsKept; mutex_ held

  FeatureStore* store_;
  const int workers_wanted_;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable job_ended_;
  std::map<std::string, BatchServingJob> jobs_;        // by id
  std::deque<std::string> order_;                      // ids, oldest first
  std::deque<std::pair<std::string, std::shared_ptr<Plan>>> queue_;
  std::map<std::string, std::string> active_outputs_;  // output path -> job id
  std::set<std::string> cancelling_;                   // running job ids asked to stop
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace fstore
