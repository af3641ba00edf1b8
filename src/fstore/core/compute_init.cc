#include "fstore/core/compute_init.h"

#include <mutex>

#include <arrow/compute/initialize.h>

namespace fstore {

Status InitializeCompute() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] { status = arrow::compute::Initialize(); });
  return status;
}

}  // namespace fstore
