#pragma once

#include "fstore/core/status.h"

namespace fstore {

/// Registers Arrow's compute kernels (needed since Arrow 21 before any
/// arrow::compute call: sort_indices, filter, cast...). Thread-safe and cheap
/// after the first call; every entry point that computes calls it.
Status InitializeCompute();

}  // namespace fstore
