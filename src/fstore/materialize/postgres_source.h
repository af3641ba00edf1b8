#pragma once

// Reads the rows of a feature set whose source is PostgreSQL
// (compute/postgres_client.h has the definition, the session and the types).
//
// A read is one read-only transaction holding a server-side cursor:
//   DECLARE fstore_rows NO SCROLL CURSOR FOR
//     SELECT q."c1", q."c2", (<expr>) AS "__fstore_<feature>"
//     FROM (<query>) AS q                     -- or the quoted table
//     WHERE q."<timestamp_field>" >= $1 AND q."<timestamp_field>" < $2
//   FETCH FORWARD <fetch_rows> FROM fstore_rows   -- until it returns no row
// with binary results, each FETCH decoded into one Arrow record batch: libpq
// holds one fetch of rows at a time, never the whole result. The range is
// bound as parameters of the column's own type (timestamptz, or timestamp for
// timestamp and date columns), so PostgreSQL filters -- and can use an index --
// and rows outside it are never read or computed. A timestamp_field of another
// type (ISO 8601 text) is not filtered in SQL: the caller filters the rows.
//
// Pushdown: with `"pushdown": true` on the source, features that are plain
// row expressions (PlannedFeature::kScalar that read no clock) are computed by
// PostgreSQL in the SELECT list instead of by the embedded engine, when the
// results are the same by construction: every input column has a type both
// evaluate alike (boolean, integer, bigint, double precision, text, varchar,
// date, timestamptz, and timestamp when it is not a time field -- the engine
// reads time fields as timestamptz), and PostgreSQL's result type is the
// engine's (PlanPostgresPushdown checks it with a LIMIT 0 query per feature).
// The engine reproduces PostgreSQL's semantics, errors included (division by
// zero fails the run in both), so a pushed feature's values equal the
// embedded ones; postgres_source_test.cc compares them.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/materialize/source_reader.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// Rows per FETCH (one Arrow batch) when a read does not say.
inline constexpr int64_t kPostgresFetchRows = 65536;

/// What to read from a postgres source.
struct PostgresScan {
  std::vector<std::string> columns;       ///< source columns, by name
  std::vector<SourceExpression> computed;  ///< pushed-down expressions, after the columns
  /// The column the range applies to; empty: every row.
  std::string time_column;
  TimestampMicros start = 0;  ///< inclusive, UTC micros
  TimestampMicros end = 0;    ///< exclusive
  int64_t fetch_rows = kPostgresFetchRows;
};

/// Streams the rows: `consume` gets one batch per FETCH, at least once (an
/// empty batch when no row matches, so the schema is known). Columns come in
/// `columns` then `computed` order, typed as postgres_client.h maps them
/// (a type read as text: utf8). Errors: a missing column is Unprocessable on
/// "source"; SQL errors (a dropped table, an expression PostgreSQL refuses)
/// Unprocessable on source.query / source.table / transformation; connection
/// problems Unavailable.
Status ScanPostgresSource(
    const SourceDefinition& source, const PostgresScan& scan,
    const std::function<Status(const std::shared_ptr<arrow::RecordBatch>&)>& consume);

/// ScanPostgresSource's batches as a table (one chunk per FETCH).
Result<std::shared_ptr<arrow::Table>> ReadPostgresSource(const SourceDefinition& source,
                                                         const PostgresScan& scan);

/// Whether the range of `time_column` (of the source schema `schema`) is
/// filtered by PostgreSQL: a timestamp, timestamptz or date column.
bool PostgresFiltersRange(const arrow::Schema& schema, const std::string& time_column);

/// The earliest value of the feature set's timestamp_field (min() in SQL),
/// or nullopt when the source has no rows.
Result<std::optional<TimestampMicros>> EarliestPostgresEvent(const FeatureSet& feature_set);

/// Marks the plan's pushable features (see the top of this file) with
/// source_column "__fstore_<feature>". Needs the server (a LIMIT 0 query per
/// candidate); a feature PostgreSQL cannot describe stays in the engine.
/// Does nothing unless the source is postgres with pushdown on.
Status PlanPostgresPushdown(FeaturePlan* plan, const std::shared_ptr<arrow::Schema>& source_schema);

/// The expressions a plan's pushed-down features ask the source to compute.
std::vector<SourceExpression> PushedDownExpressions(const FeaturePlan& plan);

}  // namespace fstore
