#include "fstore/monitoring/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace fstore::monitoring {

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // Few bounds: a linear scan beats a binary search's branches.
  size_t i = 0;
  const size_t n = bounds_->size();
  while (i < n && value > (*bounds_)[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> bounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                          0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                          0.5,     1,      2.5,     5,      10};
  return bounds;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
std::string EscapeHelp(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}
}  // namespace

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  snapshots_.push_back(std::make_unique<Map>());
  map_.store(snapshots_.back().get(), std::memory_order_release);
}

void* FamilyBase::Find(std::initializer_list<std::string_view> values) {
  // The lookup key is built in a per-thread buffer: no allocation once warm.
  thread_local std::string key;
  key.clear();
  for (std::string_view v : values) {
    key.append(v);
    key += '\x1f';
  }
  const Map* map = map_.load(std::memory_order_acquire);
  if (auto it = map->find(key); it != map->end()) return it->second;

  std::lock_guard lock(mutex_);
  const Map* current = map_.load(std::memory_order_acquire);
  if (auto it = current->find(key); it != current->end()) return it->second;
  std::string labels;
  auto value = values.begin();
  for (size_t i = 0; i < label_names_.size(); ++i) {
    if (!labels.empty()) labels += ',';
    labels += label_names_[i] + "=\"" +
              EscapeLabelValue(value != values.end() ? *value++ : std::string_view()) + "\"";
  }
  void* series = NewSeries();
  auto next = std::make_unique<Map>(*current);
  next->emplace(key, series);
  order_.emplace_back(key, std::move(labels));
  map_.store(next.get(), std::memory_order_release);
  snapshots_.push_back(std::move(next));
  return series;
}

void FamilyBase::Render(std::string* out) const {
  static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
  *out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n";
  *out += "# TYPE " + name_ + " " + kTypeNames[static_cast<int>(type_)] + "\n";
  std::vector<std::pair<std::string, std::string>> order;
  {
    std::lock_guard lock(const_cast<std::mutex&>(mutex_));
    order = order_;
  }
  const Map* map = map_.load(std::memory_order_acquire);
  for (const auto& [key, labels] : order) {
    auto it = map->find(key);
    if (it != map->end()) RenderSeries(it->second, labels, out);
  }
}

template <>
void* Family<Counter>::NewSeries() {
  auto s = std::make_shared<Counter>();
  series_.push_back(s);
  return s.get();
}
template <>
void* Family<Gauge>::NewSeries() {
  auto s = std::make_shared<Gauge>();
  series_.push_back(s);
  return s.get();
}
template <>
void* Family<Histogram>::NewSeries() {
  auto s = std::make_shared<Histogram>(bounds_);
  series_.push_back(s);
  return s.get();
}

namespace {
std::string Braced(const std::string& labels) {
  return labels.empty() ? std::string() : "{" + labels + "}";
}
}  // namespace

template <>
void Family<Counter>::RenderSeries(const void* series, const std::string& labels,
                                   std::string* out) const {
  *out += name_ + Braced(labels) + " " +
          FormatMetricValue(static_cast<const Counter*>(series)->Value()) + "\n";
}
template <>
void Family<Gauge>::RenderSeries(const void* series, const std::string& labels,
                                 std::string* out) const {
  *out += name_ + Braced(labels) + " " +
          FormatMetricValue(static_cast<const Gauge*>(series)->Value()) + "\n";
}
template <>
void Family<Histogram>::RenderSeries(const void* series, const std::string& labels,
                                     std::string* out) const {
  const auto* h = static_cast<const Histogram*>(series);
  const std::vector<uint64_t> counts = h->CumulativeCounts();
  const std::string prefix = labels.empty() ? "" : labels + ",";
  for (size_t i = 0; i < counts.size(); ++i) {
    const std::string le = i < h->bounds().size() ? FormatMetricValue(h->bounds()[i]) : "+Inf";
    *out += name_ + "_bucket{" + prefix + "le=\"" + le + "\"} " + std::to_string(counts[i]) + "\n";
  }
  *out += name_ + "_sum" + Braced(labels) + " " + FormatMetricValue(h->Sum()) + "\n";
  *out += name_ + "_count" + Braced(labels) + " " + std::to_string(counts.back()) + "\n";
}

Family<Counter>* MetricsRegistry::AddCounter(std::string name, std::string help,
                                             std::vector<std::string> labels) {
  auto f = std::make_unique<Family<Counter>>(std::move(name), std::move(help),
                                             MetricType::kCounter, std::move(labels));
  auto* raw = f.get();
  std::lock_guard lock(mutex_);
  families_.push_back(std::move(f));
  return raw;
}

Family<Gauge>* MetricsRegistry::AddGauge(std::string name, std::string help,
                                         std::vector<std::string> labels, MetricType type) {
  auto f = std::make_unique<Family<Gauge>>(std::move(name), std::move(help), type,
                                           std::move(labels));
  auto* raw = f.get();
  std::lock_guard lock(mutex_);
  families_.push_back(std::move(f));
  return raw;
}

Family<Histogram>* MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                 std::vector<std::string> labels,
                                                 const std::vector<double>* bounds) {
  auto f = std::make_unique<Family<Histogram>>(std::move(name), std::move(help),
                                               MetricType::kHistogram, std::move(labels), bounds);
  auto* raw = f.get();
  std::lock_guard lock(mutex_);
  families_.push_back(std::move(f));
  return raw;
}

void MetricsRegistry::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string MetricsRegistry::Render() const {
  std::lock_guard lock(mutex_);
  for (const auto& collect : collectors_) collect();
  std::string out;
  for (const auto& f : families_) f->Render(&out);
  return out;
}

namespace {

double ProcessStartTimeSeconds() {
  // /proc/self/stat field 22 is the start time in clock ticks after boot;
  // /proc/stat's btime is the boot time in Unix seconds.
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  // Fields after the command: state is field 3, so start time is the 20th here.
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  const double ticks = std::strtod(field.c_str(), nullptr);
  std::ifstream proc_stat("/proc/stat");
  std::string line;
  double boot = 0;
  while (std::getline(proc_stat, line)) {
    if (line.rfind("btime ", 0) == 0) boot = std::strtod(line.c_str() + 6, nullptr);
  }
  return boot + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void CollectProcess(FstoreMetrics* m) {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  if (statm >> pages_total >> pages_resident) {
    m->resident_memory->Set(static_cast<double>(pages_resident) *
                            static_cast<double>(sysconf(_SC_PAGESIZE)));
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    m->cpu_seconds->Set(static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    int n = 0;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(dir);
    m->open_fds->Set(n - 1);  // not the directory handle counted above
  }
}

}  // namespace

FstoreMetrics::FstoreMetrics() {
  MetricsRegistry& r = registry;
  http_requests = r.AddCounter("fstore_http_requests_total",
                               "HTTP requests answered, by method, route pattern and status "
                               "(route=\"unmatched\" when no route matched)",
                               {"method", "route", "status"});
  http_request_duration = r.AddHistogram(
      "fstore_http_request_duration_seconds",
      "Time from a request's first byte to its response being handed to the socket",
      {"method", "route"});
  serving_cache_hits = r.AddCounter("fstore_serving_cache_hits_total",
                                    "Online records served from the serving cache")
                           ->With({});
  serving_cache_misses = r.AddCounter("fstore_serving_cache_misses_total",
                                      "Online records read from the store (cache enabled)")
                             ->With({});
  online_store_read_duration =
      r.AddHistogram("fstore_online_store_read_duration_seconds",
                     "Time one online request spent in the online store's reads", {})
          ->With({});
  serving_entities_requested =
      r.AddCounter("fstore_serving_entities_requested_total",
                   "Entity rows asked of online serving, per feature set asked")
          ->With({});
  serving_entities_found =
      r.AddCounter("fstore_serving_entities_found_total",
                   "Of the entity rows asked of online serving, those with a live record "
                   "(coverage = found / requested)")
          ->With({});
  materialization_jobs = r.AddCounter("fstore_materialization_jobs_total",
                                      "Materialization runs finished, by outcome", {"outcome"});
  materialization_rows = r.AddCounter(
      "fstore_materialization_rows_total",
      "Rows materialization read from sources, wrote to each store, or rejected", {"store"});
  materialization_rows_per_second =
      r.AddGauge("fstore_materialization_rows_per_second",
                 "Rows read per second by the last successful run of each feature set",
                 {"feature_set"});
  materialization_duration = r.AddGauge("fstore_materialization_job_duration_seconds",
                                        "Wall time of the last run of each feature set",
                                        {"feature_set"});
  materialization_last_success =
      r.AddGauge("fstore_materialization_last_success_timestamp_seconds",
                 "When the last successful run of each feature set finished (Unix time)",
                 {"feature_set"});
  materialization_cpu_seconds = r.AddCounter("fstore_materialization_cpu_seconds_total",
                                             "CPU time of materialization runs")
                                    ->With({});
  materialization_bytes_read = r.AddCounter("fstore_materialization_bytes_read_total",
                                            "Bytes materialization read from sources")
                                   ->With({});
  materialization_bytes_written =
      r.AddCounter("fstore_materialization_bytes_written_total",
                   "Bytes materialization wrote to the offline store")
          ->With({});
  resident_memory = r.AddGauge("process_resident_memory_bytes", "Resident memory size in bytes")
                        ->With({});
  cpu_seconds = r.AddGauge("process_cpu_seconds_total",
                           "Total user and system CPU time spent in seconds", {},
                           MetricType::kCounter)
                    ->With({});
  open_fds = r.AddGauge("process_open_fds", "Number of open file descriptors")->With({});
  start_time = r.AddGauge("process_start_time_seconds",
                          "Start time of the process since the Unix epoch in seconds")
                   ->With({});
  start_time->Set(ProcessStartTimeSeconds());
  r.AddCollector([this] { CollectProcess(this); });
}

FstoreMetrics& FstoreMetrics::Get() {
  static FstoreMetrics* metrics = new FstoreMetrics();
  return *metrics;
}

}  // namespace fstore::monitoring
