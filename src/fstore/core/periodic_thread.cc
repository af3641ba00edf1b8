#include "fstore/core/periodic_thread.h"

namespace fstore {

void PeriodicThread::Start(std::chrono::milliseconds interval, std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this, interval, fn = std::move(fn)] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, interval, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      fn();
      lock.lock();
    }
  });
}

void PeriodicThread::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    thread.swap(thread_);
  }
  wake_.notify_all();
  if (thread.joinable()) thread.join();
}

}  // namespace fstore
