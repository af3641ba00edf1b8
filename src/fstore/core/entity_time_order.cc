#include "fstore/core/entity_time_order.h"

#include <algorithm>
#include <numeric>
#include <string_view>

#include <arrow/api.h>
#include <arrow/compute/api.h>

#include "fstore/core/compute_init.h"

namespace fstore {

namespace {

// One column's comparison on raw values: negative, zero or positive.
struct ColumnComparator {
  enum class Kind { kInt64, kInt32, kString, kLargeString } kind;
  const arrow::Array* array;
  const int64_t* i64 = nullptr;
  const int32_t* i32 = nullptr;

  int Compare(int64_t a, int64_t b) const {
    bool a_null = array->IsNull(a), b_null = array->IsNull(b);
    if (a_null || b_null) return a_null == b_null ? 0 : (a_null ? -1 : 1);
    switch (kind) {
      case Kind::kInt64: return (i64[a] > i64[b]) - (i64[a] < i64[b]);
      case Kind::kInt32: return (i32[a] > i32[b]) - (i32[a] < i32[b]);
      case Kind::kString: {
        const auto& s = static_cast<const arrow::StringArray&>(*array);
        return s.GetView(a).compare(s.GetView(b));
      }
      case Kind::kLargeString: {
        const auto& s = static_cast<const arrow::LargeStringArray&>(*array);
        return s.GetView(a).compare(s.GetView(b));
      }
    }
    return 0;
  }
};

std::optional<ColumnComparator> MakeComparator(const std::shared_ptr<arrow::Array>& array) {
  switch (array->type_id()) {
    case arrow::Type::INT64:
    case arrow::Type::TIMESTAMP:
      return ColumnComparator{ColumnComparator::Kind::kInt64, array.get(),
                              array->data()->GetValues<int64_t>(1)};
    case arrow::Type::INT32:
    case arrow::Type::DATE32:
      return ColumnComparator{ColumnComparator::Kind::kInt32, array.get(), nullptr,
                              array->data()->GetValues<int32_t>(1)};
    case arrow::Type::STRING:
      return ColumnComparator{ColumnComparator::Kind::kString, array.get()};
    case arrow::Type::LARGE_STRING:
      return ColumnComparator{ColumnComparator::Kind::kLargeString, array.get()};
    default:
      return std::nullopt;
  }
}

}  // namespace

Result<std::shared_ptr<arrow::UInt64Array>> EntityTimeOrder(
    const arrow::RecordBatch& batch, const std::vector<std::string>& key_columns,
    const std::vector<std::string>& time_columns) {
  std::vector<ColumnComparator> columns;
  bool fast = true;
  for (const auto* names : {&key_columns, &time_columns}) {
    for (const auto& name : *names) {
      auto array = batch.GetColumnByName(name);
      if (!array) return InvalidArgument(name, "no column '" + name + "' to sort by");
      auto comparator = MakeComparator(array);
      if (!comparator) {
        fast = false;
        break;
      }
      columns.push_back(*comparator);
    }
  }
  if (!fast) {
    ARROW_RETURN_NOT_OK(InitializeCompute());
    std::vector<arrow::compute::SortKey> keys;
    for (const auto& k : key_columns) keys.emplace_back(k);
    for (const auto& t : time_columns) keys.emplace_back(t);
    arrow::compute::SortOptions options(keys, arrow::compute::NullPlacement::AtStart);
    auto shared = arrow::RecordBatch::Make(batch.schema(), batch.num_rows(), batch.columns());
    ARROW_ASSIGN_OR_RAISE(auto order,
                          arrow::compute::SortIndices(arrow::Datum(shared), options));
    return std::static_pointer_cast<arrow::UInt64Array>(order);
  }
  const int64_t n = batch.num_rows();
  std::vector<uint64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // Already in order (a common case: sorted sources, re-sorts): nothing to do.
  auto less = [&](uint64_t a, uint64_t b) {
    for (const auto& c : columns) {
      int r = c.Compare(static_cast<int64_t>(a), static_cast<int64_t>(b));
      if (r != 0) return r < 0;
    }
    return a < b;
  };
  if (!std::is_sorted(order.begin(), order.end(), less)) {
    std::sort(order.begin(), order.end(), less);
  }
  arrow::UInt64Builder builder;
  if (n > 0) ARROW_RETURN_NOT_OK(builder.AppendValues(order.data(), n));
  std::shared_ptr<arrow::UInt64Array> out;
  ARROW_RETURN_NOT_OK(builder.Finish(&out));
  return out;
}

}  // namespace fstore
