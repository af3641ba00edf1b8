#pragma once

// The order every store and the pipeline keep rows in: by entity key columns,
// then event time (then created time). Arrow's generic multi-column sort is a
// stable merge sort through per-column comparators; this one compares the
// raw values of the usual column types (int64 / utf8 keys, timestamps)
// directly, with the row position as the last tie-break so that the order
// equals a stable sort's.

#include <memory>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"

namespace fstore {

/// Row indices of `batch` in (keys..., times...) order, ascending; nulls sort
/// first; equal rows keep their input order. Key columns may be int64, int32,
/// utf8 or large_utf8; time columns timestamp or int64. Other types fall back
/// to arrow::compute::SortIndices.
Result<std::shared_ptr<arrow::UInt64Array>> EntityTimeOrder(
    const arrow::RecordBatch& batch, const std::vector<std::string>& key_columns,
    const std::vector<std::string>& time_columns);

}  // namespace fstore
