#pragma once

// POST /api/v1/serving/historical: training data as of each entity row's time.
//
// Request (the seed's shape):
//   {"feature_sets": ["user_profile", ...],
//    "entity_df": {"columns": ["user_id", "event_timestamp", ...],
//                  "data": [["user_123", "2024-01-01T10:00:00", ...], ...]},
//    "features": ["user_age", "user_profile:purchase_count", ...],
//    "as_of": "2024-02-01T00:00:00"}                      (optional)
// entity_df must hold every join key of the requested feature sets' entities
// (int keys as JSON integers or digit strings, string keys as strings) and a
// time column: `event_timestamp`, or `timestamp` when there is no
// `event_timestamp` (ISO 8601, UTC when no offset). Other columns pass through.
// A feature is named bare when exactly one requested feature set has it, else
// "feature_set:feature". `as_of` limits the offline rows to those created at
// or before it (time travel over re-materializations).
//
// Response: the entity_df's columns, then one column per requested feature
// (named as requested), one row per entity row in the request's order
// (duplicates kept); point-in-time semantics in retrieval/point_in_time_join.h.

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <arrow/type_fwd.h>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/compute/expression.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/registry/definitions.h"
#include "fstore/service/request_context.h"

namespace fstore {

class FeatureStore;

/// The feature half of a retrieval request -- "feature_sets", "features" and
/// "as_of" -- resolved against the registry and compiled. Shared by
/// historical and batch serving (batch_serving.h). Immutable once made, so
/// it may be used from any thread.
struct FeatureSelection {
  /// One requested feature set, compiled.
  struct Set {
    FeatureSet feature_set;
    std::vector<Feature> features;
    FeaturePlan plan;
    std::map<std::string, std::string> key_types;  ///< join key -> "int" | "string"
    std::vector<std::string> wanted;               ///< its requested features, output order
    std::vector<size_t> output_slot;  ///< wanted[i] -> index in feature_refs
    /// Requested derived features whose inputs live in other feature sets:
    /// never materialized, computed from their inputs' point-in-time values.
    struct Derived {
      Feature feature;
      size_t output_slot = 0;
      std::shared_ptr<const CompiledExpression> expression;
      struct Input {
        std::shared_ptr<const Set> set;  ///< the input's set, compiled
        std::string feature;             ///< its name there (and in the expression)
      };
      std::vector<Input> inputs;
    };
    std::vector<Derived> derived;
  };
  /// A join key the entity rows must hold.
  struct JoinKey {
    std::string column;
    std::string type;         ///< "int" | "string": the first set using it decides
    std::string feature_set;  ///< the name of that first set (for messages)
  };

  std::vector<Set> sets;
  /// The features as the request names them: the output columns, in order.
  std::vector<std::string> feature_refs;
  /// Time travel: only offline rows created at or before it.
  std::optional<TimestampMicros> as_of;

  /// Every join key of the selected sets, each once, in first-use order.
  std::vector<JoinKey> JoinKeys() const;
};

/// The body fields ResolveFeatureSelection reads.
inline constexpr const char* kFeatureSelectionFields[] = {"feature_sets", "features", "as_of"};

/// Parses and resolves "feature_sets", "features" and "as_of" of a request
/// body; other fields are the caller's to check. NotFound for an unknown
/// feature set; InvalidArgument naming the field ("features[2]", "as_of")
/// for an unknown, ambiguous or repeated feature or a bad timestamp;
/// Unprocessable (field "feature_sets") for a set without offline history.
/// PermissionDenied naming the first feature set (requested, or read for a
/// derived feature's input) that context.principal may not use. Fills
/// context.usage's sets (entities left 0: the caller counts the rows).
Result<FeatureSelection> ResolveFeatureSelection(FeatureStore* store,
                                                 const boost::json::object& body,
                                                 const RequestContext& context = {});

/// The entity rows' join key `column` as the type ("int": int64, "string":
/// utf8) a feature set's entity needs, no nulls; an error names the value at fault.
using EntityKeyColumnFn = std::function<Result<std::shared_ptr<arrow::Array>>(
    const std::string& column, const std::string& type)>;

/// Point-in-time values of every selected feature for `times.length()`
/// entity rows (UTC microseconds): one array per feature_refs entry, in that
/// order, aligned with the rows. Semantics: retrieval/point_in_time_join.h.
Result<std::vector<std::shared_ptr<arrow::Array>>> RetrieveFeatureSelection(
    FeatureStore* store, const FeatureSelection& selection,
    const std::shared_ptr<arrow::Int64Array>& times, const EntityKeyColumnFn& key_column);

/// The retrieved table: entity_df columns (keys int64/utf8, the time column
/// timestamp[us, UTC], other columns int64, float64, bool or utf8 as their
/// JSON values are) then the features (their declared types).
Result<std::shared_ptr<arrow::RecordBatch>> ServeHistorical(FeatureStore* store,
                                                            const boost::json::value& body,
                                                            const RequestContext& context = {});

/// Where entity rows come from, for errors: the field to name and the label
/// of a row ("entity_source.path" and "entity_source row 12 (column 'x')").
struct EntityRowsOrigin {
  std::string field;
  std::string label;
};

/// Types usable as a join key column (integers, strings) and as the time
/// column (timestamps, dates, ISO 8601 strings) of entity rows.
bool IsEntityKeyType(const arrow::DataType& type);
bool IsEntityTimeType(const arrow::DataType& type);

/// One table of entity rows joined: its columns unchanged, then the selected
/// features. `time_column` names its time column; row numbers in errors count
/// from `first_row`. Errors: a null key or time, an unparseable time or
/// integer key (InvalidArgument on origin.field, naming the row).
Result<std::shared_ptr<arrow::RecordBatch>> JoinEntityBatch(FeatureStore* store,
                                                            const FeatureSelection& selection,
                                                            const std::string& time_column,
                                                            const arrow::RecordBatch& batch,
                                                            int64_t first_row,
                                                            const EntityRowsOrigin& origin);

/// POST /api/v1/serving/historical with the entity rows as an Arrow IPC
/// stream (Content-Type application/vnd.apache.arrow.stream) or a Parquet
/// file (application/vnd.apache.parquet) body; "feature_sets", "features"
/// and "as_of" come from the query string (comma-separated lists). The time
/// column is event_timestamp, else timestamp. Returns JoinEntityBatch's table.
Result<std::shared_ptr<arrow::RecordBatch>> ServeHistoricalTable(
    FeatureStore* store, const std::map<std::string, std::string>& query, std::string_view body,
    std::string_view content_type,
    const RequestContext& context = {});

/// {"columns": [...], "data": [[...], ...]}; timestamps as ISO 8601 strings,
/// non-finite floats as null.
boost::json::object HistoricalTableToJson(const arrow::RecordBatch& table);

/// The table as an Arrow IPC stream (application/vnd.apache.arrow.stream).
Result<std::string> HistoricalTableToArrowStream(const arrow::RecordBatch& table);

}  // namespace fstore
