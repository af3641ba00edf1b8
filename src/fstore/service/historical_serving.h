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

#include <memory>
#include <string>

#include <arrow/type_fwd.h>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/status.h"

namespace fstore {

class FeatureStore;

/// The retrieved table: entity_df columns (keys int64/utf8, the time column
/// timestamp[us, UTC], other columns int64, float64, bool or utf8 as their
/// JSON values are) then the features (their declared types).
Result<std::shared_ptr<arrow::RecordBatch>> ServeHistorical(FeatureStore* store,
                                                            const boost::json::value& body);

/// {"columns": [...], "data": [[...], ...]}; timestamps as ISO 8601 strings,
/// non-finite floats as null.
boost::json::object HistoricalTableToJson(const arrow::RecordBatch& table);

/// The table as an Arrow IPC stream (application/vnd.apache.arrow.stream).
Result<std::string> HistoricalTableToArrowStream(const arrow::RecordBatch& table);

}  // namespace fstore
