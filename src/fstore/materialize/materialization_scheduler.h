#pragma once

// Triggers incremental materialization runs from feature sets'
// materialization_schedule (cron, UTC) inside `fstore serve`. After a restart,
// missed slots run once, not once per slot: the registry keeps each feature
// set's last triggered slot.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "fstore/core/time.h"
#include "fstore/materialize/materialization_engine.h"
#include "fstore/registry/registry.h"

namespace fstore {

class MaterializationScheduler {
 public:
  /// Starts the scheduler thread (unless `start_thread` is false: tests call
  /// Tick() themselves). `now` is injectable for tests.
  MaterializationScheduler(Registry* registry, MaterializationEngine* engine,
                           std::function<TimestampMicros()> now = NowMicros,
                           bool start_thread = true);
  ~MaterializationScheduler();

  /// One pass: for each live feature set with a schedule, if a slot has come
  /// since the last triggered one (or since the feature set was created),
  /// submits one incremental run and records the latest slot. Returns how
  /// many runs were submitted. Called by the thread; public for tests.
  Result<int> Tick();

  /// Stops the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  Registry* registry_;
  MaterializationEngine* engine_;
  std::function<TimestampMicros()> now_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fstore
