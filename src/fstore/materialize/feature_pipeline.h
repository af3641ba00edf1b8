#pragma once

// The compute half of a materialization run, without I/O: from source rows to
// the offline rows and the online rows of a feature set (ARCHITECTURE.md
// "Materialization, step by step": transformations -> window aggregations ->
// derived features -> validation).

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>
#include <boost/json/object.hpp>

#include "fstore/compute/expression.h"
#include "fstore/compute/transformation.h"
#include "fstore/compute/window.h"
#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// How one feature is computed.
struct PlannedFeature {
  enum class Kind {
    kColumn,   ///< the source column of its name
    kScalar,   ///< a row expression over source columns
    kWindow,   ///< a windowed aggregate (at each event time; at the end time online)
    kDerived,  ///< an expression over other features of the set, after them
  };
  Feature feature;
  Kind kind = Kind::kColumn;
  std::optional<CompiledExpression> expression;  ///< kScalar, kDerived; kWindow: its argument
  std::optional<WindowSpec> window;              ///< kWindow
  bool reads_clock = false;
  /// kScalar computed by the source instead (pushdown, postgres_source.h):
  /// the source column holding its values; empty: the engine evaluates it.
  std::string source_column;
};

/// A feature set's compiled materialization: what to read and how to compute.
struct FeaturePlan {
  FeatureSet feature_set;
  std::vector<std::string> key_columns;  ///< the entities' join keys, in order
  /// Evaluation order: columns and scalars, then windows, then derived
  /// features (inputs first).
  std::vector<PlannedFeature> features;
  /// What to read from the source; with a Python transformation, what to
  /// take from its result (the source is then read whole: python_step.h).
  std::vector<std::string> source_columns;
  /// Source columns that clock-reading transformations use, stored alongside
  /// (as "__src__<column>") so reads can re-evaluate them at their own time.
  std::vector<std::string> clock_inputs;
  int64_t max_window_micros = 0;  ///< the look-back a run must read
  /// Derived features whose inputs live in other feature sets: computed at
  /// read time, not materialized.
  std::vector<std::string> read_time_features;
};

/// Compiles a feature set's live features against its source schema (and
/// the output columns of its Python transformation, if any).
/// Unprocessable/InvalidArgument errors name the feature.
Result<FeaturePlan> PlanMaterialization(const FeatureSet& feature_set,
                                        const std::vector<Feature>& features,
                                        const std::vector<Entity>& entities,
                                        const std::shared_ptr<arrow::Schema>& source_schema);

/// One rule's failures for one feature, for the job's quality report.
struct QualityCounter {
  int64_t count = 0;
  boost::json::array samples;  ///< a few failing rows: keys, event time, value
};

struct ComputedFeatures {
  /// Rows with event time in [start, end): key columns, event_timestamp,
  /// created_timestamp, the feature columns (declared types), clock inputs.
  std::shared_ptr<arrow::Table> offline;
  /// The latest valid row per entity (event time < end), windowed features
  /// evaluated at `end`; same columns as `offline`.
  std::shared_ptr<arrow::Table> online;
  /// {"feature": {"rule": {"count": n, "samples": [...]}}} over rows in [start, end).
  boost::json::object quality_report;
  int64_t rows_rejected = 0;  ///< rows dropped or values nulled by the policy
  bool failed_validation = false;  ///< on_invalid = fail and something failed
};

/// What one chunk of a run hands to the next, so that a chunk reads and
/// computes only its own rows (peak memory is a chunk plus this, whatever the
/// source's length): the window inputs of the longest window's look-back, and
/// each of those entities' latest kept output row (the online store gets it
/// again, its windows evaluated at the next chunk's end, as they decay).
/// Exact windows need the events of the look-back; only their keys, times and
/// evaluated arguments are kept, not the source rows.
struct WindowCarry {
  /// The carry holds events with time in [until - max_window, until); it is
  /// used by the chunk that starts at `until`.
  TimestampMicros until = std::numeric_limits<TimestampMicros>::min();
  std::vector<std::shared_ptr<arrow::Array>> keys;  ///< plan.key_columns order
  std::shared_ptr<arrow::Int64Array> times;         ///< event times, UTC micros
  /// Consecutive ids 0..K-1, one per entity; rows grouped by entity, each
  /// entity's rows in time order.
  std::shared_ptr<arrow::Int64Array> groups;
  /// One evaluated window argument per window feature, in plan order.
  std::vector<std::shared_ptr<arrow::Array>> arguments;
  /// Output rows (ComputedFeatures::online's schema); last_row_of_group[k] is
  /// entity k's latest kept row in it, or -1.
  std::shared_ptr<arrow::RecordBatch> last_rows;
  std::vector<int64_t> last_row_of_group;
  /// The run's end, set by the caller. Chunks before it write the online
  /// record of a carried entity without events of its own only when its
  /// windows become empty; the chunk ending at run_end writes them all. (The
  /// default writes them all in every chunk.)
  TimestampMicros run_end = std::numeric_limits<TimestampMicros>::min();

  int64_t num_rows() const;
};

/// Computes the features of `source` rows. `clock` is the value of clock
/// functions (the run's end, never the wall clock); `created_time` fills
/// created_timestamp when the feature set has no created_timestamp_field.
///
/// Without a usable carry (`carry` null, or carry->until != start), `source`
/// must hold the window look-back too: rows from start - max_window_micros.
/// With a carry whose `until` is `start`, `source` holds only rows of
/// [start, end) and the carry stands in for the look-back. When `carry` is
/// not null it is replaced by the carry for the chunk starting at `end`.
/// Either way the results are the same.
Result<ComputedFeatures> ComputeFeatures(const FeaturePlan& plan,
                                         const std::shared_ptr<arrow::Table>& source,
                                         TimestampMicros start, TimestampMicros end,
                                         TimestampMicros clock, TimestampMicros created_time,
                                         WindowCarry* carry = nullptr);

}  // namespace fstore
