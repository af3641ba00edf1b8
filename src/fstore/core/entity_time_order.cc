#include "fstore/core/entity_time_order.h"

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>
#include <string_view>

#include <arrow/api.h>
#include <arrow/compute/api.h>

#include "fstore/core/compute_init.h"

namespace fstore {

namespace {

// Rows are sorted as packed fixed-size records (up to kMaxColumns int64 sort
// values and the row index) rather than through indirect comparators: the
// values sit next to each other, so the sort is cache-friendly. Strings are
// replaced by their rank among the column's distinct values first.
constexpr size_t kMaxColumns = 4;
constexpr int64_t kNullRank = std::numeric_limits<int64_t>::min();  // nulls first

struct SortRecord {
  std::array<int64_t, kMaxColumns> values;
  uint64_t row;
};

// The column as int64 sort values (order-preserving), or nullopt for types
// without a fast path.
Result<std::optional<std::vector<int64_t>>> SortValues(const std::shared_ptr<arrow::Array>& array) {
  const int64_t n = array->length();
  std::vector<int64_t> out(static_cast<size_t>(n));
  switch (array->type_id()) {
    case arrow::Type::INT64:
    case arrow::Type::TIMESTAMP: {
      const int64_t* v = array->data()->GetValues<int64_t>(1);
      for (int64_t i = 0; i < n; ++i) out[i] = array->IsNull(i) ? kNullRank : v[i];
      return out;
    }
    case arrow::Type::INT32:
    case arrow::Type::DATE32: {
      const int32_t* v = array->data()->GetValues<int32_t>(1);
      for (int64_t i = 0; i < n; ++i) out[i] = array->IsNull(i) ? kNullRank : v[i];
      return out;
    }
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING: {
      ARROW_RETURN_NOT_OK(InitializeCompute());
      ARROW_ASSIGN_OR_RAISE(auto encoded, arrow::compute::DictionaryEncode(array));
      std::shared_ptr<arrow::Array> encoded_array = encoded.make_array();
      const auto& dict_array = static_cast<const arrow::DictionaryArray&>(*encoded_array);
      auto dictionary = dict_array.dictionary();
      std::vector<int32_t> by_value(static_cast<size_t>(dictionary->length()));
      std::iota(by_value.begin(), by_value.end(), 0);
      auto view = [&](int32_t i) -> std::string_view {
        if (dictionary->type_id() == arrow::Type::STRING) {
          return static_cast<const arrow::StringArray&>(*dictionary).GetView(i);
        }
        return static_cast<const arrow::LargeStringArray&>(*dictionary).GetView(i);
      };
      std::sort(by_value.begin(), by_value.end(),
                [&](int32_t a, int32_t b) { return view(a) < view(b); });
      std::vector<int64_t> rank(by_value.size());
      for (size_t r = 0; r < by_value.size(); ++r) rank[by_value[r]] = static_cast<int64_t>(r);
      ARROW_ASSIGN_OR_RAISE(auto indices32,
                            arrow::compute::Cast(*dict_array.indices(), arrow::int32()));
      const auto& idx = static_cast<const arrow::Int32Array&>(*indices32);
      for (int64_t i = 0; i < n; ++i) out[i] = idx.IsNull(i) ? kNullRank : rank[idx.Value(i)];
      return out;
    }
    default:
      return std::optional<std::vector<int64_t>>();
  }
}

Result<std::shared_ptr<arrow::UInt64Array>> ArrowSortIndices(
    const arrow::RecordBatch& batch, const std::vector<std::string>& columns) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  std::vector<arrow::compute::SortKey> keys;
  for (const auto& c : columns) {
    keys.emplace_back(c, arrow::compute::SortOrder::Ascending,
                      arrow::compute::NullPlacement::AtStart);
  }
  arrow::compute::SortOptions options(keys);
  auto shared = arrow::RecordBatch::Make(batch.schema(), batch.num_rows(), batch.columns());
  ARROW_ASSIGN_OR_RAISE(auto order, arrow::compute::SortIndices(arrow::Datum(shared), options));
  return std::static_pointer_cast<arrow::UInt64Array>(order);
}

}  // namespace

Result<std::shared_ptr<arrow::UInt64Array>> EntityTimeOrder(
    const arrow::RecordBatch& batch, const std::vector<std::string>& key_columns,
    const std::vector<std::string>& time_columns) {
  std::vector<std::string> columns = key_columns;
  columns.insert(columns.end(), time_columns.begin(), time_columns.end());
  for (const auto& name : columns) {
    if (!batch.GetColumnByName(name)) {
      return InvalidArgument(name, "no column '" + name + "' to sort by");
    }
  }
  if (columns.size() > kMaxColumns) return ArrowSortIndices(batch, columns);

  const int64_t n = batch.num_rows();
  std::vector<SortRecord> records(static_cast<size_t>(n));
  for (size_t c = 0; c < columns.size(); ++c) {
    ARROW_ASSIGN_OR_RAISE(auto values, SortValues(batch.GetColumnByName(columns[c])));
    if (!values) return ArrowSortIndices(batch, columns);
    for (int64_t i = 0; i < n; ++i) records[i].values[c] = (*values)[i];
  }
  for (int64_t i = 0; i < n; ++i) {
    for (size_t c = columns.size(); c < kMaxColumns; ++c) records[i].values[c] = 0;
    records[i].row = static_cast<uint64_t>(i);
  }
  // The row index as the last key makes the order equal a stable sort's.
  // Element by element over the columns in use (std::array's operators go
  // through memcmp and compare all kMaxColumns slots).
  const size_t used = columns.size();
  auto less = [used](const SortRecord& a, const SortRecord& b) {
    for (size_t c = 0; c < used; ++c) {
      if (a.values[c] != b.values[c]) return a.values[c] < b.values[c];
    }
    return a.row < b.row;
  };
  if (!std::is_sorted(records.begin(), records.end(), less)) {
    std::sort(records.begin(), records.end(), less);
  }
  arrow::UInt64Builder builder;
  ARROW_RETURN_NOT_OK(builder.Resize(n));
  for (const auto& r : records) builder.UnsafeAppend(r.row);
  std::shared_ptr<arrow::UInt64Array> out;
  ARROW_RETURN_NOT_OK(builder.Finish(&out));
  return out;
}

}  // namespace fstore
