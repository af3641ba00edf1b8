#pragma once

// The process-wide metrics registry behind GET /monitoring/metrics: counters,
// gauges and histograms with labels, rendered in the Prometheus text
// exposition format 0.0.4.
//
// Recording is lock-free: a series is a few relaxed atomics, and finding the
// series of a label set reads an immutable snapshot of the family's map
// (published with release/acquire; a new label set copies the map under the
// family's mutex, which only the first request of a route or a new feature
// set pays). Snapshots are never freed while the family lives, so a reader
// never races a writer. Families live as long as their registry; the default
// registry lives for the whole process.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fstore::monitoring {

/// A value that only goes up (events, seconds, bytes).
class Counter {
 public:
  void Inc(double amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// A value that is set (memory, last run's rate).
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Observations counted into fixed buckets (upper bounds, increasing; +Inf is
/// implicit), with their sum and count: enough to derive quantiles.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double value);
  /// Cumulative counts per bound, the last one for +Inf.
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound, then +Inf; not cumulative
  std::atomic<double> sum_{0};
};

/// Bucket bounds in seconds from 50 microseconds to 10 seconds (roughly
/// 1-2.5-5 per decade), for request and read latencies.
const std::vector<double>& LatencyBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

/// The series of one metric name, one per label value tuple.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  /// Appends HELP, TYPE and every series' lines.
  void Render(std::string* out) const;

 protected:
  /// The series for `values` (as many as label names; extra or missing ones
  /// are dropped or empty), created on first use.
  void* Find(std::initializer_list<std::string_view> values);
  virtual void* NewSeries() = 0;
  virtual void RenderSeries(const void* series, const std::string& labels,
                            std::string* out) const = 0;

  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;

 private:
  using Map = std::unordered_map<std::string, void*>;
  std::atomic<const Map*> map_;
  std::mutex mutex_;                        // guards creation (snapshots_, series)
  std::deque<std::unique_ptr<Map>> snapshots_;  // every published map, kept alive
  std::vector<std::pair<std::string, std::string>> order_;  // key, rendered labels
 protected:
  std::deque<std::shared_ptr<void>> series_;
};

template <typename Metric>
class Family : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> labels,
         const std::vector<double>* bounds = nullptr)
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)), bounds_(bounds) {}
  /// The series of these label values; the pointer stays valid for the
  /// family's life, so callers may keep it.
  Metric* With(std::initializer_list<std::string_view> values) {
    return static_cast<Metric*>(Find(values));
  }

 private:
  void* NewSeries() override;
  void RenderSeries(const void* series, const std::string& labels,
                    std::string* out) const override;
  const std::vector<double>* bounds_;
};

/// A set of families rendered together.
class MetricsRegistry {
 public:
  Family<Counter>* AddCounter(std::string name, std::string help,
                              std::vector<std::string> labels = {});
  /// `type` kCounter: a total read from elsewhere (CPU seconds from getrusage).
  Family<Gauge>* AddGauge(std::string name, std::string help,
                          std::vector<std::string> labels = {},
                          MetricType type = MetricType::kGauge);
  Family<Histogram>* AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> labels,
                                  const std::vector<double>* bounds = &LatencyBuckets());
  /// Runs before each Render (to refresh gauges read from the system).
  void AddCollector(std::function<void()> collect);
  /// The exposition text (format 0.0.4), families in the order added.
  std::string Render() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::vector<std::function<void()>> collectors_;
};

/// Escapes a label value: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view value);
/// A number as Prometheus writes it: integers without a fraction, NaN, +Inf, -Inf.
std::string FormatMetricValue(double value);

/// fstore's metrics, registered once in the process's registry.
struct FstoreMetrics {
  MetricsRegistry registry;
  Family<Counter>* http_requests;            ///< {method, route, status}
  Family<Histogram>* http_request_duration;  ///< {method, route}, seconds
  Counter* serving_cache_hits;
  Counter* serving_cache_misses;
  Histogram* online_store_read_duration;     ///< seconds per request
  Counter* serving_entities_requested;       ///< online
  Counter* serving_entities_found;           ///< online, with a live record
  Family<Counter>* materialization_jobs;     ///< {outcome}: succeeded | failed
  Family<Counter>* materialization_rows;     ///< {store}: offline | online | read | rejected
  Family<Gauge>* materialization_rows_per_second;  ///< {feature_set}, last successful run
  Family<Gauge>* materialization_duration;         ///< {feature_set}, last run, seconds
  Family<Gauge>* materialization_last_success;     ///< {feature_set}, unix seconds
  Counter* materialization_cpu_seconds;
  Counter* materialization_bytes_read;
  Counter* materialization_bytes_written;
  Gauge* resident_memory;
  Gauge* cpu_seconds;
  Gauge* open_fds;
  Gauge* start_time;

  /// The process's metrics (created on first use; never destroyed).
  static FstoreMetrics& Get();

 private:
  FstoreMetrics();
};

}  // namespace fstore::monitoring
