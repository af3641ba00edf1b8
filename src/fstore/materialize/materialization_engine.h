#pragma once

// Runs materialization jobs: a bounded worker pool (MAX_COMPUTE_THREADS) on
// which two runs of one feature set never overlap. A run reads the source
// range (plus the window look-back), computes and validates the features
// (feature_pipeline.h), replaces the range in the offline store, writes the
// latest row per entity to the online store, makes both durable, and commits
// the job record and the watermark last -- so a crash at any point leaves a
// state from which a re-run ends exactly as one clean run would.
//
// Long ranges run in chunks (a day, or the longest window if longer); the job
// records how far it got (completed_until) and a retry resumes there.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/offline/offline_store.h"
#include "fstore/online/online_store.h"
#include "fstore/registry/registry.h"
#include "fstore/security/encryption.h"

namespace fstore {

struct MaterializationRequest {
  std::string feature_set;  ///< id or name
  /// Both unset: incremental, from the watermark (or the source's first
  /// event) to now. Only start: to now. Only end: from the watermark.
  std::optional<TimestampMicros> start;
  std::optional<TimestampMicros> end;
  std::string trigger = "api";  ///< api | schedule | cli
};

class MaterializationEngine {
 public:
  /// The stores and registry must outlive the engine. `threads` <= 0: one
  /// per core. `now` is the wall clock (injectable for tests): it is used
  /// only to choose an incremental run's end and for bookkeeping, never as
  /// the value of clock functions in transformations.
  MaterializationEngine(Registry* registry, OfflineStore* offline, OnlineStore* online,
                        int threads, std::function<TimestampMicros()> now = NowMicros);
  ~MaterializationEngine();

  /// Checks the request (404 unknown feature set; 400 bad range; 422 when
  /// nothing can be materialized: no source, both stores disabled, features
  /// that do not compile against the source), records a queued job and
  /// schedules it.
  Result<MaterializationJob> Submit(const MaterializationRequest& request);
  /// Submit, then run it on the calling thread (the CLI; no worker needed).
  Result<MaterializationJob> RunNow(const MaterializationRequest& request);
  /// Re-queues a failed (or interrupted) job; it resumes at completed_until.
  Result<MaterializationJob> Retry(const std::string& job_id);
  /// Waits until the job has finished or `timeout` passed; returns its record.
  Result<MaterializationJob> Wait(const std::string& job_id, std::chrono::milliseconds timeout);

  Result<MaterializationJob> GetJob(const std::string& job_id);
  Result<std::vector<MaterializationJob>> ListJobs(const std::string& feature_set, size_t limit);

  /// Re-queues the jobs a previous process left queued or running (start-up).
  Status RecoverInterruptedJobs();

  /// Stops taking jobs; running chunks finish, then the workers exit. A job
  /// interrupted between chunks stays "running" and is recovered at the next
  /// start. Idempotent.
  void Shutdown();

  /// Called (on a worker thread) after a job writes online records of a
  /// feature set, with its name: the serving cache drops that set's entries.
  /// Set before the first job.
  void SetOnlineWriteListener(std::function<void(const std::string&)> listener) {
    online_write_listener_ = std::move(listener);
  }

  /// Encryption at rest (null: off): what a run stores in the registry
  /// that holds feature values (quality report samples, statistics) is
  /// sealed or left out. Set before the first job.
  void SetCipher(std::shared_ptr<const Cipher> cipher) { cipher_ = std::move(cipher); }

  /// Feature statistics a run gathers (defined in the .cc).
  struct RunStatistics;

 private:
  std::function<void(const std::string&)> online_write_listener_;
  std::shared_ptr<const Cipher> cipher_;
  void WorkerLoop();
  /// Runs one job to the end (or failure), updating its record.
  void Execute(MaterializationJob job);
  Status RunChunks(MaterializationJob* job, RunStatistics* statistics);
  Result<MaterializationJob> PrepareJob(const MaterializationRequest& request);

  Registry* registry_;
  OfflineStore* offline_;
  OnlineStore* online_;
  std::function<TimestampMicros()> now_;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable job_done_;
  std::deque<std::string> queue_;            // job ids, in submission order
  std::set<std::string> busy_feature_sets_;  // feature set ids with a running job
  std::map<std::string, std::string> queued_feature_set_;  // job id -> feature set id
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace fstore
