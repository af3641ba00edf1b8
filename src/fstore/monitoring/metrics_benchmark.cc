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
