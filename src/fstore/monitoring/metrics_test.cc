#include "fstore/monitoring/metrics.h"

#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace fstore::monitoring {
namespace {

/// Parses exposition text back: series (name + labels as written) -> value;
/// checks every sample's family has HELP and TYPE before it.
std::map<std::string, double> Parse(const std::string& text, std::map<std::string, std::string>* types) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream f(line.substr(7));
      std::string name, type;
      f >> name >> type;
      (*types)[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

TEST(MetricsTest, CountersGaugesAndHistogramsRenderInTextFormat) {
  MetricsRegistry registry;
  auto* requests = registry.AddCounter("test_requests_total", "Requests", {"route", "status"});
  auto* memory = registry.AddGauge("test_memory_bytes", "Memory");
  static const std::vector<double> bounds{0.1, 1, 10};
  auto* latency = registry.AddHistogram("test_latency_seconds", "Latency", {"route"}, &bounds);

  requests->With({"/a", "200"})->Inc();
  requests->With({"/a", "200"})->Inc();
  requests->With({"/b/{id}", "404"})->Inc(3);
  memory->With({})->Set(1234);
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0}) latency->With({"/a"})->Observe(v);

  std::map<std::string, std::string> types;
  auto series = Parse(registry.Render(), &types);
  EXPECT_EQ(types["test_requests_total"], "counter");
  EXPECT_EQ(types["test_memory_bytes"], "gauge");
  EXPECT_EQ(types["test_latency_seconds"], "histogram");
  EXPECT_EQ(series["test_requests_total{route=\"/a\",status=\"200\"}"], 2);
  EXPECT_EQ(series["test_requests_total{route=\"/b/{id}\",status=\"404\"}"], 3);
  EXPECT_EQ(series["test_memory_bytes"], 1234);
  // Buckets are cumulative; le is inclusive (0.1 falls in le="0.1").
  EXPECT_EQ(series["test_latency_seconds_bucket{route=\"/a\",le=\"0.10000000000000001\"}"], 2);
  EXPECT_EQ(series["test_latency_seconds_bucket{route=\"/a\",le=\"1\"}"], 3);
  EXPECT_EQ(series["test_latency_seconds_bucket{route=\"/a\",le=\"10\"}"], 4);
  EXPECT_EQ(series["test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"}"], 5);
  EXPECT_EQ(series["test_latency_seconds_count{route=\"/a\"}"], 5);
  EXPECT_DOUBLE_EQ(series["test_latency_seconds_sum{route=\"/a\"}"], 22.65);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  MetricsRegistry registry;
  registry.AddCounter("test_total", "Help with \\ and\nnewline", {"v"})
      ->With({"a\"b\\c\nd"})
      ->Inc();
  const std::string text = registry.Render();
  EXPECT_NE(text.find("# HELP test_total Help with \\\\ and\\nnewline\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, SeriesPointersAreStableAndCountsExactUnderContention) {
  MetricsRegistry registry;
  auto* family = registry.AddCounter("test_total", "x", {"k"});
  Counter* first = family->With({"a"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([family, t] {
      for (int i = 0; i < 10000; ++i) {
        family->With({"a"})->Inc();
        family->With({"k" + std::to_string((i + t) % 50)})->Inc();  // creates series meanwhile
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(family->With({"a"}), first);
  EXPECT_EQ(first->Value(), 40000);
  double total = 0;
  for (int k = 0; k < 50; ++k) total += family->With({"k" + std::to_string(k)})->Value();
  EXPECT_EQ(total, 40000);
}

TEST(MetricsTest, ProcessMetricsAreFilled) {
  std::map<std::string, std::string> types;
  auto series = Parse(FstoreMetrics::Get().registry.Render(), &types);
  EXPECT_GT(series["process_resident_memory_bytes"], 0);
  EXPECT_GT(series["process_open_fds"], 2);
  EXPECT_GT(series["process_start_time_seconds"], 1.6e9);
  EXPECT_EQ(types["process_cpu_seconds_total"], "counter");
  EXPECT_EQ(types["fstore_http_request_duration_seconds"], "histogram");
}

TEST(MetricsTest, FormatsValues) {
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(0.5), "0.5");
  EXPECT_EQ(FormatMetricValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace fstore::monitoring
