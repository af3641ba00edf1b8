#include "fstore/monitoring/feature_statistics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include <arrow/compute/api.h>
#include <boost/json/array.hpp>

#include "fstore/core/json_text.h"
#include "fstore/core/text.h"
#include "fstore/core/time.h"
#include "fstore/registry/codec.h"

namespace fstore::monitoring {
namespace json = boost::json;

namespace {

uint64_t Mix(uint64_t x) {
  // splitmix64's finalizer: every input bit reaches every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

double Number(const json::object& o, std::string_view key, double fallback = 0) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_number()) return fallback;
  return it->value().to_number<double>();
}

int64_t Int(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_number()) return 0;
  return it->value().to_number<int64_t>();
}

std::string_view String(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return it->value().as_string();
}

json::value NumberOrNull(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

double Quantile(const std::vector<double>& sorted, double q) {
  // numpy's default ("linear") interpolation between closest ranks.
  const double index = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(index));
  const size_t hi = static_cast<size_t>(std::ceil(index));
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (index - static_cast<double>(lo));
}

}  // namespace

uint64_t HashBytes(std::string_view bytes) {
  // FNV-1a over the bytes, then mixed: stable across processes and builds.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

uint64_t HashNumber(double value) {
  if (value == 0) value = 0;  // -0 and 0 are one value
  return Mix(std::bit_cast<uint64_t>(value) ^ 0x9e3779b97f4a7c15ULL);
}

HyperLogLog::HyperLogLog() : registers_(kRegisters, 0) {}

void HyperLogLog::AddHash(uint64_t hash) {
  const size_t index = hash >> (64 - kPrecision);
  const uint64_t rest = (hash << kPrecision) | (uint64_t{1} << (kPrecision - 1));
  const uint8_t rank = static_cast<uint8_t>(std::countl_zero(rest) + 1);
  if (rank > registers_[index]) registers_[index] = rank;
}

void HyperLogLog::Merge(const HyperLogLog& other) {
  for (size_t i = 0; i < kRegisters; ++i) {
    registers_[i] = std::max(registers_[i], other.registers_[i]);
  }
}

double HyperLogLog::Estimate() const {
  const double m = static_cast<double>(kRegisters);
  double sum = 0;
  size_t zeros = 0;
  for (uint8_t r : registers_) {
    sum += std::ldexp(1.0, -r);
    if (r == 0) ++zeros;
  }
  const double alpha = 0.7213 / (1 + 1.079 / m);
  const double raw = alpha * m * m / sum;
  if (raw <= 2.5 * m && zeros > 0) {
    return m * std::log(m / static_cast<double>(zeros));  // linear counting
  }
  return raw;
}

std::string HyperLogLog::ToHex() const {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(registers_.data()), kRegisters));
}

Result<HyperLogLog> HyperLogLog::FromHex(std::string_view hex) {
  if (hex.size() != kRegisters * 2) {
    return InvalidArgument("hll", "expected " + std::to_string(kRegisters * 2) +
                                      " hex characters, got " + std::to_string(hex.size()));
  }
  std::optional<std::string> bytes = HexDecode(hex);
  if (!bytes) return InvalidArgument("hll", "not a hex string");
  HyperLogLog out;
  std::memcpy(out.registers_.data(), bytes->data(), kRegisters);
  return out;
}

double PopulationStabilityIndex(const std::vector<double>& expected,
                                const std::vector<double>& actual) {
  double e_total = 0, a_total = 0;
  for (double e : expected) e_total += e;
  for (double a : actual) a_total += a;
  if (e_total <= 0 || a_total <= 0 || expected.size() != actual.size()) return 0;
  constexpr double kFloor = 1e-4;
  double psi = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double e = std::max(expected[i] / e_total, kFloor);
    const double a = std::max(actual[i] / a_total, kFloor);
    psi += (a - e) * std::log(a / e);
  }
  return psi;
}

FeatureStatisticsBuilder::FeatureStatisticsBuilder(const std::shared_ptr<arrow::DataType>& type) {
  if (arrow::is_integer(type->id()) || arrow::is_floating(type->id())) {
    kind_ = Kind::kNumeric;
  } else if (type->id() == arrow::Type::STRING || type->id() == arrow::Type::LARGE_STRING ||
             type->id() == arrow::Type::BOOL) {
    kind_ = Kind::kCategorical;
  } else {
    kind_ = Kind::kOther;
  }
}

void FeatureStatisticsBuilder::Add(const arrow::ChunkedArray& values) {
  for (const auto& chunk : values.chunks()) Add(*chunk);
}

void FeatureStatisticsBuilder::AddNumber(double v) {
  if (!std::isfinite(v)) {
    // NaN counts as missing, as in pandas; so do infinities, which would
    // make the mean, the bins and the JSON meaningless.
    ++nulls_;
    return;
  }
  if (numbers_ == 0) {
    min_ = max_ = v;
  } else {
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  ++numbers_;
  const double delta = v - mean_;
  mean_ += delta / static_cast<double>(numbers_);
  m2_ += delta * (v - mean_);
  hll_.AddHash(HashNumber(v));
  // Reservoir sampling (Algorithm R): every value is kept with equal chance.
  if (sample_.size() < kSampleSize) {
    sample_.push_back(v);
  } else {
    std::uniform_int_distribution<int64_t> pick(0, numbers_ - 1);
    const int64_t slot = pick(random_);
    if (slot < static_cast<int64_t>(kSampleSize)) sample_[static_cast<size_t>(slot)] = v;
  }
}

void FeatureStatisticsBuilder::AddCategory(std::string value) {
  hll_.AddHash(HashBytes(value));
  auto it = categories_.find(value);
  if (it != categories_.end()) {
    ++it->second;
  } else if (categories_.size() < kMaxCategories) {
    categories_.emplace(std::move(value), 1);
  } else {
    ++other_;
  }
}

void FeatureStatisticsBuilder::Add(const arrow::Array& values) {
  count_ += values.length();
  switch (kind_) {
    case Kind::kNumeric: {
      nulls_ += values.null_count();
      // Unsafe: integers beyond 2^53 are rounded, not refused.
      auto cast = arrow::compute::Cast(values, arrow::float64(),
                                       arrow::compute::CastOptions::Unsafe());
      if (!cast.ok()) {  // not expected for numeric types: count them as missing
        nulls_ += values.length() - values.null_count();
        return;
      }
      const auto& doubles = static_cast<const arrow::DoubleArray&>(**cast);
      for (int64_t i = 0; i < doubles.length(); ++i) {
        if (doubles.IsValid(i)) AddNumber(doubles.Value(i));
      }
      break;
    }
    case Kind::kCategorical: {
      nulls_ += values.null_count();
      if (values.type_id() == arrow::Type::BOOL) {
        const auto& bools = static_cast<const arrow::BooleanArray&>(values);
        for (int64_t i = 0; i < bools.length(); ++i) {
          if (bools.IsValid(i)) AddCategory(bools.Value(i) ? "true" : "false");
        }
      } else if (values.type_id() == arrow::Type::STRING) {
        const auto& strings = static_cast<const arrow::StringArray&>(values);
        for (int64_t i = 0; i < strings.length(); ++i) {
          if (strings.IsValid(i)) AddCategory(std::string(strings.GetView(i)));
        }
      } else {
        const auto& strings = static_cast<const arrow::LargeStringArray&>(values);
        for (int64_t i = 0; i < strings.length(); ++i) {
          if (strings.IsValid(i)) AddCategory(std::string(strings.GetView(i)));
        }
      }
      break;
    }
    case Kind::kOther:
      nulls_ += values.null_count();
      break;
  }
}

json::object FeatureStatisticsBuilder::Finish(const json::object* previous,
                                              std::string_view previous_job_id) const {
  json::object o;
  o["type"] = kind_ == Kind::kNumeric ? "numeric" : kind_ == Kind::kCategorical ? "categorical"
                                                                                 : "other";
  o["count"] = count_;
  o["null_count"] = nulls_;
  o["null_rate"] = count_ > 0 ? static_cast<double>(nulls_) / static_cast<double>(count_) : 0.0;
  if (kind_ == Kind::kOther) return o;
  o["distinct_estimate"] = static_cast<int64_t>(std::llround(hll_.Estimate()));
  o["hll"] = hll_.ToHex();
  std::optional<double> psi;
  if (kind_ == Kind::kNumeric) {
    o["min"] = numbers_ > 0 ? json::value(min_) : json::value(nullptr);
    o["max"] = numbers_ > 0 ? json::value(max_) : json::value(nullptr);
    o["mean"] = numbers_ > 0 ? json::value(mean_) : json::value(nullptr);
    o["m2"] = m2_;
    // Sample standard deviation (ddof 1, as pandas' std).
    o["stddev"] = numbers_ > 1 ? json::value(std::sqrt(m2_ / static_cast<double>(numbers_ - 1)))
                               : json::value(nullptr);
    o["sample_size"] = static_cast<int64_t>(sample_.size());
    std::vector<double> sorted = sample_;
    std::sort(sorted.begin(), sorted.end());
    json::object quantiles;
    json::object histogram;
    if (!sorted.empty()) {
      for (auto [name, q] : {std::pair{"p01", 0.01}, {"p05", 0.05}, {"p25", 0.25}, {"p50", 0.5},
                             {"p75", 0.75}, {"p95", 0.95}, {"p99", 0.99}}) {
        quantiles[name] = Quantile(sorted, q);
      }
      // 10 equal-width bins over [min, max], the last one closed (numpy's
      // histogram; a single value gets [v - 0.5, v + 0.5] as numpy does).
      double lo = min_, hi = max_;
      if (lo == hi) {
        lo -= 0.5;
        hi += 0.5;
      }
      json::array edges, counts;
      std::vector<int64_t> bins(10, 0);
      for (int i = 0; i <= 10; ++i) edges.emplace_back(lo + (hi - lo) * i / 10.0);
      for (double v : sorted) {
        int b = static_cast<int>((v - lo) / (hi - lo) * 10);
        bins[static_cast<size_t>(std::clamp(b, 0, 9))]++;
      }
      for (int64_t c : bins) counts.emplace_back(c);
      histogram["edges"] = std::move(edges);
      histogram["counts"] = std::move(counts);
    }
    o["quantiles"] = std::move(quantiles);
    o["histogram"] = std::move(histogram);
    // Drift on the previous run's bins, its outer bins open-ended.
    if (previous && String(*previous, "type") == "numeric" && !sorted.empty()) {
      auto h = previous->find("histogram");
      if (h != previous->end() && h->value().is_object()) {
        const json::object& ph = h->value().as_object();
        auto e = ph.find("edges");
        auto c = ph.find("counts");
        if (e != ph.end() && c != ph.end() && e->value().is_array() && c->value().is_array() &&
            e->value().as_array().size() == c->value().as_array().size() + 1) {
          std::vector<double> edge_values, expected;
          for (const auto& v : e->value().as_array()) edge_values.push_back(v.to_number<double>());
          for (const auto& v : c->value().as_array()) expected.push_back(v.to_number<double>());
          std::vector<double> actual(expected.size(), 0);
          for (double v : sorted) {
            size_t b = static_cast<size_t>(
                std::upper_bound(edge_values.begin() + 1, edge_values.end() - 1, v) -
                (edge_values.begin() + 1));
            actual[b] += 1;
          }
          psi = PopulationStabilityIndex(expected, actual);
        }
      }
    }
  } else {
    std::vector<std::pair<std::string, int64_t>> top(categories_.begin(), categories_.end());
    std::stable_sort(top.begin(), top.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    json::array top_values;
    for (size_t i = 0; i < top.size() && i < kTopValues; ++i) {
      top_values.emplace_back(json::object{{"value", top[i].first}, {"count", top[i].second}});
    }
    o["top_values"] = std::move(top_values);
    // Drift over the previous run's top values plus everything else.
    if (previous && String(*previous, "type") == "categorical") {
      auto t = previous->find("top_values");
      if (t != previous->end() && t->value().is_array()) {
        std::vector<double> expected, actual;
        double expected_rest = static_cast<double>(Int(*previous, "count") -
                                                   Int(*previous, "null_count"));
        double actual_rest = static_cast<double>(count_ - nulls_);
        for (const auto& item : t->value().as_array()) {
          if (!item.is_object()) continue;
          const double e = Number(item.as_object(), "count");
          auto found = categories_.find(std::string(String(item.as_object(), "value")));
          const double a = found == categories_.end() ? 0 : static_cast<double>(found->second);
          expected.push_back(e);
          actual.push_back(a);
          expected_rest -= e;
          actual_rest -= a;
        }
        expected.push_back(std::max(0.0, expected_rest));
        actual.push_back(std::max(0.0, actual_rest));
        if (count_ - nulls_ > 0) psi = PopulationStabilityIndex(expected, actual);
      }
    }
  }
  if (psi) {
    o["drift"] = json::object{{"previous_job_id", previous_job_id}, {"psi", *psi}};
  }
  return o;
}

json::object MergeStatistics(const std::vector<StatisticsRun>& runs, double psi_threshold) {
  json::object out;
  if (runs.empty()) return out;
  const json::object& latest = runs.back().body;
  const std::string_view type = String(latest, "type");
  int64_t count = 0, nulls = 0, numbers = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double mean = 0, m2 = 0;
  std::optional<HyperLogLog> hll;
  for (const StatisticsRun& run : runs) {
    const json::object& b = run.body;
    count += Int(b, "count");
    nulls += Int(b, "null_count");
    if (String(b, "type") != type) continue;  // a type change: only counts merge
    if (auto h = HyperLogLog::FromHex(String(b, "hll")); h.ok()) {
      if (hll) {
        hll->Merge(*h);
      } else {
        hll = *h;
      }
    }
    if (type != "numeric") continue;
    const int64_t n = Int(b, "count") - Int(b, "null_count");
    if (n <= 0) continue;
    min = std::min(min, Number(b, "min", min));
    max = std::max(max, Number(b, "max", max));
    // Chan et al.'s pairwise update: exact mean and sum of squared deviations.
    const double run_mean = Number(b, "mean");
    const double delta = run_mean - mean;
    const int64_t total = numbers + n;
    mean += delta * static_cast<double>(n) / static_cast<double>(total);
    m2 += Number(b, "m2") +
          delta * delta * static_cast<double>(numbers) * static_cast<double>(n) /
              static_cast<double>(total);
    numbers = total;
  }
  out["type"] = type;
  out["runs"] = static_cast<int64_t>(runs.size());
  out["count"] = count;
  out["null_count"] = nulls;
  out["null_rate"] = count > 0 ? static_cast<double>(nulls) / static_cast<double>(count) : 0.0;
  if (hll) out["distinct_estimate"] = static_cast<int64_t>(std::llround(hll->Estimate()));
  if (type == "numeric") {
    out["min"] = numbers > 0 ? NumberOrNull(min) : json::value(nullptr);
    out["max"] = numbers > 0 ? NumberOrNull(max) : json::value(nullptr);
    out["mean"] = numbers > 0 ? json::value(mean) : json::value(nullptr);
    out["stddev"] = numbers > 1 ? json::value(std::sqrt(m2 / static_cast<double>(numbers - 1)))
                                : json::value(nullptr);
  }
  for (const char* key : {"quantiles", "histogram", "top_values", "sample_size"}) {
    if (auto it = latest.find(key); it != latest.end()) out[key] = it->value();
  }
  out["latest_job_id"] = runs.back().job_id;
  out["latest_computed_at"] = FormatTimestamp(runs.back().computed_at);
  if (auto d = latest.find("drift"); d != latest.end() && d->value().is_object()) {
    json::object drift = d->value().as_object();
    const double psi = Number(drift, "psi");
    drift["threshold"] = psi_threshold;
    drift["drifted"] = psi > psi_threshold;
    out["drift"] = std::move(drift);
  } else {
    out["drift"] = nullptr;
  }
  return out;
}

namespace {
std::string StatisticsAssociatedData(const FeatureStatisticsRecord& record) {
  return "fstore.feature_statistics/" + record.job_id + "/" + record.feature;
}
}  // namespace

Result<std::string> SealStatisticsBody(const json::object& body, const Cipher* cipher,
                                       const FeatureStatisticsRecord& record) {
  std::string text = SerializeJson(body);
  if (!cipher) return text;
  return cipher->Seal(text, StatisticsAssociatedData(record));
}

Result<json::object> OpenStatisticsBody(const FeatureStatisticsRecord& record,
                                        const Cipher* cipher) {
  std::string body = record.body;
  if (Cipher::LooksSealed(body)) {
    if (!cipher) {
      return Internal("statistics of " + record.feature_set_name + ":" + record.feature +
                      " are encrypted and this server has no encryption key");
    }
    ARROW_ASSIGN_OR_RAISE(body, cipher->Open(body, StatisticsAssociatedData(record)));
  }
  ARROW_ASSIGN_OR_RAISE(json::value v, ParseJson(body));
  if (!v.is_object()) return Internal("a stored statistics body is not a JSON object");
  return std::move(v.as_object());
}

}  // namespace fstore::monitoring
