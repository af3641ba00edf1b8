#pragma once

// Reads a feature set's source rows for a run: only the columns the features
// need, only the event-time range asked (pushed into the Parquet/CSV reader,
// or into PostgreSQL's WHERE, where the column's type allows), with the
// timestamp columns normalised to timestamp[us, UTC]. File sources are read
// with Arrow datasets; postgres sources by materialize/postgres_source.h.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/registry/definitions.h"

namespace fstore {

struct SourceReadStats {
  int64_t rows = 0;
  int64_t bytes = 0;  ///< in-memory size of the columns read
};

/// A row expression the source computes instead of the engine (pushdown; a
/// postgres source only): `sql` (a feature's transformation) comes back as
/// the column `column`.
struct SourceExpression {
  std::string column;
  std::string sql;
};

/// Rows of `feature_set`'s source whose timestamp_field lies in [start, end),
/// projected to `columns` (which must include the timestamp fields), then the
/// `computed` columns (postgres sources only; see postgres_source.h). The
/// timestamp_field (and created_timestamp_field) come back as
/// timestamp[us, UTC]; a timezone-less timestamp or a date is taken as UTC; a
/// string column is parsed as ISO 8601. Errors name the column: a missing
/// column or an unusable timestamp type is Unprocessable; a source with no
/// file is Unprocessable on source.path.
Result<std::shared_ptr<arrow::Table>> ReadSourceRange(const FeatureSet& feature_set,
                                                      const std::vector<std::string>& columns,
                                                      TimestampMicros start, TimestampMicros end,
                                                      SourceReadStats* stats,
                                                      const std::vector<SourceExpression>& computed = {});

/// The earliest event time in the source, or nullopt when it has no rows
/// (file and postgres sources).
Result<std::optional<TimestampMicros>> EarliestSourceEvent(const FeatureSet& feature_set);

/// Casts a timestamp/date/ISO-string column to timestamp[us, UTC] micros;
/// `column` names it in errors.
Result<std::shared_ptr<arrow::Array>> NormaliseTimestamps(const std::shared_ptr<arrow::Array>& values,
                                                          const std::string& column);

}  // namespace fstore
