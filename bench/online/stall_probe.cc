// How steadily this machine runs two busy threads: one thread per CPU, each
// pinned and spinning on the clock, records every gap between two readings
// longer than a threshold -- time its CPU did not run it (the hypervisor
// running another guest, an interrupt storm). A latency budget of 1 ms at
// the 99th percentile cannot hold on a machine whose CPUs vanish for several
// milliseconds a few times a second, whatever the server does, so the online
// benchmark prints this beside its tables.
//
//   stall_probe [--seconds 10] [--cpus 0,1] [--threshold-ms 0.5]
//
// Prints one JSON line: per CPU, the gaps over the threshold, their total
// and the longest, in milliseconds.

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Gaps {
  int cpu = 0;
  long count = 0;
  double total_ms = 0;
  double max_ms = 0;
};

void Spin(Gaps* g, double seconds, double threshold_ms) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(g->cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(seconds));
  auto last = start;
  for (auto now = start; now < end; now = Clock::now()) {
    const double gap = std::chrono::duration<double, std::milli>(now - last).count();
    if (gap > threshold_ms) {
      ++g->count;
      g->total_ms += gap;
      g->max_ms = std::max(g->max_ms, gap);
    }
    last = now;
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10, threshold_ms = 0.5;
  std::string cpus = "0,1";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--cpus") cpus = argv[i + 1];
    else if (a == "--threshold-ms") threshold_ms = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: stall_probe [--seconds S] [--cpus 0,1] [--threshold-ms T]\n");
      return 2;
    }
  }
  std::vector<Gaps> gaps;
  std::stringstream list(cpus);
  for (std::string c; std::getline(list, c, ',');) gaps.push_back({std::atoi(c.c_str())});
  std::vector<std::thread> threads;
  for (auto& g : gaps) threads.emplace_back(Spin, &g, seconds, threshold_ms);
  for (auto& t : threads) t.join();
  std::printf("{\"seconds\": %.1f, \"threshold_ms\": %.2f, \"cpus\": [", seconds, threshold_ms);
  for (size_t i = 0; i < gaps.size(); ++i) {
    std::printf("%s{\"cpu\": %d, \"gaps\": %ld, \"total_ms\": %.1f, \"max_ms\": %.2f}",
                i ? ", " : "", gaps[i].cpu, gaps[i].count, gaps[i].total_ms, gaps[i].max_ms);
  }
  std::printf("]}\n");
  return 0;
}
