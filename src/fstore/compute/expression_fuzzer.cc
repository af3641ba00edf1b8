// libFuzzer target: any text as a feature's transformation, parsed, checked,
// compiled against a fixed schema and evaluated over a small batch with NULLs
// and extreme values. Errors are fine; crashes, UB and hangs are not.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <arrow/api.h>
#include <arrow/json/from_string.h>

#include "fstore/compute/expression.h"
#include "fstore/compute/transformation.h"

namespace {

std::shared_ptr<arrow::RecordBatch> FuzzBatch() {
  auto json = [](const std::shared_ptr<arrow::DataType>& type, const char* text) {
    return arrow::json::ArrayFromJSONString(type, text).ValueOrDie();
  };
  auto ts = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  auto schema = arrow::schema({arrow::field("i", arrow::int64()), arrow::field("n", arrow::int32()),
                               arrow::field("f", arrow::float64()), arrow::field("s", arrow::utf8()),
                               arrow::field("b", arrow::boolean()), arrow::field("d", arrow::date32()),
                               arrow::field("ts", ts)});
  return arrow::RecordBatch::Make(
      schema, 4,
      {json(arrow::int64(), "[0, -9223372036854775808, 9223372036854775807, null]"),
       json(arrow::int32(), "[0, -2147483648, 2147483647, null]"),
       json(arrow::float64(), "[0.0, -1e308, 1e308, null]"),
       json(arrow::utf8(), R"(["", "Ä\\%_", "abc", null])"),
       json(arrow::boolean(), "[true, false, true, null]"),
       json(arrow::date32(), "[0, -2000000, 2000000, null]"),
       json(ts, R"(["1970-01-01 00:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59", null])")});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<arrow::RecordBatch> batch = FuzzBatch();
  std::string_view sql(reinterpret_cast<const char*>(data), size);
  auto parsed = fstore::ParseTransformation(sql);
  if (!parsed.ok()) return 0;
  (void)fstore::CheckSupported(*parsed);
  auto compiled = fstore::CompiledExpression::Compile(*parsed, batch->schema());
  if (!compiled.ok()) return 0;
  (void)compiled->Evaluate(*batch, fstore::EvalContext{1'700'000'000'000'000});
  return 0;
}
