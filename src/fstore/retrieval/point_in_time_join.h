#pragma once

// Historical (point-in-time) feature retrieval for one feature set
// (ARCHITECTURE.md "Time semantics"): for each entity row (keys, t), the
// values of the feature set's offline row with the same keys and the greatest
// event time <= t -- not older than t - ttl when the feature set has a ttl,
// written (created time) no later than `as_of` when given -- or the feature's
// default_value when there is none (else null). Windowed features are
// computed at t itself from the feature set's source, so they are exact also
// between events; clock-reading features are re-evaluated with the clock at t
// from their stored inputs. Nothing later than t is ever used.
//
// The as-of join reads the offline store one date partition at a time, from
// the latest date needed backwards: an entity row matched in a partition is
// final (earlier partitions only hold earlier events), so the memory held is
// the entity rows, their matched rows and a few partitions (the one joined
// and two read ahead, on threads of the call's own: PointInTimeQuery::
// threads, which do not add to it) -- never the store. Only the key, time
// and requested feature columns are read. Windowed features read the source
// likewise, a chunk of days at a time, keeping only the asked entities' rows.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/offline/offline_store.h"

namespace fstore {


/// What to retrieve from one feature set.
struct PointInTimeQuery {
  /// The feature set's compiled plan (PlanMaterialization): its key columns,
  /// its features and how they are computed.
  const FeaturePlan* plan = nullptr;
  /// Names of features of the plan, in output order (no duplicates).
  std::vector<std::string> features;
  /// The entity rows' join keys: one column per plan->key_columns entry, by
  /// name, int64 or utf8 (the entity's value_type), no nulls. Other columns
  /// are ignored.
  std::shared_ptr<arrow::RecordBatch> entity_keys;
  /// The entity rows' times, UTC microseconds, no nulls; same length.
  std::shared_ptr<arrow::Int64Array> times;
  /// Time travel: only offline rows created at or before it (and source rows
  /// whose created_timestamp_field is at or before it, for windows).
  std::optional<TimestampMicros> as_of;
  /// Threads the join runs on, the calling thread included (fewer when the
  /// entity rows are too few to split); 0: one per core.
  int threads = 0;
};

/// One array per query.features entry, aligned with the entity rows (same
/// order, same length), of the feature's declared type (ArrowTypeOf).
/// Errors: a feature not in the plan, or one computed at read time from other
/// feature sets (plan->read_time_features), is InvalidArgument naming it
/// (field "features"); windowed features whose source cannot be read are
/// Unprocessable naming the source; an offline store failure is passed on.
Result<std::vector<std::shared_ptr<arrow::Array>>> RetrievePointInTime(
    OfflineStore* offline, const PointInTimeQuery& query);

/// `feature`'s `expression` over `rows` with the clock of row i at
/// `times[i]` (UTC microseconds, no nulls, same length): one evaluation per
/// distinct time (once when it does not read the clock), each checked
/// against the feature's declared type (CheckFeatureColumn). The result is
/// in row order. Errors are the
/// expression's, with field "features" and the feature's name in the message.
Result<std::shared_ptr<arrow::Array>> EvaluateWithClockAt(const CompiledExpression& expression,
                                                          const std::shared_ptr<arrow::RecordBatch>& rows,
                                                          const arrow::Int64Array& times,
                                                          const Feature& feature);

}  // namespace fstore
