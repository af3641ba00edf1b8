#include "fstore/core/periodic_thread.h"

#include <atomic>

#include <gtest/gtest.h>

namespace fstore {
namespace {

TEST(PeriodicThread, CallsUntilStoppedAndNotAfter) {
  std::atomic<int> calls{0};
  PeriodicThread thread;
  thread.Start(std::chrono::milliseconds(1), [&] { ++calls; });
  EXPECT_TRUE(thread.started());
  // Polled, not slept-and-asserted: the contract is "every interval".
  for (int i = 0; i < 2000 && calls < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GE(calls.load(), 3);
  thread.Stop();
  EXPECT_FALSE(thread.started());
  const int at_stop = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(calls.load(), at_stop);
  thread.Stop();  // idempotent
}

TEST(PeriodicThread, StopWakesALongWaitAtOnceAndRestartIsRefused) {
  std::atomic<int> calls{0};
  PeriodicThread thread;
  thread.Start(std::chrono::hours(1), [&] { ++calls; });
  thread.Stop();  // returns without waiting the hour (else ctest's timeout fails it)
  EXPECT_EQ(calls.load(), 0);
  thread.Start(std::chrono::milliseconds(1), [&] { ++calls; });
  EXPECT_FALSE(thread.started());
}

TEST(PeriodicThread, DestructionStopsIt) {
  std::atomic<int> calls{0};
  {
    PeriodicThread thread;
    thread.Start(std::chrono::milliseconds(1), [&] { ++calls; });
  }
  const int after = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(calls.load(), after);
}

}  // namespace
}  // namespace fstore
