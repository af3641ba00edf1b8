#pragma once

// A background thread that calls a function every interval until stopped:
// the registry polls (definitions, API keys) and the usage writer. The first
// call comes one interval after Start; Stop wakes the thread at once, lets a
// call in progress finish, and joins.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace fstore {

class PeriodicThread {
 public:
  PeriodicThread() = default;
  ~PeriodicThread() { Stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  /// Starts calling `fn` every `interval`; ignored when already started.
  void Start(std::chrono::milliseconds interval, std::function<void()> fn);
  /// Stops and joins; idempotent. Not to be called from `fn`.
  void Stop();
  bool started() const {
    std::lock_guard lock(mutex_);
    return thread_.joinable();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fstore
