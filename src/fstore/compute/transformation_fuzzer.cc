// libFuzzer target: the transformation parser must never crash, whatever the
// SQL text; it answers a parsed expression or an InvalidArgument.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fstore/compute/transformation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view sql(reinterpret_cast<const char*>(data), size);
  auto result = fstore::ParseTransformation(sql);
  if (!result.ok() && fstore::ErrorOf(result.status()) == nullptr) {
    __builtin_trap();  // every refusal must be a described client error
  }
  return 0;
}
