// The cost of recording one request's metrics, the way the HTTP server does
// it (a series found by its label values, a counter and a histogram updated),
// alone and with threads contending on the same series.
//   build-*/src/fstore/monitoring/metrics_benchmark
#include <benchmark/benchmark.h>

#include "fstore/monitoring/metrics.h"

namespace fstore::monitoring {
namespace {

void BM_RecordRequest(benchmark::State& state) {
  auto& m = FstoreMetrics::Get();
  for (auto _ : state) {
    m.http_requests->With({"POST", "/api/v1/serving/online", "200"})->Inc();
    m.http_request_duration->With({"POST", "/api/v1/serving/online"})->Observe(0.00042);
  }
}
BENCHMARK(BM_RecordRequest)->Threads(1)->Threads(2);

void BM_CounterInc(benchmark::State& state) {
  Counter* c = FstoreMetrics::Get().serving_cache_hits;
  for (auto _ : state) c->Inc();
}
BENCHMARK(BM_CounterInc)->Threads(1)->Threads(2);

void BM_HistogramObserve(benchmark::State& state) {
  Histogram* h = FstoreMetrics::Get().online_store_read_duration;
  for (auto _ : state) h->Observe(0.00003);
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2);

}  // namespace
}  // namespace fstore::monitoring

#include "fstore/monitoring/usage_recorder.h"

namespace fstore::monitoring {
namespace {

// What ServingMonitor::Record adds per online request of one feature set x
// 10 features: the request row, the set row, the online row, 10 feature rows.
void BM_UsageAdd(benchmark::State& state) {
  static UsageRecorder recorder([](const std::vector<UsageCount>&) { return Status::OK(); });
  std::vector<UsageCount> counts{{"2026-11-26", "", std::string(kRequestRow), "", 1, 0, 0},
                                 {"2026-11-26", "", "user_profile", "", 1, 1, 1},
                                 {"2026-11-26", "", "user_profile", std::string(kOnlineRow), 1, 1, 1}};
  for (int i = 0; i < 10; ++i) {
    counts.push_back({"2026-11-26", "", "user_profile", "feature_" + std::to_string(i), 1, 0, 0});
  }
  for (auto _ : state) recorder.Add(counts);
}
BENCHMARK(BM_UsageAdd)->Threads(1)->Threads(2);

// The same request as ServingMonitor::Record hands it over: one lookup by shape.
void BM_UsageAddRequest(benchmark::State& state) {
  static UsageRecorder recorder([](const std::vector<UsageCount>&) { return Status::OK(); });
  std::vector<std::string> features;
  for (int i = 0; i < 10; ++i) features.push_back("feature_" + std::to_string(i));
  const std::vector<UsageRecorder::SetUse> sets{{"user_profile", &features, 1, 1, true}};
  for (auto _ : state) recorder.AddRequest("2026-11-26", "", sets);
}
BENCHMARK(BM_UsageAddRequest)->Threads(1)->Threads(2);

}  // namespace
}  // namespace fstore::monitoring
