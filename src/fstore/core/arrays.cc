#include "fstore/core/arrays.h"

#include <arrow/api.h>

namespace fstore {

Result<std::shared_ptr<arrow::Int64Array>> Int64ArrayOf(const std::vector<int64_t>& values) {
  arrow::Int64Builder builder;
  // (An empty vector's data() may be null, and memcpy(null, 0) is UB.)
  if (!values.empty()) ARROW_RETURN_NOT_OK(builder.AppendValues(values));
  std::shared_ptr<arrow::Int64Array> out;
  ARROW_RETURN_NOT_OK(builder.Finish(&out));
  return out;
}

std::shared_ptr<arrow::Int64Array> TimestampsAsInt64(const std::shared_ptr<arrow::Array>& ts) {
  auto data = ts->data()->Copy();
  data->type = arrow::int64();
  return std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
}

}  // namespace fstore
