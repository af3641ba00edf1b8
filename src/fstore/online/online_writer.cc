#include "fstore/online/online_writer.h"

#include <limits>
#include <memory>
#include <tuple>
#include <functional>
#include <future>
#include <string_view>
#include <system_error>

#include <arrow/array.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>
#include <arrow/type.h>

namespace fstore {

namespace {

/// How a column's values become FeatureValues (or key parts, or times).
enum class Kind {
  kInt8, kInt16, kInt32, kInt64, kUInt8, kUInt16, kUInt32,
  kFloat32, kFloat64, kString, kLargeString, kBool, kTimestamp, kList, kLargeList,
};

/// What a column's type maps to, checked once against the table's schema.
struct ColumnType {
  Kind kind;
  int64_t multiplier = 1;  // timestamp unit -> microseconds
  int64_t divisor = 1;
  std::unique_ptr<ColumnType> element;  // lists
};

bool IsIntKind(Kind k) { return k <= Kind::kUInt32; }

Result<ColumnType> ClassifyScalar(const arrow::DataType& type) {
  ColumnType out;
  switch (type.id()) {
    case arrow::Type::INT8: out.kind = Kind::kInt8; break;
    case arrow::Type::INT16: out.kind = Kind::kInt16; break;
    case arrow::Type::INT32: out.kind = Kind::kInt32; break;
    case arrow::Type::INT64: out.kind = Kind::kInt64; break;
    case arrow::Type::UINT8: out.kind = Kind::kUInt8; break;
    case arrow::Type::UINT16: out.kind = Kind::kUInt16; break;
    case arrow::Type::UINT32: out.kind = Kind::kUInt32; break;
    case arrow::Type::FLOAT: out.kind = Kind::kFloat32; break;
    case arrow::Type::DOUBLE: out.kind = Kind::kFloat64; break;
    case arrow::Type::STRING: out.kind = Kind::kString; break;
    case arrow::Type::LARGE_STRING: out.kind = Kind::kLargeString; break;
    case arrow::Type::BOOL: out.kind = Kind::kBool; break;
    case arrow::Type::TIMESTAMP: {
      out.kind = Kind::kTimestamp;
      switch (static_cast<const arrow::TimestampType&>(type).unit()) {
        case arrow::TimeUnit::SECOND: out.multiplier = kMicrosPerSecond; break;
        case arrow::TimeUnit::MILLI: out.multiplier = 1000; break;
        case arrow::TimeUnit::MICRO: break;
        case arrow::TimeUnit::NANO: out.divisor = 1000; break;
      }
      break;
    }
    default:
      return Status::Invalid("unsupported type ", type.ToString());
  }
  return out;
}

Result<ColumnType> ClassifyFeature(const arrow::DataType& type) {
  if (type.id() == arrow::Type::LIST || type.id() == arrow::Type::LARGE_LIST) {
    const auto& value_type = *static_cast<const arrow::BaseListType&>(type).value_type();
    ARROW_ASSIGN_OR_RAISE(ColumnType element, ClassifyScalar(value_type));
    ColumnType out;
    out.kind = type.id() == arrow::Type::LIST ? Kind::kList : Kind::kLargeList;
    out.element = std::make_unique<ColumnType>(std::move(element));
    return out;
  }
  return ClassifyScalar(type);
}

/// Reads the values of one column of one record batch.
class ColumnReader {
 public:
  ColumnReader(const ColumnType& type, const arrow::Array& array) : type_(type), array_(array) {
    if (type.kind == Kind::kList) {
      element_ = std::make_unique<ColumnReader>(
          *type.element, *static_cast<const arrow::ListArray&>(array).values());
    } else if (type.kind == Kind::kLargeList) {
      element_ = std::make_unique<ColumnReader>(
          *type.element, *static_cast<const arrow::LargeListArray&>(array).values());
    }
  }

  bool IsNull(int64_t i) const { return array_.IsNull(i); }

  /// An integer or timestamp value (in microseconds), for keys and times.
  int64_t Int(int64_t i) const {
    switch (type_.kind) {
      case Kind::kInt8: return Typed<arrow::Int8Array>().Value(i);
      case Kind::kInt16: return Typed<arrow::Int16Array>().Value(i);
      case Kind::kInt32: return Typed<arrow::Int32Array>().Value(i);
      case Kind::kInt64: return Typed<arrow::Int64Array>().Value(i);
      case Kind::kUInt8: return Typed<arrow::UInt8Array>().Value(i);
      case Kind::kUInt16: return Typed<arrow::UInt16Array>().Value(i);
      case Kind::kUInt32: return Typed<arrow::UInt32Array>().Value(i);
      case Kind::kTimestamp: {
        int64_t v = Typed<arrow::TimestampArray>().Value(i);
        if (type_.divisor != 1) {
          int64_t q = v / type_.divisor;
          return (v % type_.divisor < 0) ? q - 1 : q;  // round down
        }
        return v * type_.multiplier;
      }
      default: return 0;
    }
  }

  std::string_view String(int64_t i) const {
    if (type_.kind == Kind::kString) return Typed<arrow::StringArray>().GetView(i);
    return Typed<arrow::LargeStringArray>().GetView(i);
  }

  /// Assigns value i to `out` (reusing its storage where it can).
  void Get(int64_t i, FeatureValue* out) const {
    if (array_.IsNull(i)) {
      *out = std::monostate{};
      return;
    }
    switch (type_.kind) {
      case Kind::kInt8: case Kind::kInt16: case Kind::kInt32: case Kind::kInt64:
      case Kind::kUInt8: case Kind::kUInt16: case Kind::kUInt32:
        *out = Int(i);
        return;
      case Kind::kFloat32:
        *out = static_cast<double>(Typed<arrow::FloatArray>().Value(i));
        return;
      case Kind::kFloat64:
        *out = Typed<arrow::DoubleArray>().Value(i);
        return;
      case Kind::kString:
      case Kind::kLargeString: {
        std::string_view s = String(i);
        if (auto* existing = std::get_if<std::string>(out)) {
          existing->assign(s.data(), s.size());
        } else {
          *out = std::string(s);
        }
        return;
      }
      case Kind::kBool:
        *out = Typed<arrow::BooleanArray>().Value(i);
        return;
      case Kind::kTimestamp:
        *out = TimestampValue{Int(i)};
        return;
      case Kind::kList:
      case Kind::kLargeList: {
        int64_t begin, length;
        if (type_.kind == Kind::kList) {
          const auto& list = Typed<arrow::ListArray>();
          begin = list.value_offset(i);
          length = list.value_length(i);
        } else {
          const auto& list = Typed<arrow::LargeListArray>();
          begin = list.value_offset(i);
          length = list.value_length(i);
        }
        if (!std::holds_alternative<ListValue>(*out)) *out = ListValue{};
        auto& items = std::get<ListValue>(*out).items;
        items.resize(length);
        for (int64_t k = 0; k < length; ++k) element_->Get(begin + k, &items[k]);
        return;
      }
    }
  }

 private:
  template <typename A>
  const A& Typed() const {
    return static_cast<const A&>(array_);
  }

  const ColumnType& type_;
  const arrow::Array& array_;
  std::unique_ptr<ColumnReader> element_;
};

/// The readers of one record batch, in the order keys, event, created, features.
struct BatchReaders {
  std::shared_ptr<arrow::RecordBatch> batch;  // owns the arrays the readers point into
  std::vector<ColumnReader> keys;
  std::unique_ptr<ColumnReader> event;
  std::unique_ptr<ColumnReader> created;  // null: no created_timestamp column
  std::vector<ColumnReader> features;
};

/// The row written for one key.
struct Winner {
  uint32_t batch;
  int64_t row;
  TimestampMicros event;
  TimestampMicros created;
};

constexpr uint32_t kEmptySlot = 0xffffffff;

Status ColumnError(const std::string& column, const std::string& message) {
  return InvalidArgument(column, "column '" + column + "': " + message);
}

Result<int> FindColumn(const arrow::Schema& schema, const std::string& name) {
  std::vector<int> indices = schema.GetAllFieldIndices(name);
  if (indices.empty()) return ColumnError(name, "is missing");
  if (indices.size() > 1) return ColumnError(name, "appears more than once");
  return indices[0];
}

Result<ColumnType> ClassifyTime(const arrow::Field& field) {
  auto type = ClassifyScalar(*field.type());
  if (!type.ok() || (type->kind != Kind::kTimestamp && type->kind != Kind::kInt64)) {
    return ColumnError(field.name(), "expected timestamp or int64 microseconds, got " +
                                         field.type()->ToString());
  }
  return type;
}

}  // namespace

Result<WriteResult> WriteLatestRows(OnlineStore* store, const std::string& feature_set,
                                    const std::vector<std::string>& key_columns,
                                    const std::vector<std::string>& feature_columns,
                                    const arrow::Table& rows, int64_t batch_size,
                                    const OnlineWriteOptions& write_options) {
  if (key_columns.empty()) return InvalidArgument("key_columns", "no join key columns");
  if (batch_size <= 0) batch_size = kDefaultOnlineWriteBatch;
  if (rows.num_rows() >= kEmptySlot) {
    return InvalidArgument("rows", "more than 4 billion rows in one call: split the table");
  }
  const arrow::Schema& schema = *rows.schema();

  // Check every column once, against the schema.
  std::vector<int> key_index, feature_index;
  std::vector<ColumnType> key_types, feature_types;
  for (const auto& name : key_columns) {
    ARROW_ASSIGN_OR_RAISE(int index, FindColumn(schema, name));
    auto type = ClassifyScalar(*schema.field(index)->type());
    if (!type.ok() || !(IsIntKind(type->kind) || type->kind == Kind::kString ||
                        type->kind == Kind::kLargeString)) {
      return ColumnError(name, "a join key must be a string or an integer, not " +
                                   schema.field(index)->type()->ToString());
    }
    key_index.push_back(index);
    key_types.push_back(std::move(*type));
  }
  ARROW_ASSIGN_OR_RAISE(int event_index, FindColumn(schema, kEventTimestampColumn));
  ARROW_ASSIGN_OR_RAISE(ColumnType event_type, ClassifyTime(*schema.field(event_index)));
  int created_index = -1;
  ColumnType created_type;
  if (!schema.GetAllFieldIndices(kCreatedTimestampColumn).empty()) {
    ARROW_ASSIGN_OR_RAISE(created_index, FindColumn(schema, kCreatedTimestampColumn));
    ARROW_ASSIGN_OR_RAISE(created_type, ClassifyTime(*schema.field(created_index)));
  }
  for (const auto& name : feature_columns) {
    ARROW_ASSIGN_OR_RAISE(int index, FindColumn(schema, name));
    auto type = ClassifyFeature(*schema.field(index)->type());
    if (!type.ok()) {
      return ColumnError(name, "unsupported feature type " + schema.field(index)->type()->ToString() +
                                   ": expected int, float, string, bool, timestamp or a list of these");
    }
    feature_index.push_back(index);
    feature_types.push_back(std::move(*type));
  }

  // The table as aligned record batches (zero copy), with their readers.
  std::vector<BatchReaders> batches;
  arrow::TableBatchReader reader(rows);
  while (true) {
    std::shared_ptr<arrow::RecordBatch> batch;
    ARROW_RETURN_NOT_OK(reader.ReadNext(&batch));
    if (!batch) break;
    if (batch->num_rows() == 0) continue;
    BatchReaders readers;
    readers.batch = batch;
    for (size_t k = 0; k < key_index.size(); ++k) {
      readers.keys.emplace_back(key_types[k], *batch->column(key_index[k]));
    }
    readers.event = std::make_unique<ColumnReader>(event_type, *batch->column(event_index));
    if (created_index >= 0) {
      readers.created = std::make_unique<ColumnReader>(created_type, *batch->column(created_index));
    }
    for (size_t f = 0; f < feature_index.size(); ++f) {
      readers.features.emplace_back(feature_types[f], *batch->column(feature_index[f]));
    }
    batches.push_back(std::move(readers));
  }

  // The newest row per key: an open-addressing hash index over the encoded
  // keys, kept in one arena (no allocation per row).
  std::vector<Winner> winners;
  winners.reserve(static_cast<size_t>(rows.num_rows()));
  std::string arena;
  std::vector<uint64_t> key_begin;  // per winner, its key's offset in the arena
  key_begin.reserve(static_cast<size_t>(rows.num_rows()) + 1);
  size_t capacity = 16;
  while (capacity < 2 * static_cast<size_t>(rows.num_rows())) capacity *= 2;
  std::vector<uint32_t> slots(capacity, kEmptySlot);
  std::hash<std::string_view> hash;
  int64_t row_offset = 0;
  for (uint32_t b = 0; b < batches.size(); ++b) {
    const BatchReaders& readers = batches[b];
    const int64_t n = readers.batch->num_rows();
    for (int64_t i = 0; i < n; ++i) {
      const size_t begin = arena.size();
      for (size_t k = 0; k < readers.keys.size(); ++k) {
        const ColumnReader& key = readers.keys[k];
        if (key.IsNull(i)) {
          return ColumnError(key_columns[k], "null join key at row " + std::to_string(row_offset + i));
        }
        if (IsIntKind(key_types[k].kind)) {
          AppendEntityKeyPart(key.Int(i), &arena);
        } else {
          AppendEntityKeyPart(key.String(i), &arena);
        }
      }
      if (readers.event->IsNull(i)) {
        return ColumnError(kEventTimestampColumn, "null event time at row " + std::to_string(row_offset + i));
      }
      Winner w{b, i, readers.event->Int(i),
               readers.created && !readers.created->IsNull(i) ? readers.created->Int(i) : 0};
      std::string_view encoded(arena.data() + begin, arena.size() - begin);
      size_t s = hash(encoded) & (capacity - 1);
      while (true) {
        uint32_t at = slots[s];
        if (at == kEmptySlot) {
          slots[s] = static_cast<uint32_t>(winners.size());
          winners.push_back(w);
          key_begin.push_back(begin);
          break;
        }
        const size_t at_end = at + 1 < key_begin.size() ? key_begin[at + 1] : begin;
        if (std::string_view(arena.data() + key_begin[at], at_end - key_begin[at]) == encoded) {
          Winner& current = winners[at];
          if (std::tie(w.event, w.created) >= std::tie(current.event, current.created)) current = w;
          arena.resize(begin);  // the key is known: drop this copy
          break;
        }
        s = (s + 1) & (capacity - 1);
      }
    }
    row_offset += n;
  }
  std::vector<uint32_t>().swap(slots);  // free before writing
  std::string().swap(arena);

  WriteResult result;
  result.ignored = rows.num_rows() - static_cast<int64_t>(winners.size());

  // Two buffers of records, built in place and reused from one batch to the
  // next, so that after the first batches a row costs no allocation (but
  // long strings); batch k is written on another thread while batch k + 1
  // is built. `pending` is declared after `buffers`, so that an early return
  // waits for the write in flight before the buffers go away.
  std::vector<std::pair<EntityKey, OnlineRecord>> buffers[2];
  std::future<Result<WriteResult>> pending;
  auto collect = [&]() -> Status {
    if (!pending.valid()) return Status::OK();
    ARROW_ASSIGN_OR_RAISE(WriteResult written, pending.get());
    result.applied += written.applied;
    result.ignored += written.ignored;
    return Status::OK();
  };
  size_t next_buffer = 0;
  for (size_t start = 0; start < winners.size(); start += static_cast<size_t>(batch_size)) {
    size_t count = std::min(winners.size() - start, static_cast<size_t>(batch_size));
    auto& records = buffers[next_buffer];
    next_buffer ^= 1;
    records.resize(count);
    for (size_t j = 0; j < count; ++j) {
      const Winner& w = winners[start + j];
      const BatchReaders& readers = batches[w.batch];
      auto& [key, record] = records[j];
      key.resize(readers.keys.size());
      for (size_t k = 0; k < readers.keys.size(); ++k) {
        if (IsIntKind(key_types[k].kind)) {
          key[k] = readers.keys[k].Int(w.row);
        } else {
          std::string_view s = readers.keys[k].String(w.row);
          if (auto* existing = std::get_if<std::string>(&key[k])) {
            existing->assign(s.data(), s.size());
          } else {
            key[k] = std::string(s);
          }
        }
      }
      record.event_time = w.event;
      record.created_time = w.created;
      record.values.resize(feature_columns.size());
      for (size_t f = 0; f < feature_columns.size(); ++f) {
        auto& [name, value] = record.values[f];
        if (name != feature_columns[f]) name = feature_columns[f];
        readers.features[f].Get(w.row, &value);
      }
    }
    ARROW_RETURN_NOT_OK(collect());
    try {
      pending = std::async(std::launch::async,
                           [store, &feature_set, &records, &write_options] {
                             return store->Write(feature_set, records, write_options);
                           });
    } catch (const std::system_error&) {  // no thread to be had: write on this one
      ARROW_ASSIGN_OR_RAISE(WriteResult written, store->Write(feature_set, records, write_options));
      result.applied += written.applied;
      result.ignored += written.ignored;
    }
  }
  ARROW_RETURN_NOT_OK(collect());
  return result;
}

}  // namespace fstore
