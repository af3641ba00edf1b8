#pragma once

// Per-run feature statistics (GET /monitoring/statistics): what one
// materialization run wrote for each feature, summarised so that runs in a
// period merge exactly where they can (count, nulls, min, max, mean, stddev,
// distinct-count registers) and drift between two runs is a number (PSI).
//
// The body stored per (run, feature) is JSON:
//   {"type": "numeric" | "categorical" | "other", "count", "null_count",
//    "null_rate", "distinct_estimate", "hll": "<hex registers>",
//    numeric: "min", "max", "mean", "stddev", "m2", "quantiles": {"p01".."p99"},
//             "histogram": {"edges": [11], "counts": [10]}, "sample_size",
//    categorical: "top_values": [{"value", "count"}] (most frequent first),
//    "drift": {"previous_job_id", "psi"} when a previous run existed}.
// `count` counts every row, nulls included; NaN and infinities count as
// nulls. Quantiles and the histogram are
// exact over up to kSampleSize non-null values per run; beyond that they come
// from a uniform reservoir sample of that many (sample_size says how many).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <arrow/api.h>
#include <boost/json/object.hpp>

#include "fstore/core/status.h"
#include "fstore/registry/operations.h"
#include "fstore/security/encryption.h"

namespace fstore::monitoring {

/// A HyperLogLog distinct-count sketch with 2^12 registers (standard error
/// about 1.6%), with the small-range (linear counting) correction. Written
/// here because no Debian package or Arrow function offers one whose
/// registers can be stored and merged (Arrow's count_distinct is exact and
/// per call; Apache DataSketches is not packaged in bookworm).
class HyperLogLog {
 public:
  static constexpr int kPrecision = 12;
  static constexpr size_t kRegisters = size_t{1} << kPrecision;

  HyperLogLog();
  /// Adds a value by its 64-bit hash (HashBytes / HashNumber: stable across
  /// processes, so stored registers of different runs merge).
  void AddHash(uint64_t hash);
  /// Register-wise max: the sketch of the union.
  void Merge(const HyperLogLog& other);
  double Estimate() const;
  /// 2 hex characters per register.
  std::string ToHex() const;
  static Result<HyperLogLog> FromHex(std::string_view hex);

 private:
  std::vector<uint8_t> registers_;
};

uint64_t HashBytes(std::string_view bytes);
uint64_t HashNumber(double value);

/// The population stability index of `actual` against `expected` (counts per
/// bin, same length): sum over bins of (a - e) * ln(a / e) on proportions,
/// each proportion floored at 1e-4 so that an empty bin gives a large but
/// finite term. 0 for identical distributions; above 0.2 is commonly read
/// as a significant shift.
double PopulationStabilityIndex(const std::vector<double>& expected,
                                const std::vector<double>& actual);

/// Accumulates one feature's values over the chunks of a run. Not thread-safe.
class FeatureStatisticsBuilder {
 public:
  static constexpr size_t kSampleSize = 100'000;
  static constexpr size_t kTopValues = 20;
  /// Distinct values counted exactly for top values and categorical drift;
  /// further new values count only in the sketch and the "other" category.
  static constexpr size_t kMaxCategories = 10'000;

  /// Numeric for integer and floating types, categorical for string and
  /// bool, "other" (counts only) for the rest.
  explicit FeatureStatisticsBuilder(const std::shared_ptr<arrow::DataType>& type);

  void Add(const arrow::ChunkedArray& values);
  void Add(const arrow::Array& values);

  /// The body (see the file comment); `previous`: the previous run's body of
  /// the same feature, to compute drift against (its bin edges, or its top
  /// values plus "other").
  boost::json::object Finish(const boost::json::object* previous,
                             std::string_view previous_job_id) const;

 private:
  enum class Kind { kNumeric, kCategorical, kOther };
  void AddNumber(double v);
  void AddCategory(std::string value);

  Kind kind_;
  int64_t count_ = 0;
  int64_t nulls_ = 0;
  // Numeric: Welford's running mean and sum of squared deviations.
  double min_ = 0, max_ = 0, mean_ = 0, m2_ = 0;
  int64_t numbers_ = 0;
  std::vector<double> sample_;
  std::mt19937_64 random_{42};  // fixed seed: a re-run gives the same body
  // Categorical.
  std::map<std::string, int64_t> categories_;
  int64_t other_ = 0;
  HyperLogLog hll_;
};

/// The statistics of one feature over several runs (oldest first), as GET
/// /monitoring/statistics answers them: exact merged count, nulls, min, max,
/// mean, stddev and merged distinct estimate; quantiles, histogram and top
/// values of the latest run; the latest run's drift flagged against
/// `psi_threshold`. `runs` are bodies with their job id and time.
struct StatisticsRun {
  std::string job_id;
  int64_t computed_at = 0;  ///< micros
  boost::json::object body;
};
boost::json::object MergeStatistics(const std::vector<StatisticsRun>& runs, double psi_threshold);

/// A run's statistics body as the registry stores it: the JSON, sealed with
/// `cipher` when encryption at rest is on (bound to the job and feature, so a
/// body cannot be swapped for another run's or feature's).
Result<std::string> SealStatisticsBody(const boost::json::object& body, const Cipher* cipher,
                                       const FeatureStatisticsRecord& record);
/// The body of a stored record, opened when sealed: Internal error when it is
/// sealed and `cipher` is null, or with another key, or not a JSON object.
Result<boost::json::object> OpenStatisticsBody(const FeatureStatisticsRecord& record,
                                               const Cipher* cipher);

}  // namespace fstore::monitoring
