// How long this machine takes for a fixed piece of CPU work that starts
// after the thread slept -- the way a request arrives at a server that is
// not busy. The work (formatting 12,500 doubles as text, about what a
// 100-entity x 250-feature response formats) is timed back to back ("hot")
// and after each of N sleeps ("after sleep"). On a machine whose CPUs run at
// one speed the two match; where they do not, the difference is the
// machine's, and no server can answer a lightly loaded batch workload in
// less than its work takes after a sleep. The online benchmark prints this
// beside its tables (docs/benchmarks.md).
//
//   wake_probe [--runs 200] [--sleep-ms 20] [--cpu -1]
//
// Prints one JSON line: p50, p90, p99 and max of the work in microseconds,
// hot and after sleep.

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Quantiles {
  double p50, p90, p99, max;
};

Quantiles Of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {at(0.5), at(0.9), at(0.99), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200;
  int sleep_ms = 20;
  int cpu = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--runs") {
      runs = std::atoi(argv[i + 1]);
    } else if (flag == "--sleep-ms") {
      sleep_ms = std::atoi(argv[i + 1]);
    } else if (flag == "--cpu") {
      cpu = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: wake_probe [--runs 200] [--sleep-ms 20] [--cpu -1]\n");
      return 2;
    }
  }
  if (runs < 10) runs = 10;
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> dist(0, 1000);
  std::vector<double> numbers(12500);
  for (double& x : numbers) x = dist(rng);
  std::string text;
  text.reserve(numbers.size() * 24);
  auto work = [&] {
    text.clear();
    char digits[32];
    for (double x : numbers) {
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, x);
      text.append(digits, end);
      text += ',';
    }
  };
  auto timed = [&] {
    const auto start = Clock::now();
    work();
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  };
  for (int i = 0; i < 20; ++i) work();  // warm
  std::vector<double> hot, after_sleep;
  for (int i = 0; i < runs; ++i) hot.push_back(timed());
  for (int i = 0; i < runs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    after_sleep.push_back(timed());
  }
  const Quantiles h = Of(hot), s = Of(after_sleep);
  std::printf(
      "{\"runs\": %d, \"sleep_ms\": %d, \"hot_us\": {\"p50\": %.0f, \"p90\": %.0f, \"p99\": %.0f, "
      "\"max\": %.0f}, \"after_sleep_us\": {\"p50\": %.0f, \"p90\": %.0f, \"p99\": %.0f, "
      "\"max\": %.0f}}\n",
      runs, sleep_ms, h.p50, h.p90, h.p99, h.max, s.p50, s.p90, s.p99, s.max);
  return 0;
}
