#pragma once

// The schema of a feature set's source, read when the feature set is defined
// so that column references are checked then, not at the first run.

#include <memory>

#include <arrow/dataset/type_fwd.h>
#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// The schema of a file source (a Parquet or CSV file, a directory of them, or
/// a glob), read with Arrow datasets from the files' metadata / CSV header, or
/// of a postgres source, from its query's result columns (postgres_client.h:
/// `SELECT * FROM (<query>) AS q LIMIT 0`, types mapped as described there).
/// Returns null when the schema cannot be known yet: a push source, a path
/// that matches no file (data may arrive later), or a PostgreSQL server that
/// cannot be reached now. A path that exists but cannot be read as the
/// declared format is Unprocessable on source.path; a query PostgreSQL refuses
/// (a missing table or column) is Unprocessable on source.query / source.table.
Result<std::shared_ptr<arrow::Schema>> ReadSourceSchema(const SourceDefinition& source);

/// The schema fstore reads a file source with: large and view strings and
/// binaries as utf8 and binary, dictionary-encoded columns as their values
/// (pandas writes large_string and categoricals; fstore's key columns and
/// kernels take utf8). ReadSourceSchema returns it and OpenSourceDataset scans
/// with it, casting each file's columns.
std::shared_ptr<arrow::Schema> NormalizeSourceSchema(const arrow::Schema& schema);

/// ReadSourceSchema for a source that must have data now (to materialize or
/// retrieve from it): never null; no matching file is Unprocessable on
/// source.path ("no file matches '<path>'"); an unreachable PostgreSQL server
/// is Unavailable.
Result<std::shared_ptr<arrow::Schema>> RequireSourceSchema(const SourceDefinition& source);

/// The dataset of a file source (its files as ReadSourceSchema finds them), or
/// null when no file matches. Unprocessable on source.path when the files
/// cannot be read as the declared format.
Result<std::shared_ptr<arrow::dataset::Dataset>> OpenSourceDataset(const SourceDefinition& source);

}  // namespace fstore
