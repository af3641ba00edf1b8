#pragma once

// Small Arrow array helpers shared by the pipeline and retrieval.

#include <cstdint>
#include <memory>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"

namespace fstore {

/// The values as an int64 array (row indices for Take, group ids, times).
Result<std::shared_ptr<arrow::Int64Array>> Int64ArrayOf(const std::vector<int64_t>& values);

/// A timestamp array's values as int64 (its unit's counts, micros for the
/// normalised timestamp[us, UTC] columns), without copying the buffers.
std::shared_ptr<arrow::Int64Array> TimestampsAsInt64(const std::shared_ptr<arrow::Array>& ts);

}  // namespace fstore
