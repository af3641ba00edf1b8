#include "fstore/retrieval/point_in_time_join.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/util/bit_util.h>

#include "fstore/core/arrays.h"
#include "fstore/core/columns.h"
#include "fstore/core/compute_init.h"
#include "fstore/core/duration.h"
#include "fstore/core/entity_time_order.h"
#include "fstore/compute/source_schema.h"
#include "fstore/materialize/feature_validation.h"
#include "fstore/materialize/python_step.h"
#include "fstore/materialize/source_reader.h"

namespace fstore {
namespace cp = arrow::compute;

namespace {

constexpr std::string_view kClockInputPrefix = "__src__";
const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

// The entity key of a row as bytes: equal keys give equal bytes. Columns are
// int64 or utf8 (callers cast them first).
void EncodeKey(const std::vector<std::shared_ptr<arrow::Array>>& keys, int64_t row,
               std::string* out) {
  out->clear();
  for (const auto& col : keys) {
    if (col->type_id() == arrow::Type::INT64) {
      int64_t v = static_cast<const arrow::Int64Array&>(*col).Value(row);
      out->append(reinterpret_cast<const char*>(&v), sizeof v);
    } else {
      std::string_view s = static_cast<const arrow::StringArray&>(*col).GetView(row);
      uint64_t size = s.size();
      out->append(reinterpret_cast<const char*>(&size), sizeof size);
      out->append(s);
    }
  }
}

Result<std::shared_ptr<arrow::Array>> CastTo(const std::shared_ptr<arrow::Array>& values,
                                             const std::shared_ptr<arrow::DataType>& type,
                                             const std::string& column) {
  if (values->type()->Equals(*type)) return values;
  auto cast = cp::Cast(*values, type);
  if (!cast.ok()) {
    return Unprocessable(column, "join key column '" + column + "' of type " +
                                     values->type()->ToString() + " cannot be read as " +
                                     type->ToString() + ": " + cast.status().message());
  }
  return *cast;
}

// Indices with -1 as null: Take gives null there.
Result<std::shared_ptr<arrow::Int64Array>> OptionalIndexArray(const std::vector<int64_t>& indices) {
  arrow::Int64Builder b;
  ARROW_RETURN_NOT_OK(b.Reserve(static_cast<int64_t>(indices.size())));
  for (int64_t i : indices) {
    if (i < 0) {
      b.UnsafeAppendNull();
    } else {
      b.UnsafeAppend(i);
    }
  }
  std::shared_ptr<arrow::Int64Array> out;
  ARROW_RETURN_NOT_OK(b.Finish(&out));
  return out;
}

// The entity rows grouped by key: groups numbered in key order (the offline
// store's order: int64 keys numerically, utf8 keys bytewise, several key
// columns lexicographically), and the rows sorted by (group, time), ties in
// input order.
struct EntityGroups {
  std::vector<std::shared_ptr<arrow::Array>> keys;  // plan.key_columns order
  /// The one int64 key column's values, else null (the generic path).
  const int64_t* int_keys = nullptr;
  std::vector<int64_t> order;        // entity rows by (group, time)
  std::vector<int64_t> group_begin;  // group g's rows: order[group_begin[g] .. group_begin[g+1])
  /// With int_keys: group g's key (ascending).
  std::vector<int64_t> group_int_key;
  /// The rows' times in `order` (sorted_times[j] is the time of row order[j]).
  std::vector<int64_t> sorted_times;
  int64_t num_groups() const { return static_cast<int64_t>(group_begin.size()) - 1; }
  /// A row of group g (all its rows have the same key).
  int64_t row_of_group(int64_t g) const { return order[group_begin[g]]; }
};

// -1, 0 or 1 as the key of row `i` of `a` is before, equal to or after that
// of row `j` of `b` (columns of the same types, int64 or utf8).
int CompareKeys(const std::vector<std::shared_ptr<arrow::Array>>& a, int64_t i,
                const std::vector<std::shared_ptr<arrow::Array>>& b, int64_t j) {
  for (size_t c = 0; c < a.size(); ++c) {
    if (a[c]->type_id() == arrow::Type::INT64) {
      int64_t x = static_cast<const arrow::Int64Array&>(*a[c]).Value(i);
      int64_t y = static_cast<const arrow::Int64Array&>(*b[c]).Value(j);
      if (x != y) return x < y ? -1 : 1;
    } else {
      std::string_view x = static_cast<const arrow::StringArray&>(*a[c]).GetView(i);
      std::string_view y = static_cast<const arrow::StringArray&>(*b[c]).GetView(j);
      int r = x.compare(y);
      if (r != 0) return r < 0 ? -1 : 1;
    }
  }
  return 0;
}

// Open addressing from int64 keys to dense ids (first-appearance order).
class Int64KeyIds {
 public:
  Int64KeyIds() { Rehash(1024); }
  int64_t IdOf(int64_t key) {
    size_t slot = Hash(key) & mask_;
    while (slots_[slot].id >= 0) {
      if (slots_[slot].key == key) return slots_[slot].id;
      slot = (slot + 1) & mask_;
    }
    const int64_t id = size_++;
    slots_[slot] = {key, id};
    if (2 * size_ > static_cast<int64_t>(slots_.size())) Rehash(2 * slots_.size());
    return id;
  }
  int64_t size() const { return size_; }

 private:
  struct Slot {
    int64_t key = 0;
    int64_t id = -1;
  };
  static size_t Hash(int64_t key) {
    uint64_t x = static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(x ^ (x >> 29));
  }
  void Rehash(size_t capacity) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      size_t slot = Hash(s.key) & mask_;
      while (slots_[slot].id >= 0) slot = (slot + 1) & mask_;
      slots_[slot] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int64_t size_ = 0;
};

// The entity rows' join key columns, in plan.key_columns order, checked.
Result<std::vector<std::shared_ptr<arrow::Array>>> EntityKeyColumns(const PointInTimeQuery& q) {
  std::vector<std::shared_ptr<arrow::Array>> keys;
  for (const auto& k : q.plan->key_columns) {
    auto col = q.entity_keys->GetColumnByName(k);
    if (!col) return InvalidArgument("entity_df.columns", "missing join key column '" + k + "'");
    if (col->type_id() != arrow::Type::INT64 && col->type_id() != arrow::Type::STRING) {
      return arrow::Status::Invalid("join key column '", k, "' must be int64 or utf8");
    }
    if (col->null_count() > 0) {
      return InvalidArgument("entity_df.data", "join key column '" + k + "' holds nulls");
    }
    keys.push_back(col);
  }
  return keys;
}

bool IsOneInt64Key(const std::vector<std::shared_ptr<arrow::Array>>& keys) {
  return keys.size() == 1 && keys[0]->type_id() == arrow::Type::INT64;
}

// Sorts each group's rows order[group_begin[k], group_begin[k + 1]) by
// time (stably: ties keep their order), `times` alongside.
void SortGroupsByTime(const std::vector<int64_t>& group_begin, int64_t* order, int64_t* times) {
  struct TimedRow {
    int64_t time;
    int64_t row;
  };
  std::vector<TimedRow> scratch;
  for (size_t k = 0; k + 1 < group_begin.size(); ++k) {
    const int64_t begin = group_begin[k], end = group_begin[k + 1];
    if (end - begin <= 32) {
      // Insertion sort: stable, and groups are small.
      for (int64_t i = begin + 1; i < end; ++i) {
        const int64_t time = times[i], row = order[i];
        int64_t hole = i;
        while (hole > begin && time < times[hole - 1]) {
          times[hole] = times[hole - 1];
          order[hole] = order[hole - 1];
          --hole;
        }
        times[hole] = time;
        order[hole] = row;
      }
      continue;
    }
    scratch.clear();
    for (int64_t i = begin; i < end; ++i) scratch.push_back({times[i], order[i]});
    std::stable_sort(scratch.begin(), scratch.end(),
                     [](const TimedRow& a, const TimedRow& b) { return a.time < b.time; });
    for (int64_t i = begin; i < end; ++i) {
      times[i] = scratch[static_cast<size_t>(i - begin)].time;
      order[i] = scratch[static_cast<size_t>(i - begin)].row;
    }
  }
}

// GroupEntityRows for one int64 key column whose values span a range of at
// most a few times the number of rows (user ids and the like): a counting
// sort by key, with no hash table. False (nothing done) for wider ranges.
bool GroupDenseIntKeys(const int64_t* keys, const int64_t* t, int64_t n, EntityGroups* g) {
  if (n == 0 || n >= std::numeric_limits<uint32_t>::max()) return false;
  int64_t lo = keys[0], hi = keys[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, keys[i]);
    hi = std::max(hi, keys[i]);
  }
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
  if (range == 0 || range > std::max<uint64_t>(4 * static_cast<uint64_t>(n), 1 << 16)) {
    return false;
  }
  // Rows per key, then each key's first position (the groups in key order).
  std::vector<uint32_t> next(range, 0);
  for (int64_t i = 0; i < n; ++i) ++next[static_cast<uint64_t>(keys[i] - lo)];
  g->group_begin.clear();
  g->group_int_key.clear();
  uint32_t position = 0;
  for (uint64_t b = 0; b < range; ++b) {
    const uint32_t rows = next[b];
    if (rows == 0) continue;
    g->group_begin.push_back(position);
    g->group_int_key.push_back(lo + static_cast<int64_t>(b));
    next[b] = position;
    position += rows;
  }
  g->group_begin.push_back(n);
  g->order.resize(static_cast<size_t>(n));
  g->sorted_times.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t at = next[static_cast<uint64_t>(keys[i] - lo)]++;
    g->order[at] = i;
    g->sorted_times[at] = t[i];
  }
  SortGroupsByTime(g->group_begin, g->order.data(), g->sorted_times.data());
  return true;
}

EntityGroups GroupEntityRows(const PointInTimeQuery& q,
                             std::vector<std::shared_ptr<arrow::Array>> keys) {
  EntityGroups g;
  const int64_t n = q.times->length();
  g.keys = std::move(keys);
  if (g.keys.size() == 1 && g.keys[0]->type_id() == arrow::Type::INT64) {
    g.int_keys = static_cast<const arrow::Int64Array&>(*g.keys[0]).raw_values();
    if (GroupDenseIntKeys(g.int_keys, q.times->raw_values(), n, &g)) return g;
  }
  // Dense ids in first-appearance order, and a row of each.
  std::vector<int64_t> id_of_row(static_cast<size_t>(n)), first_row;
  if (g.int_keys) {
    Int64KeyIds ids;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = ids.IdOf(g.int_keys[i]);
      if (id == static_cast<int64_t>(first_row.size())) first_row.push_back(i);
      id_of_row[i] = id;
    }
  } else {
    std::unordered_map<std::string, int64_t> ids;
    std::string key;
    for (int64_t i = 0; i < n; ++i) {
      EncodeKey(g.keys, i, &key);
      auto [it, inserted] = ids.emplace(key, static_cast<int64_t>(ids.size()));
      if (inserted) first_row.push_back(i);
      id_of_row[i] = it->second;
    }
  }
  // Groups renumbered in key order.
  const int64_t groups = static_cast<int64_t>(first_row.size());
  std::vector<int64_t> by_key(static_cast<size_t>(groups));
  if (g.int_keys) {
    std::vector<std::pair<int64_t, int64_t>> key_ids(static_cast<size_t>(groups));
    for (int64_t id = 0; id < groups; ++id) key_ids[id] = {g.int_keys[first_row[id]], id};
    std::sort(key_ids.begin(), key_ids.end());
    for (int64_t r = 0; r < groups; ++r) by_key[r] = key_ids[r].second;
  } else {
    std::iota(by_key.begin(), by_key.end(), 0);
    std::sort(by_key.begin(), by_key.end(), [&](int64_t a, int64_t b) {
      return CompareKeys(g.keys, first_row[a], g.keys, first_row[b]) < 0;
    });
  }
  std::vector<int64_t> rank(static_cast<size_t>(groups));
  for (int64_t r = 0; r < groups; ++r) rank[by_key[r]] = r;
  for (int64_t i = 0; i < n; ++i) id_of_row[i] = rank[id_of_row[i]];  // now the group
  const std::vector<int64_t>& group_of_row = id_of_row;
  // Counting sort of (time, row) by group (stable), then each group by time,
  // on the packed pairs (no scattered reads of the times).
  g.group_begin.assign(static_cast<size_t>(groups) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++g.group_begin[group_of_row[i] + 1];
  for (size_t i = 1; i < g.group_begin.size(); ++i) g.group_begin[i] += g.group_begin[i - 1];
  const int64_t* t = q.times->raw_values();
  struct TimedRow {
    int64_t time;
    int64_t row;
  };
  std::vector<TimedRow> sorted(static_cast<size_t>(n));
  {
    std::vector<int64_t> next(g.group_begin.begin(), g.group_begin.end() - 1);
    for (int64_t i = 0; i < n; ++i) sorted[next[group_of_row[i]]++] = {t[i], i};
  }
  auto earlier = [](const TimedRow& a, const TimedRow& b) { return a.time < b.time; };
  for (int64_t k = 0; k < groups; ++k) {
    auto begin = sorted.begin() + g.group_begin[k], end = sorted.begin() + g.group_begin[k + 1];
    if (end - begin <= 32) {
      // Insertion sort: stable, and groups are small.
      for (auto it = begin + 1; it < end; ++it) {
        const TimedRow row = *it;
        auto hole = it;
        while (hole > begin && earlier(row, *(hole - 1))) {
          *hole = *(hole - 1);
          --hole;
        }
        *hole = row;
      }
    } else {
      std::stable_sort(begin, end, earlier);
    }
  }
  g.order.resize(static_cast<size_t>(n));
  g.sorted_times.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    g.order[j] = sorted[j].row;
    g.sorted_times[j] = sorted[j].time;
  }
  if (g.int_keys) {
    g.group_int_key.resize(static_cast<size_t>(groups));
    for (int64_t k = 0; k < groups; ++k) g.group_int_key[k] = g.int_keys[g.row_of_group(k)];
  }
  return g;
}

// One date partition of the offline store as read for the join, in (key,
// event time) order: either decoded straight into reused buffers (`fixed`,
// when every column is a fixed-width type read raw: OfflineStore::
// ReadFixedWidth) or as record batches (consecutive slices of the order)
// with the key and time columns flattened over them.
struct PartitionRows {
  /// Raw: `fixed` holds the key (with int keys), event time, created time
  /// (with as_of) and the asked-for columns, at fixed_first_column on.
  bool raw = false;
  FixedWidthRows fixed;
  size_t fixed_first_column = 0;
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  std::vector<int64_t> batch_begin;  // batch b holds rows [batch_begin[b], batch_begin[b + 1])
  /// The key columns as the entity keys' types; empty with int_keys.
  std::vector<std::shared_ptr<arrow::Array>> keys;
  /// The key's values when the entity key is one int64 column, else null.
  const int64_t* int_keys = nullptr;
  const int64_t* events = nullptr;
  const int64_t* created = nullptr;  // only with as_of
  int64_t num_rows = 0;
  // Storage of int_keys, events and created for batches.
  std::vector<int64_t> int_key_values, event_values, created_values;
  int64_t rows() const { return num_rows; }
};

// Partitions joined handed back for the next reads, so that their buffers'
// memory is reused rather than newly mapped (and zeroed by the kernel) for
// every partition. Thread-safe.
class BufferRecycler {
 public:
  /// An empty partition, with the buffers of one handed back if any.
  PartitionRows Get() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return {};
    PartitionRows out = std::move(free_.back());
    free_.pop_back();
    return out;
  }
  void Put(PartitionRows* p) {
    PartitionRows spare;
    spare.fixed = std::move(p->fixed);
    spare.int_key_values = std::move(p->int_key_values);
    spare.event_values = std::move(p->event_values);
    spare.created_values = std::move(p->created_values);
    for (auto* v : {&spare.int_key_values, &spare.event_values, &spare.created_values}) v->clear();
    *p = PartitionRows{};
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(spare));
  }

 private:
  std::mutex mu_;
  std::vector<PartitionRows> free_;
};

// Appends the values of an int64 or timestamp column (no nulls).
void AppendInt64s(const arrow::Array& column, std::vector<int64_t>* out) {
  const int64_t* v = column.data()->GetValues<int64_t>(1);
  out->insert(out->end(), v, v + column.length());
}

// Whether rows [0, n) are in (key, time) order.
bool InKeyTimeOrder(const int64_t* k, const int64_t* e, int64_t n) {
  // Without branches, so that it vectorizes: a pass over every row.
  bool unsorted = false;
  for (int64_t i = 1; i < n; ++i) {
    unsorted |= (k[i - 1] > k[i]) | ((k[i - 1] == k[i]) & (e[i - 1] > e[i]));
  }
  return !unsorted;
}

// The error for offline rows without the join key column `column`.
Status LacksKeyColumn(const std::string& feature_set, const std::string& column) {
  return Unprocessable("feature_sets", "the offline data of feature set '" + feature_set +
                                           "' lacks join key column '" + column + "'");
}

// What ReadPartitionRaw did.
enum class RawRead {
  kRead,
  // Not read raw, nor will any partition of the query be: a column is not a
  // fixed-width type read raw or not stored with the type asked for, or the
  // key is not one int64 column.
  kNotRaw,
  // Read, but the rows are not in (key, time) order (files interleaving).
  kOutOfOrder,
};

// Reads partition [start, end) of `fs` raw into `p` (its buffers reused):
// kRead when every column is a fixed-width type read raw, stored with the
// type asked for (`types`, null: as stored), the key is one int64 column and
// the rows are in (key, time) order; otherwise nothing usable is read.
Result<RawRead> ReadPartitionRaw(OfflineStore* offline, const FeaturePlan& plan,
                              const std::vector<std::shared_ptr<arrow::Array>>& entity_keys,
                              TimestampMicros start, TimestampMicros end,
                              const std::vector<std::string>& columns,
                              const std::vector<std::shared_ptr<arrow::DataType>>& types,
                              bool with_created, PartitionRows* p) {
  if (!IsOneInt64Key(entity_keys)) return RawRead::kNotRaw;
  std::vector<std::string> read{plan.key_columns[0], kEventTimestampColumn};
  if (with_created) read.push_back(kCreatedTimestampColumn);
  p->fixed_first_column = read.size();
  read.insert(read.end(), columns.begin(), columns.end());
  Status st = offline->ReadFixedWidth(plan.feature_set.name, kOfflineSchemaVersion, start, end,
                                      read, &p->fixed);
  if (st.IsNotImplemented()) return RawRead::kNotRaw;
  ARROW_RETURN_NOT_OK(st);
  const auto& fixed = p->fixed.columns;
  if (fixed[0].type && fixed[0].type->id() != arrow::Type::INT64) return RawRead::kNotRaw;
  for (size_t c = 0; c < columns.size(); ++c) {
    const auto& stored = fixed[p->fixed_first_column + c].type;
    if (stored && types[c] && !stored->Equals(*types[c])) return RawRead::kNotRaw;
  }
  p->num_rows = p->fixed.rows;
  if (p->num_rows > 0) {
    if (!fixed[0].type) return LacksKeyColumn(plan.feature_set.name, plan.key_columns[0]);
    p->int_keys = reinterpret_cast<const int64_t*>(fixed[0].values->data());
    p->events = reinterpret_cast<const int64_t*>(fixed[1].values->data());
    if (with_created) p->created = reinterpret_cast<const int64_t*>(fixed[2].values->data());
    // Several files of a partition could interleave: then the batch path
    // sorts.
    if (!InKeyTimeOrder(p->int_keys, p->events, p->num_rows)) return RawRead::kOutOfOrder;
  }
  p->raw = true;
  return RawRead::kRead;
}

// Reads the rows of `fs` with event time in [start, end) -- one date
// partition -- with the key, time and `columns` columns (those the stored
// schema has; `types`: the types wanted, null as stored). Tries the raw
// read while *try_raw, and clears it when no partition of the query can be
// read raw. Safe to call from several threads at once.
Result<PartitionRows> ReadPartition(OfflineStore* offline, const FeaturePlan& plan,
                                    const std::vector<std::shared_ptr<arrow::Array>>& entity_keys,
                                    TimestampMicros start, TimestampMicros end,
                                    const std::vector<std::string>& columns,
                                    const std::vector<std::shared_ptr<arrow::DataType>>& types,
                                    bool with_created, std::atomic<bool>* try_raw,
                                    BufferRecycler* recycler) {
  const std::string& fs = plan.feature_set.name;
  PartitionRows p = recycler->Get();
  if (try_raw->load()) {
    ARROW_ASSIGN_OR_RAISE(RawRead raw, ReadPartitionRaw(offline, plan, entity_keys, start, end,
                                                        columns, types, with_created, &p));
    if (raw == RawRead::kRead) return p;
    if (raw == RawRead::kNotRaw) try_raw->store(false);
    p.int_keys = p.events = p.created = nullptr;
  }
  // Only the stored columns: a feature added after these rows were
  // materialized is absent (null) here.
  ARROW_ASSIGN_OR_RAISE(auto probe, offline->Scan(fs, kOfflineSchemaVersion, start, end));
  const auto stored = probe->schema();
  ARROW_RETURN_NOT_OK(probe->Close());
  if (stored->num_fields() == 0) return p;
  std::vector<std::string> present;
  for (const auto& c : columns) {
    if (stored->GetFieldIndex(c) >= 0) present.push_back(c);
  }
  // An empty list reads every column: the first key column asks for none more.
  if (present.empty()) present.push_back(plan.key_columns.front());
  ARROW_ASSIGN_OR_RAISE(auto reader, offline->Scan(fs, kOfflineSchemaVersion, start, end,
                                                   present, with_created));
  p.batch_begin.push_back(0);
  while (true) {
    std::shared_ptr<arrow::RecordBatch> batch;
    ARROW_RETURN_NOT_OK(reader->ReadNext(&batch));
    if (!batch) break;
    p.batches.push_back(batch);
    p.batch_begin.push_back(p.batch_begin.back() + batch->num_rows());
  }
  if (p.batches.empty()) return p;
  const bool int_keys = IsOneInt64Key(entity_keys);
  std::vector<arrow::ArrayVector> key_chunks(plan.key_columns.size());
  for (size_t c = 0; c < plan.key_columns.size(); ++c) {
    for (const auto& b : p.batches) {
      auto col = b->GetColumnByName(plan.key_columns[c]);
      if (!col) return LacksKeyColumn(fs, plan.key_columns[c]);
      ARROW_ASSIGN_OR_RAISE(col, CastTo(col, entity_keys[c]->type(), plan.key_columns[c]));
      key_chunks[c].push_back(col);
    }
  }
  auto concatenate_keys = [&]() -> Status {
    p.keys.clear();
    for (auto& chunks : key_chunks) {
      std::shared_ptr<arrow::Array> col = chunks.front();
      if (chunks.size() > 1) {
        ARROW_ASSIGN_OR_RAISE(col, arrow::Concatenate(chunks));
      }
      p.keys.push_back(col);
    }
    return Status::OK();
  };
  const size_t rows = static_cast<size_t>(p.batch_begin.back());
  p.num_rows = static_cast<int64_t>(rows);
  if (int_keys) {
    p.int_key_values.reserve(rows);
    for (const auto& chunk : key_chunks[0]) AppendInt64s(*chunk, &p.int_key_values);
  } else {
    ARROW_RETURN_NOT_OK(concatenate_keys());
  }
  p.event_values.reserve(rows);
  if (with_created) p.created_values.reserve(rows);
  for (const auto& b : p.batches) {
    AppendInt64s(*b->GetColumnByName(kEventTimestampColumn), &p.event_values);
    if (with_created) {
      AppendInt64s(*b->GetColumnByName(kCreatedTimestampColumn), &p.created_values);
    }
  }
  // The merge join needs the rows in (key, event time) order of the entity
  // keys' types; a key cast from another type may not keep the stored order.
  bool sorted = true;
  const int64_t* e = p.event_values.data();
  if (int_keys) {
    sorted = InKeyTimeOrder(p.int_key_values.data(), e, p.rows());
  } else {
    for (int64_t i = 1; i < p.rows() && sorted; ++i) {
      int c = CompareKeys(p.keys, i - 1, p.keys, i);
      sorted = c < 0 || (c == 0 && e[i - 1] <= e[i]);
    }
  }
  if (!sorted) {
    if (int_keys) ARROW_RETURN_NOT_OK(concatenate_keys());
    ARROW_ASSIGN_OR_RAISE(auto table, arrow::Table::FromRecordBatches(p.batches));
    ARROW_ASSIGN_OR_RAISE(auto all, table->CombineChunksToBatch());
    std::vector<std::shared_ptr<arrow::Field>> fields;
    for (size_t c = 0; c < p.keys.size(); ++c) {
      fields.push_back(arrow::field(plan.key_columns[c], p.keys[c]->type()));
    }
    fields.push_back(arrow::field(kEventTimestampColumn, arrow::int64()));
    auto sort_columns = p.keys;
    ARROW_ASSIGN_OR_RAISE(auto events, Int64ArrayOf(p.event_values));
    sort_columns.push_back(events);
    auto sort_batch = arrow::RecordBatch::Make(arrow::schema(fields), p.rows(), sort_columns);
    ARROW_ASSIGN_OR_RAISE(auto order,
                          EntityTimeOrder(*sort_batch, plan.key_columns, {kEventTimestampColumn}));
    ARROW_ASSIGN_OR_RAISE(auto sorted_all, cp::Take(all, order));
    ARROW_ASSIGN_OR_RAISE(auto sorted_keys, cp::Take(sort_batch, order));
    p.batches = {sorted_all.record_batch()};
    p.batch_begin = {0, p.rows()};
    for (size_t c = 0; c < p.keys.size(); ++c) {
      p.keys[c] = sorted_keys.record_batch()->column(static_cast<int>(c));
    }
    p.event_values.clear();
    p.created_values.clear();
    AppendInt64s(*p.batches[0]->GetColumnByName(kEventTimestampColumn), &p.event_values);
    if (with_created) {
      AppendInt64s(*p.batches[0]->GetColumnByName(kCreatedTimestampColumn), &p.created_values);
    }
    if (int_keys) {
      p.int_key_values.clear();
      AppendInt64s(*p.keys[0], &p.int_key_values);
      p.keys.clear();
    }
  }
  if (int_keys) p.int_keys = p.int_key_values.data();
  p.events = p.event_values.data();
  if (with_created) p.created = p.created_values.data();
  return p;
}

// The as-of join's result, in entity row order.
struct AsOfMatches {
  /// event_timestamp + `columns` of each entity row's matched offline row,
  /// nulls where none matched.
  std::shared_ptr<arrow::RecordBatch> rows;
  std::vector<uint8_t> matched;  // 1 where an offline row matched
};

// The join state across partitions. Per group, its rows order[begin, begin +
// unresolved) are still unmatched: always a prefix in time order, as
// partitions are read from the latest backwards (a match for a row is one
// for every later row of its group).
struct AsOfState {
  std::vector<int64_t> unresolved;
};

// Matches the unresolved entity rows against the partition's rows: a merge
// of the two key orders.
// Appends each entity row matched, as its position in g.order, to
// `matched_positions` and its partition row to `matched_rows` (both
// ascending).
//
// Only partition rows [row_lo, row_hi) and groups [group_lo, group_hi) are
// looked at: a key range of both sides (JoinRange), so that threads
// may merge disjoint ranges of one partition at once (each group's state is
// touched by one of them only).
template <bool kIntKeys>
void MergePartition(const PartitionRows& p, const EntityGroups& g,
                    std::optional<TimestampMicros> as_of, int64_t row_lo, int64_t row_hi,
                    int64_t group_lo, int64_t group_hi, AsOfState* state,
                    std::vector<int64_t>* matched_positions, std::vector<int64_t>* matched_rows) {
  const int64_t* e = p.events;
  const int64_t* cr = as_of ? p.created : nullptr;
  const int64_t* st = g.sorted_times.data();
  auto compare = [&](int64_t row, int64_t group) {
    if constexpr (kIntKeys) {
      const int64_t a = p.int_keys[row], b = g.group_int_key[group];
      return a < b ? -1 : (a > b ? 1 : 0);
    } else {
      return CompareKeys(p.keys, row, g.keys, g.row_of_group(group));
    }
  };
  int64_t i = row_lo, k = group_lo;
  while (i < row_hi && k < group_hi) {
    if (state->unresolved[k] == 0) {
      ++k;
      continue;
    }
    const int c = compare(i, k);
    if (c < 0) {
      ++i;
      continue;
    }
    if (c > 0) {
      ++k;
      continue;
    }
    int64_t j = i + 1;
    while (j < row_hi && compare(j, k) == 0) ++j;
    const int64_t begin = g.group_begin[k];
    const int64_t unresolved = state->unresolved[k];
    // Rows earlier than the key's first event here (those of earlier dates)
    // cannot match in this partition.
    if (e[i] <= st[begin + unresolved - 1]) {
      int64_t pos = i, last = -1, first_matched = unresolved;
      for (int64_t r = 0; r < unresolved; ++r) {
        const int64_t time = st[begin + r];
        while (pos < j && e[pos] <= time) {
          if (!cr || cr[pos] <= *as_of) last = pos;
          ++pos;
        }
        if (last < 0) continue;
        if (first_matched == unresolved) first_matched = r;
        matched_positions->push_back(begin + r);
        matched_rows->push_back(last);
      }
      state->unresolved[k] = first_matched;
    }
    i = j;
    ++k;
  }
}

// The first row of partition `p` whose key is >= group `k`'s key (rows are
// in key order).
int64_t FirstRowAtOrAfterGroup(const PartitionRows& p, const EntityGroups& g, int64_t k) {
  if (p.int_keys) {
    return std::lower_bound(p.int_keys, p.int_keys + p.rows(), g.group_int_key[k]) - p.int_keys;
  }
  int64_t lo = 0, hi = p.rows();
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (CompareKeys(p.keys, mid, g.keys, g.row_of_group(k)) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// A fixed-width output column gathered value by value into the entity rows'
// order (instead of Take per partition, a concatenation and a Take of the
// whole). Which rows matched is kept once, by the event time column
// (`matched`); a feature column marks only the matched rows whose value is
// null (`null_value`), so that a match writes one byte less per column.
struct GatheredColumn {
  int width = 0;                          // bytes per value
  std::shared_ptr<arrow::Buffer> values;  // n * width; written where matched
  std::vector<uint8_t> matched;           // n; the event time column only
  std::vector<uint8_t> null_value;        // n; 1: matched, but the value is null

  static Result<GatheredColumn> Make(int64_t n, int width, bool with_matched) {
    GatheredColumn c;
    c.width = width;
    ARROW_ASSIGN_OR_RAISE(c.values, arrow::AllocateBuffer(n * width));
    (with_matched ? c.matched : c.null_value).assign(static_cast<size_t>(n), 0);
    return c;
  }
  /// Marks entity rows `rows` as matched with a null value (the matched
  /// partition lacks the column).
  void MarkNull(const int64_t* rows, size_t count) {
    for (size_t i = 0; i < count; ++i) null_value[rows[i]] = 1;
  }
  /// The column as an array of `type` (its width), valid where `matched`
  /// and the value is not null (`matched_bits`: `matched` as a validity
  /// bitmap, null when every row matched, shared by the columns without
  /// null values); invalid values are zeroed.
  Result<std::shared_ptr<arrow::Array>> Finish(const std::shared_ptr<arrow::DataType>& type,
                                               const std::vector<uint8_t>& matched_rows,
                                               const std::shared_ptr<arrow::Buffer>& matched_bits,
                                               int64_t unmatched) {
    const int64_t n = static_cast<int64_t>(matched_rows.size());
    const bool own_nulls = std::find(null_value.begin(), null_value.end(), 1) != null_value.end();
    std::vector<uint8_t> own;
    const uint8_t* valid = matched_rows.data();
    std::shared_ptr<arrow::Buffer> bitmap = matched_bits;
    int64_t null_count = unmatched;
    if (own_nulls) {
      own.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) own[i] = matched_rows[i] & (null_value[i] ^ 1);
      valid = own.data();
      ARROW_ASSIGN_OR_RAISE(bitmap, BitmapOf(own, &null_count));
    }
    if (null_count > 0) {
      uint8_t* v = values->mutable_data();
      for (int64_t i = 0; i < n; ++i) {
        if (!valid[i]) std::memset(v + i * width, 0, static_cast<size_t>(width));
      }
    }
    return arrow::MakeArray(arrow::ArrayData::Make(type, n, {bitmap, values}, null_count));
  }

  /// `bytes` (0 or 1 each) as a validity bitmap, null when all are 1;
  /// *zeros: how many are 0.
  static Result<std::shared_ptr<arrow::Buffer>> BitmapOf(const std::vector<uint8_t>& bytes,
                                                         int64_t* zeros) {
    const int64_t n = static_cast<int64_t>(bytes.size());
    ARROW_ASSIGN_OR_RAISE(std::shared_ptr<arrow::Buffer> bitmap, arrow::AllocateBitmap(n));
    uint8_t* bits = bitmap->mutable_data();
    int64_t ones = 0;
    int64_t i = 0;
    // Eight bytes of 0/1 at a time into one byte of bits (LSB first).
    for (; i + 8 <= n; i += 8) {
      uint64_t word;
      std::memcpy(&word, bytes.data() + i, 8);
      word &= 0x0101010101010101ull;
      ones += __builtin_popcountll(word);
      bits[i / 8] = static_cast<uint8_t>((word * 0x0102040810204080ull) >> 56);
    }
    if (i < n) bits[i / 8] = 0;
    for (; i < n; ++i) {
      if (bytes[i]) {
        arrow::bit_util::SetBit(bits, i);
        ++ones;
      }
    }
    *zeros = n - ones;
    if (*zeros == 0) return nullptr;
    return bitmap;
  }
};

// Types gathered as GatheredColumn: those whose values are plain bytes.
bool IsGathered(const arrow::DataType& type) {
  return arrow::is_primitive(type.id()) && type.id() != arrow::Type::BOOL &&
         type.id() != arrow::Type::NA && type.byte_width() > 0;
}

// Copies values src[rows[i]] to entity row entity_rows[i] of `out`, in
// units of kWidth bytes (0: out->width, through memcpy); `is_valid(row)`
// says whether a source row has a value (null: all have).
template <int kWidth, typename IsValid>
void GatherWidth(const uint8_t* src, IsValid is_valid, const int64_t* rows,
                 const int64_t* entity_rows, size_t count, GatheredColumn* out) {
  const int w = kWidth ? kWidth : out->width;
  uint8_t* dst = out->values->mutable_data();
  if constexpr (std::is_same_v<IsValid, std::nullptr_t>) {
    for (size_t i = 0; i < count; ++i) {
      std::memcpy(dst + entity_rows[i] * w, src + rows[i] * w, static_cast<size_t>(w));
    }
  } else {
    // A row matched in an earlier (later-dated) partition is never matched
    // again, so a mark is only ever set.
    uint8_t* null_value = out->null_value.data();
    for (size_t i = 0; i < count; ++i) {
      if (is_valid(rows[i])) {
        std::memcpy(dst + entity_rows[i] * w, src + rows[i] * w, static_cast<size_t>(w));
      } else {
        null_value[entity_rows[i]] = 1;
      }
    }
  }
}

template <typename IsValid>
void GatherAnyWidth(const uint8_t* src, IsValid is_valid, const int64_t* rows,
                    const int64_t* entity_rows, size_t count, GatheredColumn* out) {
  switch (out->width) {
    case 8: return GatherWidth<8>(src, is_valid, rows, entity_rows, count, out);
    case 4: return GatherWidth<4>(src, is_valid, rows, entity_rows, count, out);
    case 2: return GatherWidth<2>(src, is_valid, rows, entity_rows, count, out);
    case 1: return GatherWidth<1>(src, is_valid, rows, entity_rows, count, out);
    default: return GatherWidth<0>(src, is_valid, rows, entity_rows, count, out);
  }
}

// Gathers from an Arrow array's values.
void Gather(const arrow::Array& col, const int64_t* rows, const int64_t* entity_rows,
            size_t count, GatheredColumn* out) {
  const uint8_t* src = col.data()->buffers[1]->data() + col.offset() * out->width;
  if (col.null_count() == 0) {
    return GatherAnyWidth(src, nullptr, rows, entity_rows, count, out);
  }
  GatherAnyWidth(src, [&](int64_t row) { return col.IsValid(row); }, rows, entity_rows, count,
                 out);
}

// Gathers from values decoded raw (`valid`: a byte per row, or null when
// every row has a value).
void GatherRaw(const uint8_t* src, const uint8_t* valid, const int64_t* rows,
               const int64_t* entity_rows, size_t count, GatheredColumn* out) {
  if (valid == nullptr) return GatherAnyWidth(src, nullptr, rows, entity_rows, count, out);
  GatherAnyWidth(src, [valid](int64_t row) { return valid[row] != 0; }, rows, entity_rows, count,
                 out);
}

// A partition is merged and gathered over key ranges of the groups, one
// range per thread at most; ranges of fewer groups than kMinGroupsPerRange
// are not worth a thread.
constexpr int64_t kMinGroupsPerRange = 4096;

// The threads a join of `n` entity rows runs on (the calling thread
// included): `requested` (PointInTimeQuery::threads, 0: one per core), but
// no more than its key ranges (at most n / kMinGroupsPerRange) and one
// reading ahead can keep busy.
int JoinThreads(int requested, int64_t n) {
  const int64_t threads =
      requested > 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
  const int64_t useful = 1 + std::max<int64_t>(1, n / kMinGroupsPerRange);
  return static_cast<int>(std::min(threads, useful));
}

// One key range of a partition's join: groups [group_lo, group_hi) and the
// partition's rows [row_lo, row_hi) with their keys; what it matched.
struct JoinRange {
  int64_t group_lo = 0, group_hi = 0, row_lo = 0, row_hi = 0;
  std::vector<int64_t> positions, rows, entity_rows;
  Status status;  // of the thread that joined it
};

// Calls `fn(b, from, to, local)` for each batch b of `p` holding matched
// partition rows rows[from, to) (`rows` ascending), `local` being those rows
// as indices into batch b.
template <typename Fn>
Status ForEachBatchRun(const PartitionRows& p, const std::vector<int64_t>& rows, Fn fn) {
  std::vector<int64_t> local;
  size_t from = 0;
  for (size_t b = 0; b < p.batches.size() && from < rows.size(); ++b) {
    const int64_t base = p.batch_begin[b], limit = p.batch_begin[b + 1];
    size_t to = from;
    while (to < rows.size() && rows[to] < limit) ++to;
    if (to == from) continue;
    local.assign(rows.begin() + from, rows.begin() + to);
    for (int64_t& r : local) r -= base;
    ARROW_RETURN_NOT_OK(fn(b, from, to, local));
    from = to;
  }
  return Status::OK();
}

// Partitions read ahead of the one the join has got to: the memory held is
// at most this many partitions plus the one being joined.
constexpr size_t kPartitionsAhead = 1;

// The join's work as tasks on a given number of threads (the caller and
// threads - 1 more), never more threads than that, so that the work on the
// critical path is not time-sliced against reading ahead:
//   - group: grouping the entity rows (once, first);
//   - read(i): reading partition i (0 = the latest), at most
//     kPartitionsAhead beyond the oldest partition not yet finished;
//   - merge(i, r): the merge and gather of partition i over key range r,
//     after read(i), the grouping and merge(i - 1, r) -- the ranges are
//     independent chains, as each touches its own groups and entity rows;
//   - finish(i): after every range of partition i (and finish(i - 1)): the
//     columns that are taken rather than gathered, then the partition's
//     memory handed back.
// A thread takes the first ready task in the order finish, merge, group,
// read: memory is released as early as it can be, and reading fills the
// time nothing else is ready. A range whose entity rows are all matched
// takes no more partitions; reading stops when every range has.
class JoinTasks {
 public:
  struct Work {
    std::function<Result<int>()> group;  // gives the number of key ranges
    std::function<Result<PartitionRows>(size_t)> read;
    /// Merges partition i's key range r; *done: the range has nothing left
    /// to match.
    std::function<Status(size_t, int, const PartitionRows&, bool* done)> merge;
    std::function<Status(size_t, PartitionRows*)> finish;
  };

  JoinTasks(Work work, size_t partitions, int threads)
      : work_(std::move(work)), read_(partitions), threads_(threads) {}

  /// Runs every task on the calling thread and threads - 1 more.
  Status Run() {
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads_; ++t) helpers.emplace_back([this] { Loop(); });
    Loop();
    for (auto& t : helpers) t.join();
    return status_;
  }

 private:
  enum class Kind { kFinish, kMerge, kGroup, kRead, kStop };
  struct Task {
    Kind kind = Kind::kStop;
    size_t partition = 0;
    int range = 0;
  };

  size_t Count() const { return read_.size(); }
  // Whether range r has merged partition i (or needs no more partitions).
  bool Merged(size_t i, size_t r) const { return next_merge_[r] > i; }
  bool AllRangesDone() const {
    if (!grouped_) return false;
    for (size_t m : next_merge_) {
      if (m < Count()) return false;
    }
    return true;
  }

  // The next ready task (kStop: none will be), under mu_.
  Task Next(std::unique_lock<std::mutex>& lock) {
    while (true) {
      if (!status_.ok()) return {};
      if (next_finish_ < next_read_ && !finishing_ && read_[next_finish_]) {
        bool merged = grouped_;
        for (size_t r = 0; r < next_merge_.size() && merged; ++r) {
          merged = Merged(next_finish_, r);
        }
        if (merged) {
          finishing_ = true;
          return {Kind::kFinish, next_finish_, 0};
        }
      }
      if (grouped_) {
        for (size_t r = 0; r < next_merge_.size(); ++r) {
          const size_t i = next_merge_[r];
          if (!range_busy_[r] && i < next_read_ && read_[i]) {
            range_busy_[r] = true;
            return {Kind::kMerge, i, static_cast<int>(r)};
          }
        }
      } else if (!grouping_) {
        grouping_ = true;
        return {Kind::kGroup, 0, 0};
      }
      if (next_read_ < Count() && next_read_ < next_finish_ + kPartitionsAhead + 1 &&
          !AllRangesDone()) {
        return {Kind::kRead, next_read_++, 0};
      }
      // Done: every range has merged what it needs, and every partition
      // read is finished (a running task keeps one of these false).
      if (AllRangesDone() && next_finish_ == next_read_) return {};
      cv_.wait(lock);
    }
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      const Task task = Next(lock);
      if (task.kind == Kind::kStop) break;
      lock.unlock();
      Status st = RunTask(task, lock);  // returns with mu_ held
      if (!st.ok() && status_.ok()) status_ = std::move(st);
      cv_.notify_all();
    }
    cv_.notify_all();
  }

  // Runs `task` without mu_; returns with it held, its effects recorded.
  Status RunTask(const Task& task, std::unique_lock<std::mutex>& lock) {
    switch (task.kind) {
      case Kind::kGroup: {
        Result<int> ranges = work_.group();
        lock.lock();
        if (!ranges.ok()) return ranges.status();
        next_merge_.assign(static_cast<size_t>(*ranges), 0);
        range_busy_.assign(static_cast<size_t>(*ranges), false);
        grouped_ = true;
        return Status::OK();
      }
      case Kind::kRead: {
        Result<PartitionRows> rows = work_.read(task.partition);
        lock.lock();
        if (!rows.ok()) return rows.status();
        read_[task.partition] = std::move(*rows);
        return Status::OK();
      }
      case Kind::kMerge: {
        // The slot is not moved or reset while one of its ranges is merged.
        const PartitionRows& rows = *read_[task.partition];
        bool done = false;
        Status st = work_.merge(task.partition, task.range, rows, &done);
        lock.lock();
        const size_t r = static_cast<size_t>(task.range);
        range_busy_[r] = false;
        next_merge_[r] = done ? Count() : task.partition + 1;
        return st;
      }
      case Kind::kFinish: {
        PartitionRows* rows = &*read_[task.partition];
        Status st = work_.finish(task.partition, rows);
        lock.lock();
        read_[task.partition].reset();
        finishing_ = false;
        ++next_finish_;
        return st;
      }
      case Kind::kStop:
        break;
    }
    lock.lock();
    return Status::OK();
  }

  Work work_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::optional<PartitionRows>> read_;  // by partition, once read
  Status status_;
  bool grouping_ = false, grouped_ = false, finishing_ = false;
  size_t next_read_ = 0;    // partitions [0, next_read_) are read or being read
  size_t next_finish_ = 0;  // partitions [0, next_finish_) are finished
  std::vector<size_t> next_merge_;  // per range: the next partition it merges
  std::vector<bool> range_busy_;
  const int threads_;
};

// The as-of join of the entity rows (`keys`: EntityKeyColumns) with the
// offline store; also groups the entity rows (into *groups, while the first
// partitions are read).
Result<AsOfMatches> AsOfJoin(OfflineStore* offline, const PointInTimeQuery& q,
                             std::vector<std::shared_ptr<arrow::Array>> keys,
                             const std::vector<std::string>& columns,
                             std::vector<std::shared_ptr<arrow::DataType>> column_types,
                             std::optional<int64_t> ttl_micros, EntityGroups* groups) {
  const FeaturePlan& plan = *q.plan;
  const std::string& fs = plan.feature_set.name;
  const int64_t n = q.times->length();
  AsOfMatches out;
  // A null type is "as stored": taken from the first partition read.
  auto make_schema = [&]() {
    std::vector<std::shared_ptr<arrow::Field>> fields{
        arrow::field(kEventTimestampColumn, kTimestampUtc)};
    for (size_t c = 0; c < columns.size(); ++c) {
      fields.push_back(arrow::field(columns[c], column_types[c] ? column_types[c] : arrow::null()));
    }
    return arrow::schema(fields);
  };
  if (n == 0) {
    *groups = GroupEntityRows(q, std::move(keys));
    std::vector<std::shared_ptr<arrow::Array>> empty;
    auto schema = make_schema();
    for (const auto& f : schema->fields()) {
      ARROW_ASSIGN_OR_RAISE(auto a, arrow::MakeArrayOfNull(f->type(), 0));
      empty.push_back(a);
    }
    out.rows = arrow::RecordBatch::Make(schema, 0, empty);
    return out;
  }
  const int64_t* t = q.times->raw_values();
  const int64_t max_t = *std::max_element(t, t + n);
  const int64_t min_t = *std::min_element(t, t + n);
  const int64_t lo = ttl_micros ? min_t - *ttl_micros : std::numeric_limits<int64_t>::min();
  // The partitions that may hold matches, latest first.
  ARROW_ASSIGN_OR_RAISE(auto dates, offline->Partitions(fs, kOfflineSchemaVersion));
  std::vector<TimestampMicros> days;
  for (auto d = dates.rbegin(); d != dates.rend(); ++d) {
    ARROW_ASSIGN_OR_RAISE(TimestampMicros day, ParseTimestamp(*d));
    if (day > max_t) continue;
    if (day + kMicrosPerDay <= lo) break;
    days.push_back(day);
  }
  const bool with_created = q.as_of.has_value();
  BufferRecycler recycler;
  std::atomic<bool> try_raw{true};  // ReadPartition's
  const std::vector<std::shared_ptr<arrow::DataType>> requested_types = column_types;
  EntityGroups& g = *groups;
  AsOfState state;
  // Key ranges: groups [range_lo[r], range_lo[r + 1]), one per thread at
  // most. Ranges of keys, not a hash of them: both sides are in key order,
  // so a range merges against one contiguous slice of every (key-sorted)
  // partition, found by binary search; a hash split would make every thread
  // scan every partition whole.
  const int threads = JoinThreads(q.threads, n);
  std::vector<int64_t> range_lo;

  // Output columns: the event time and fixed-width features gathered value by
  // value in entity row order; others (strings, lists, bools) as chunks of
  // Take per partition batch, indexed by taken_of_position (position in
  // g.order). Made when the first partition with rows is merged (a null
  // column type is the stored one).
  std::shared_ptr<arrow::Schema> out_schema;
  std::mutex out_schema_mu;
  GatheredColumn events;
  std::vector<std::optional<GatheredColumn>> gathered(columns.size());
  std::vector<size_t> taken_columns;  // indices into `columns`
  std::vector<std::shared_ptr<arrow::RecordBatch>> taken_chunks;
  std::vector<int64_t> taken_of_position;
  int64_t taken_rows = 0;
  auto make_outputs = [&](const PartitionRows& p) -> Status {
    std::lock_guard<std::mutex> lock(out_schema_mu);
    if (out_schema) return Status::OK();
    for (size_t c = 0; c < columns.size(); ++c) {
      if (column_types[c]) continue;
      if (p.raw) {
        column_types[c] = p.fixed.columns[p.fixed_first_column + c].type;
      } else if (auto field = p.batches[0]->schema()->GetFieldByName(columns[c])) {
        column_types[c] = field->type();
      }
    }
    auto schema = make_schema();
    ARROW_ASSIGN_OR_RAISE(events, GatheredColumn::Make(n, 8, /*with_matched=*/true));
    for (size_t c = 0; c < columns.size(); ++c) {
      const auto& type = *schema->field(static_cast<int>(c) + 1)->type();
      if (IsGathered(type)) {
        ARROW_ASSIGN_OR_RAISE(gathered[c], GatheredColumn::Make(n, type.byte_width(), false));
      } else {
        taken_columns.push_back(c);
      }
    }
    if (!taken_columns.empty()) taken_of_position.assign(static_cast<size_t>(n), -1);
    out_schema = std::move(schema);
    return Status::OK();
  };
  // A batch's column `c` as its output type; null when the batch lacks it
  // (a feature added after these rows were materialized: null).
  auto as_output_type = [&](const arrow::RecordBatch& batch,
                            size_t c) -> Result<std::shared_ptr<arrow::Array>> {
    auto col = batch.GetColumnByName(columns[c]);
    if (!col) return col;
    const auto& type = out_schema->field(static_cast<int>(c) + 1)->type();
    auto cast = CastTo(col, type, columns[c]);
    if (!cast.ok()) {
      return Unprocessable("features", "offline column '" + columns[c] + "' of '" + fs +
                                           "' has type " + col->type()->ToString() + ", not " +
                                           type->ToString());
    }
    return *cast;
  };

  // What each range matched in each partition, for finish (taken columns).
  std::vector<std::vector<JoinRange>> parts_of(days.size());
  JoinTasks::Work work;
  // The readers use `keys` (shared, read only) while the rows are grouped.
  work.group = [&]() -> Result<int> {
    g = GroupEntityRows(q, keys);
    state.unresolved.resize(static_cast<size_t>(g.num_groups()));
    for (int64_t k = 0; k < g.num_groups(); ++k) {
      state.unresolved[k] = g.group_begin[k + 1] - g.group_begin[k];
    }
    const int64_t num_groups = g.num_groups();
    const int ranges =
        static_cast<int>(std::clamp<int64_t>(num_groups / kMinGroupsPerRange, 1, threads));
    for (int r = 0; r <= ranges; ++r) range_lo.push_back(num_groups * r / ranges);
    for (auto& parts : parts_of) parts.resize(static_cast<size_t>(ranges));
    return ranges;
  };
  work.read = [&](size_t i) {
    const TimestampMicros end = std::min(days[i] + kMicrosPerDay, max_t + 1);
    return ReadPartition(offline, plan, keys, days[i], end, columns, requested_types,
                         with_created, &try_raw, &recycler);
  };
  // The partition is merged and its values gathered over one key range of
  // the groups and the matching range of the partition's rows (both sides
  // are in key order, so a range split needs no shuffle). Each range's
  // entity rows are its own, so the gathered columns are written without
  // locks.
  work.merge = [&](size_t i, int r, const PartitionRows& p, bool* done) -> Status {
    JoinRange& part = parts_of[i][static_cast<size_t>(r)];
    part.group_lo = range_lo[r];
    part.group_hi = range_lo[r + 1];
    auto unresolved_in_range = [&] {
      int64_t total = 0;
      for (int64_t k = part.group_lo; k < part.group_hi; ++k) total += state.unresolved[k];
      return total;
    };
    if (p.rows() == 0) {
      *done = unresolved_in_range() == 0;
      return Status::OK();
    }
    ARROW_RETURN_NOT_OK(make_outputs(p));
    part.row_lo = part.group_lo == 0 ? 0 : FirstRowAtOrAfterGroup(p, g, part.group_lo);
    part.row_hi =
        part.group_hi == g.num_groups() ? p.rows() : FirstRowAtOrAfterGroup(p, g, part.group_hi);
    if (g.int_keys) {
      MergePartition<true>(p, g, q.as_of, part.row_lo, part.row_hi, part.group_lo,
                           part.group_hi, &state, &part.positions, &part.rows);
    } else {
      MergePartition<false>(p, g, q.as_of, part.row_lo, part.row_hi, part.group_lo,
                            part.group_hi, &state, &part.positions, &part.rows);
    }
    *done = unresolved_in_range() == 0;
    int64_t* event_values = reinterpret_cast<int64_t*>(events.values->mutable_data());
    part.entity_rows.resize(part.positions.size());
    for (size_t j = 0; j < part.positions.size(); ++j) {
      const int64_t row = g.order[part.positions[j]];
      part.entity_rows[j] = row;
      events.matched[row] = 1;
      event_values[row] = p.events[part.rows[j]];
    }
    if (p.raw) {
      for (size_t c = 0; c < columns.size(); ++c) {
        const FixedWidthColumn& col = p.fixed.columns[p.fixed_first_column + c];
        if (!gathered[c]) continue;
        if (!col.type) {
          gathered[c]->MarkNull(part.entity_rows.data(), part.entity_rows.size());
          continue;
        }
        GatherRaw(col.values->data(), col.has_nulls ? col.valid->data() : nullptr,
                  part.rows.data(), part.entity_rows.data(), part.rows.size(), &*gathered[c]);
      }
      return Status::OK();
    }
    // The fixed-width values, batch by batch.
    return ForEachBatchRun(p, part.rows, [&](size_t b, size_t from, size_t to,
                                             const std::vector<int64_t>& local) -> Status {
      for (size_t c = 0; c < columns.size(); ++c) {
        if (!gathered[c]) continue;
        ARROW_ASSIGN_OR_RAISE(auto col, as_output_type(*p.batches[b], c));
        if (col) {
          Gather(*col, local.data(), part.entity_rows.data() + from, to - from, &*gathered[c]);
        } else {
          gathered[c]->MarkNull(part.entity_rows.data() + from, to - from);
        }
      }
      return Status::OK();
    });
  };
  // Other columns (strings, lists, bools): Take per batch.
  work.finish = [&](size_t i, PartitionRows* p) -> Status {
    std::vector<JoinRange> parts = std::move(parts_of[i]);
    if (p->raw && !taken_columns.empty() && p->rows() > 0) {
      // Taken columns are of types never read raw (ReadPartitionRaw).
      return Status::Invalid("point-in-time join: a partition read raw has taken columns");
    }
    if (taken_columns.empty() || p->rows() == 0) {
      recycler.Put(p);
      return Status::OK();
    }
    std::vector<int64_t> positions, rows;
    for (const JoinRange& part : parts) {
      positions.insert(positions.end(), part.positions.begin(), part.positions.end());
      rows.insert(rows.end(), part.rows.begin(), part.rows.end());
    }
    ARROW_RETURN_NOT_OK(ForEachBatchRun(*p, rows, [&](size_t b, size_t from, size_t,
                                                      const std::vector<int64_t>& local) -> Status {
      std::vector<int64_t> distinct;  // for Take: each matched row once
      for (size_t j = 0; j < local.size(); ++j) {
        if (distinct.empty() || distinct.back() != local[j]) distinct.push_back(local[j]);
        taken_of_position[positions[from + j]] =
            taken_rows + static_cast<int64_t>(distinct.size()) - 1;
      }
      ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(distinct));
      std::vector<std::shared_ptr<arrow::Field>> fields;
      std::vector<std::shared_ptr<arrow::Array>> arrays;
      for (size_t c : taken_columns) {
        const auto& field = out_schema->field(static_cast<int>(c) + 1);
        ARROW_ASSIGN_OR_RAISE(auto col, as_output_type(*p->batches[b], c));
        std::shared_ptr<arrow::Array> taken;
        if (!col) {
          ARROW_ASSIGN_OR_RAISE(taken, arrow::MakeArrayOfNull(field->type(), index->length()));
        } else {
          ARROW_ASSIGN_OR_RAISE(auto datum, cp::Take(*col, *index));
          taken = datum;
        }
        fields.push_back(field);
        arrays.push_back(taken);
      }
      taken_chunks.push_back(
          arrow::RecordBatch::Make(arrow::schema(fields), index->length(), arrays));
      taken_rows += index->length();
      return Status::OK();
    }));
    recycler.Put(p);
    return Status::OK();
  };
  JoinTasks tasks(std::move(work), days.size(), threads);
  ARROW_RETURN_NOT_OK(tasks.Run());
  if (!out_schema) {  // no partition with rows: nothing matched
    out_schema = make_schema();
    ARROW_ASSIGN_OR_RAISE(events, GatheredColumn::Make(n, 8, /*with_matched=*/true));
  }
  if (ttl_micros) {
    // A match older than the ttl is no match.
    const int64_t* event_values = reinterpret_cast<const int64_t*>(events.values->data());
    for (int64_t j = 0; j < n; ++j) {
      const int64_t row = g.order[j];
      if (events.matched[row] && event_values[row] < g.sorted_times[j] - *ttl_micros) {
        events.matched[row] = 0;
        if (!taken_of_position.empty()) taken_of_position[j] = -1;
      }
    }
  }
  std::vector<std::shared_ptr<arrow::Array>> arrays(columns.size() + 1);
  out.matched = events.matched;
  int64_t unmatched = 0;
  ARROW_ASSIGN_OR_RAISE(auto matched_bits, GatheredColumn::BitmapOf(out.matched, &unmatched));
  ARROW_ASSIGN_OR_RAISE(arrays[0],
                        events.Finish(kTimestampUtc, out.matched, matched_bits, unmatched));
  for (size_t c = 0; c < columns.size(); ++c) {
    const auto& type = out_schema->field(static_cast<int>(c) + 1)->type();
    if (gathered[c]) {
      ARROW_ASSIGN_OR_RAISE(arrays[c + 1],
                            gathered[c]->Finish(type, out.matched, matched_bits, unmatched));
    } else if (taken_of_position.empty()) {
      ARROW_ASSIGN_OR_RAISE(arrays[c + 1], arrow::MakeArrayOfNull(type, n));  // nothing read
    }
  }
  if (!taken_of_position.empty()) {
    std::vector<int64_t> taken_of_row(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) taken_of_row[g.order[j]] = taken_of_position[j];
    ARROW_ASSIGN_OR_RAISE(auto index, OptionalIndexArray(taken_of_row));
    std::vector<std::shared_ptr<arrow::Field>> fields;
    for (size_t c : taken_columns) fields.push_back(out_schema->field(static_cast<int>(c) + 1));
    ARROW_ASSIGN_OR_RAISE(auto all, arrow::Table::FromRecordBatches(arrow::schema(fields),
                                                                    taken_chunks));
    ARROW_ASSIGN_OR_RAISE(auto combined, all->CombineChunksToBatch());
    ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(combined, index));
    for (size_t i = 0; i < taken_columns.size(); ++i) {
      arrays[taken_columns[i] + 1] = taken.record_batch()->column(static_cast<int>(i));
    }
  }
  out.rows = arrow::RecordBatch::Make(out_schema, n, arrays);
  return out;
}

// The feature's default_value as a scalar of `type` (null when absent or not
// representable).
std::shared_ptr<arrow::Scalar> DefaultScalar(const Feature& f,
                                             const std::shared_ptr<arrow::DataType>& type) {
  auto null = arrow::MakeNullScalar(type);
  if (!f.default_value || f.default_value->is_null()) return null;
  const boost::json::value& v = *f.default_value;
  switch (type->id()) {
    case arrow::Type::INT64:
      if (v.is_int64()) return std::make_shared<arrow::Int64Scalar>(v.as_int64());
      if (v.is_uint64()) return std::make_shared<arrow::Int64Scalar>(static_cast<int64_t>(v.as_uint64()));
      if (v.is_double()) return std::make_shared<arrow::Int64Scalar>(static_cast<int64_t>(v.as_double()));
      return null;
    case arrow::Type::DOUBLE:
      if (v.is_number()) return std::make_shared<arrow::DoubleScalar>(v.to_number<double>());
      return null;
    case arrow::Type::BOOL:
      if (v.is_bool()) return std::make_shared<arrow::BooleanScalar>(v.as_bool());
      return null;
    case arrow::Type::STRING:
      if (v.is_string()) return std::make_shared<arrow::StringScalar>(std::string(v.as_string()));
      return null;
    case arrow::Type::TIMESTAMP:
      if (v.is_string()) {
        auto t = ParseTimestamp(v.as_string());
        if (t.ok()) return std::make_shared<arrow::TimestampScalar>(*t, type);
      }
      return null;
    default:
      return null;  // lists: not representable as a default here
  }
}

// `values` where an offline row matched, the feature's default elsewhere
// (the unmatched rows of a plain feature are null already). `computed`:
// values that exist without a matched row (a window computed from the
// source), nulled where nothing matched first, so that an entity row with
// no live row gets what online serving gives an entity it does not have.
Result<std::shared_ptr<arrow::Array>> WithDefault(const std::shared_ptr<arrow::Array>& values,
                                                  const std::vector<uint8_t>& is_matched,
                                                  const Feature& f, bool computed = false) {
  auto scalar = DefaultScalar(f, values->type());
  if (!scalar->is_valid && !computed) return values;
  arrow::BooleanBuilder matched;
  ARROW_RETURN_NOT_OK(matched.Reserve(values->length()));
  for (uint8_t m : is_matched) matched.UnsafeAppend(m != 0);
  ARROW_ASSIGN_OR_RAISE(auto mask, matched.Finish());
  ARROW_ASSIGN_OR_RAISE(auto out, cp::IfElse(mask, values, scalar));
  return out.make_array();
}

// Puts values given in `order` (value j belongs to row order[j]) back in row order.
Result<std::shared_ptr<arrow::Array>> Unpermute(const std::shared_ptr<arrow::Array>& values,
                                                const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t j = 0; j < order.size(); ++j) inverse[order[j]] = static_cast<int64_t>(j);
  ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(inverse));
  ARROW_ASSIGN_OR_RAISE(auto out, cp::Take(*values, *index));
  return out;
}

// `expression` over `rows` with the clock at `clock`; its errors name
// `feature` (field "features").
Result<std::shared_ptr<arrow::Array>> EvaluateAt(const CompiledExpression& expression,
                                                 const arrow::RecordBatch& rows,
                                                 TimestampMicros clock, const Feature& feature) {
  EvalContext ctx;
  ctx.clock = clock;
  auto r = expression.Evaluate(rows, ctx);
  if (!r.ok()) {
    return MakeError(ErrorCodeOf(r.status()),
                     "feature '" + feature.name + "': " + ErrorMessageOf(r.status()), "features");
  }
  return *r;
}

// Indices 0..n-1 taken in runs of equal time (`time_of(i)`; stably, so a run's
// indices ascend): `piece(t, run)` gives the values of a run, and the pieces
// come back concatenated in index order (empty: an array of `type`).
template <typename TimeOf, typename Piece>
Result<std::shared_ptr<arrow::Array>> PerDistinctTime(int64_t n, TimeOf time_of,
                                                      const std::shared_ptr<arrow::DataType>& type,
                                                      Piece piece) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return time_of(a) < time_of(b); });
  arrow::ArrayVector pieces;
  for (int64_t i = 0; i < n;) {
    const int64_t t = time_of(order[i]);
    int64_t j = i;
    while (j < n && time_of(order[j]) == t) ++j;
    const std::vector<int64_t> run(order.begin() + i, order.begin() + j);
    ARROW_ASSIGN_OR_RAISE(auto values, piece(t, run));
    pieces.push_back(std::move(values));
    i = j;
  }
  if (pieces.empty()) return arrow::MakeArrayOfNull(type, 0);
  ARROW_ASSIGN_OR_RAISE(auto all, arrow::Concatenate(pieces));
  return Unpermute(all, order);
}

// Reads a feature set's source rows for windows recomputed at the entity
// rows' times, one event-time range at a time, projected to `columns`. A
// feature set with a Python transformation has its windows over the step's
// output: every source column is read and the step run over them first, as a
// materialization does (range by range too: the step is row-wise,
// python_step.h).
class WindowSourceReader {
 public:
  /// `fs` must outlive the reader.
  WindowSourceReader(const FeatureSet& fs, std::vector<std::string> columns)
      : fs_(fs), columns_(std::move(columns)) {}

  /// The rows with event time in [start, end); *bytes_read: the in-memory
  /// size of the source columns read for them (before the Python step).
  Result<std::shared_ptr<arrow::Table>> Read(TimestampMicros start, TimestampMicros end,
                                             int64_t* bytes_read) {
    SourceReadStats stats;
    if (!fs_.python_transformation) {
      auto source = ReadSourceRange(fs_, columns_, start, end, &stats);
      if (!source.ok()) return Unreadable(source.status());
      *bytes_read = stats.bytes;
      return *source;
    }
    if (source_columns_.empty()) {
      if (!fs_.source) return Unreadable(InvalidArgument("source", "the feature set has no source"));
      auto schema = RequireSourceSchema(*fs_.source);
      if (!schema.ok()) return Unreadable(schema.status());
      source_columns_ = (*schema)->field_names();
    }
    auto source = ReadSourceRange(fs_, source_columns_, start, end, &stats);
    if (!source.ok()) return Unreadable(source.status());
    *bytes_read = stats.bytes;
    if (!python_) {  // once, after the first read (a source error comes first)
      ARROW_ASSIGN_OR_RAISE(auto spec, PythonSpecOf(fs_));
      ARROW_ASSIGN_OR_RAISE(python_, PythonTransformation::Make(std::move(spec)));
    }
    auto transformed = ApplyPythonStep(*python_, *source, columns_);
    if (!transformed.ok()) {
      return MakeError(ErrorCodeOf(transformed.status()),
                       "feature set '" + fs_.name + "': its python_transformation, run over the "
                       "source rows its windows aggregate, failed: " +
                           ErrorMessageOf(transformed.status()),
                       "python_transformation");
    }
    return *transformed;
  }

 private:
  Status Unreadable(const arrow::Status& status) const {
    return Unprocessable("feature_sets", "the windowed features of feature set '" + fs_.name +
                                             "' are computed from its source, which cannot be "
                                             "read: " + ErrorMessageOf(status));
  }

  const FeatureSet& fs_;
  const std::vector<std::string> columns_;
  std::vector<std::string> source_columns_;  // with a Python step: every source column
  std::shared_ptr<PythonTransformation> python_;
};

// The source columns a chunk of WindowEvents aims at reading, in bytes in
// memory. As a materialization's chunks (materialization_engine.cc), a chunk
// is a day first, then as many days as the last chunk's rate says fit,
// between 1 and kMaxWindowChunkDays; by bytes rather than rows, as a Python
// step reads every source column. Reading a chunk takes a few times its size
// at its peak (the reader's copies); a smaller target means more reads,
// each a scan of the whole source when it is not in time order.
constexpr double kWindowChunkTargetBytes = 16 << 20;
constexpr int64_t kMaxWindowChunkDays = 31;

// The source rows of the entities asked about (null keys or times are no
// entity's) that windows of up to `range` at the entity rows' times can see,
// projected to `columns`, by (group, event time, created time, input order)
// -- the materialization's order, which decides first_value/last_value among
// peers; *groups and *times: each row's group and event time.
//
// The source is read in chunks of event time, in time order, each cut down
// to the asked entities' rows before the next is read: the memory held is a
// chunk plus the rows kept, not the source's range, however many entities
// the source has. Peers (equal group, time and created time) are in the same
// chunk, in source order, so the stable sort gives the order a single read
// of the whole range would.
Result<std::shared_ptr<arrow::RecordBatch>> WindowEvents(const PointInTimeQuery& q,
                                                         const EntityGroups& g,
                                                         const std::vector<std::string>& columns,
                                                         int64_t range, std::vector<int64_t>* groups,
                                                         std::vector<int64_t>* times) {
  const FeaturePlan& plan = *q.plan;
  const FeatureSet& fs = plan.feature_set;
  const int64_t n = q.times->length();
  const int64_t* t = q.times->raw_values();
  const int64_t min_t = *std::min_element(t, t + n), max_t = *std::max_element(t, t + n);
  const TimestampMicros start = min_t - range, end = max_t + 1;
  const bool with_created = !fs.created_timestamp_field.empty();
  std::string key;
  std::unordered_map<std::string, int64_t> group_of_key;
  for (int64_t k = 0; k < g.num_groups(); ++k) {
    EncodeKey(g.keys, g.row_of_group(k), &key);
    group_of_key.emplace(key, k);
  }
  WindowSourceReader reader(fs, columns);
  // The rows kept, chunk by chunk in time order (a chunk's in source order),
  // with each one's group, event time and created time.
  std::vector<std::shared_ptr<arrow::RecordBatch>> kept;
  std::shared_ptr<arrow::RecordBatch> none_kept;  // the first chunk's, emptied
  std::vector<int64_t> kept_groups, kept_times, kept_created;
  int64_t chunk = kMicrosPerDay;
  for (TimestampMicros from = start; from < end;) {
    const TimestampMicros to = end - from <= chunk ? end : from + chunk;
    int64_t bytes_read = 0;
    ARROW_ASSIGN_OR_RAISE(auto source, reader.Read(from, to, &bytes_read));
    ARROW_ASSIGN_OR_RAISE(auto batch, source->CombineChunksToBatch());
    source.reset();
    std::vector<std::shared_ptr<arrow::Array>> keys;
    for (size_t c = 0; c < plan.key_columns.size(); ++c) {
      ARROW_ASSIGN_OR_RAISE(auto col, CastTo(batch->GetColumnByName(plan.key_columns[c]),
                                             g.keys[c]->type(), plan.key_columns[c]));
      keys.push_back(col);
    }
    auto event = TimestampsAsInt64(batch->GetColumnByName(fs.timestamp_field));
    std::shared_ptr<arrow::Int64Array> created;
    if (with_created) {
      created = TimestampsAsInt64(batch->GetColumnByName(fs.created_timestamp_field));
    }
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < batch->num_rows(); ++i) {
      if (event->IsNull(i)) continue;
      if (created && created->IsNull(i)) continue;
      if (created && q.as_of && created->Value(i) > *q.as_of) continue;
      bool null_key = false;
      for (const auto& k : keys) null_key = null_key || k->IsNull(i);
      if (null_key) continue;
      EncodeKey(keys, i, &key);
      auto it = group_of_key.find(key);
      if (it == group_of_key.end()) continue;
      rows.push_back(i);
      kept_groups.push_back(it->second);
      kept_times.push_back(event->Value(i));
      if (created) kept_created.push_back(created->Value(i));
    }
    ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(rows));
    ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(batch, index));
    if (!rows.empty()) {
      kept.push_back(taken.record_batch());
    } else if (kept.empty() && !none_kept) {
      none_kept = taken.record_batch();
    }
    // The next chunk: as many days as this one's rate says fit in
    // kWindowChunkTargetBytes; twice as many when it read nothing (the
    // range may begin before the source's first event), so that an empty
    // day does not make the next chunk as long as can be.
    const double bytes_per_day = static_cast<double>(bytes_read) /
                                 (static_cast<double>(to - from) / kMicrosPerDay);
    const double days = bytes_per_day > 0 ? std::round(kWindowChunkTargetBytes / bytes_per_day)
                                          : 2.0 * static_cast<double>(chunk / kMicrosPerDay);
    chunk = std::clamp<int64_t>(static_cast<int64_t>(days), 1, kMaxWindowChunkDays) * kMicrosPerDay;
    from = to;
  }
  std::shared_ptr<arrow::RecordBatch> all = none_kept;
  if (!kept.empty()) {
    ARROW_ASSIGN_OR_RAISE(auto table, arrow::Table::FromRecordBatches(kept[0]->schema(), kept));
    kept.clear();
    ARROW_ASSIGN_OR_RAISE(all, table->CombineChunksToBatch());
  }
  std::vector<int64_t> order(kept_groups.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (kept_groups[a] != kept_groups[b]) return kept_groups[a] < kept_groups[b];
    if (kept_times[a] != kept_times[b]) return kept_times[a] < kept_times[b];
    if (with_created) return kept_created[a] < kept_created[b];
    return false;
  });
  groups->reserve(order.size());
  times->reserve(order.size());
  for (int64_t r : order) {
    groups->push_back(kept_groups[r]);
    times->push_back(kept_times[r]);
  }
  ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(order));
  ARROW_ASSIGN_OR_RAISE(auto sorted, cp::Take(all, index));
  return sorted.record_batch();
}

// A windowed feature whose argument reads the clock: the argument depends on
// the entity row's time t, so it is evaluated once per distinct t, with the
// clock at t, over the events those rows' windows can see (their groups'
// events with time in [t - range, t]); the aggregate is then taken at t.
// `events` and `event_groups`/`event_times` are sorted by (group, time), the
// queries (`query_groups`, `query_times`) by group then time. The result is
// in query order. Its cost grows with the number of distinct times.
Result<std::shared_ptr<arrow::Array>> ClockedWindowAtTimes(
    const PlannedFeature& p, const std::shared_ptr<arrow::RecordBatch>& events,
    const std::vector<int64_t>& event_groups, const std::vector<int64_t>& event_times,
    const std::vector<int64_t>& query_groups, const std::vector<int64_t>& query_times,
    int64_t num_groups) {
  const int64_t range = p.window->range_micros;
  std::vector<int64_t> first(static_cast<size_t>(num_groups + 1), 0);
  for (int64_t gr : event_groups) ++first[static_cast<size_t>(gr + 1)];
  std::partial_sum(first.begin(), first.end(), first.begin());
  ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p.feature.data_type));
  auto at_time = [&](int64_t t, const std::vector<int64_t>& run)
      -> Result<std::shared_ptr<arrow::Array>> {
    // The run's queries in group order; the events their windows can see.
    std::vector<int64_t> ev_index, ev_group, ev_time, q_group;
    int64_t last_group = -1;
    for (int64_t query : run) {
      const int64_t gr = query_groups[query];
      q_group.push_back(gr);
      if (gr == last_group) continue;
      last_group = gr;
      auto begin = event_times.begin() + first[gr], end = event_times.begin() + first[gr + 1];
      auto lo = std::lower_bound(begin, end, t - range);
      auto hi = std::upper_bound(lo, end, t);
      for (auto it = lo; it != hi; ++it) {
        ev_index.push_back(it - event_times.begin());
        ev_group.push_back(gr);
        ev_time.push_back(*it);
      }
    }
    ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(ev_index));
    ARROW_ASSIGN_OR_RAISE(auto seen, cp::Take(events, index));
    ARROW_ASSIGN_OR_RAISE(auto argument,
                          EvaluateAt(*p.expression, *seen.record_batch(), t, p.feature));
    ARROW_ASSIGN_OR_RAISE(auto eg, Int64ArrayOf(ev_group));
    ARROW_ASSIGN_OR_RAISE(auto et, Int64ArrayOf(ev_time));
    ARROW_ASSIGN_OR_RAISE(auto qg, Int64ArrayOf(q_group));
    ARROW_ASSIGN_OR_RAISE(auto qt, Int64ArrayOf(std::vector<int64_t>(run.size(), t)));
    ARROW_ASSIGN_OR_RAISE(auto values, WindowAtTimes(*p.window, *eg, *et, argument, *qg, *qt));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p.feature, values));
    return col.values;
  };
  return PerDistinctTime(
      static_cast<int64_t>(query_groups.size()), [&](int64_t i) { return query_times[i]; }, type,
      at_time);
}

// Windowed features at the entity rows' times, from the source.
Result<std::map<std::string, std::shared_ptr<arrow::Array>>> WindowsAtRows(
    const PointInTimeQuery& q, const EntityGroups& g,
    const std::vector<const PlannedFeature*>& windows) {
  std::map<std::string, std::shared_ptr<arrow::Array>> out;
  if (windows.empty()) return out;
  const FeaturePlan& plan = *q.plan;
  const FeatureSet& fs = plan.feature_set;
  const int64_t n = q.times->length();
  std::vector<int64_t> query_groups(static_cast<size_t>(n)), query_times(static_cast<size_t>(n));
  for (int64_t k = 0; k < g.num_groups(); ++k) {
    for (int64_t j = g.group_begin[k]; j < g.group_begin[k + 1]; ++j) {
      query_groups[j] = k;
      query_times[j] = g.sorted_times[j];
    }
  }
  int64_t range = 0;
  std::vector<std::string> columns = plan.key_columns;
  auto add = [&](const std::string& c) {
    if (std::find(columns.begin(), columns.end(), c) == columns.end()) columns.push_back(c);
  };
  add(fs.timestamp_field);
  if (!fs.created_timestamp_field.empty()) add(fs.created_timestamp_field);
  for (const PlannedFeature* p : windows) {
    range = std::max(range, p->window->range_micros);
    if (p->expression) {
      for (const auto& c : p->expression->input_columns()) add(c);
    }
  }
  std::shared_ptr<arrow::RecordBatch> events;
  std::vector<int64_t> event_groups, event_times;
  if (n > 0) {
    ARROW_ASSIGN_OR_RAISE(events,
                          WindowEvents(q, g, columns, range, &event_groups, &event_times));
  }
  ARROW_ASSIGN_OR_RAISE(auto ev_groups, Int64ArrayOf(event_groups));
  ARROW_ASSIGN_OR_RAISE(auto ev_times, Int64ArrayOf(event_times));
  ARROW_ASSIGN_OR_RAISE(auto qg, Int64ArrayOf(query_groups));
  ARROW_ASSIGN_OR_RAISE(auto qt, Int64ArrayOf(query_times));
  for (const PlannedFeature* p : windows) {
    if (p->reads_clock && p->expression && events) {
      ARROW_ASSIGN_OR_RAISE(auto values, ClockedWindowAtTimes(*p, events, event_groups, event_times,
                                                              query_groups, query_times,
                                                              g.num_groups()));
      ARROW_ASSIGN_OR_RAISE(out[p->feature.name], Unpermute(values, g.order));
      continue;
    }
    std::shared_ptr<arrow::Array> argument;
    const int64_t rows = ev_times->length();
    if (p->expression && events) {
      EvalContext ctx;
      auto r = p->expression->Evaluate(*events, ctx);
      if (!r.ok()) {
        return MakeError(ErrorCodeOf(r.status()),
                         "feature '" + p->feature.name + "': " + ErrorMessageOf(r.status()),
                         "features");
      }
      argument = *r;
    } else {
      ARROW_ASSIGN_OR_RAISE(argument, arrow::MakeArrayOfNull(arrow::null(), rows));
    }
    ARROW_ASSIGN_OR_RAISE(auto values,
                          WindowAtTimes(*p->window, *ev_groups, *ev_times, argument, *qg, *qt));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(p->feature, values));
    ARROW_ASSIGN_OR_RAISE(out[p->feature.name], Unpermute(col.values, g.order));
  }
  return out;
}

// A clock-reading feature re-evaluated with the clock at each entity row's
// time, from its stored inputs (`matched`: the matched offline rows in entity
// row order, nulls where unmatched).
Result<std::shared_ptr<arrow::Array>> ClockFeatureAtRows(const PointInTimeQuery& q,
                                                         const PlannedFeature& p,
                                                         const arrow::RecordBatch& matched) {
  const FeaturePlan& plan = *q.plan;
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& k : plan.key_columns) {
    auto col = matched.GetColumnByName(k);
    if (col) {
      fields.push_back(arrow::field(k, col->type()));
      arrays.push_back(col);
    }
  }
  fields.push_back(arrow::field(plan.feature_set.timestamp_field, kTimestampUtc));
  arrays.push_back(matched.GetColumnByName(kEventTimestampColumn));
  for (const auto& c : plan.clock_inputs) {
    auto col = matched.GetColumnByName(std::string(kClockInputPrefix) + c);
    if (!col) {
      return Unprocessable("features", "feature '" + p.feature.name +
                                           "' reads the clock but its stored input '" + c +
                                           "' is not in the offline store: re-materialize");
    }
    fields.push_back(arrow::field(c, col->type()));
    arrays.push_back(col);
  }
  auto batch = arrow::RecordBatch::Make(arrow::schema(fields), matched.num_rows(), arrays);
  return EvaluateWithClockAt(*p.expression, batch, *q.times, p.feature);
}

}  // namespace

Result<std::shared_ptr<arrow::Array>> EvaluateWithClockAt(const CompiledExpression& expression,
                                                          const std::shared_ptr<arrow::RecordBatch>& rows,
                                                          const arrow::Int64Array& times,
                                                          const Feature& feature) {
  if (!expression.reads_clock()) {
    ARROW_ASSIGN_OR_RAISE(auto values, EvaluateAt(expression, *rows, 0, feature));
    ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(feature, values));
    return col.values;
  }
  ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(feature.data_type));
  return PerDistinctTime(
      rows->num_rows(), [&](int64_t i) { return times.Value(i); }, type,
      [&](int64_t t, const std::vector<int64_t>& run) -> Result<std::shared_ptr<arrow::Array>> {
        ARROW_ASSIGN_OR_RAISE(auto index, Int64ArrayOf(run));
        ARROW_ASSIGN_OR_RAISE(auto sub, cp::Take(rows, index));
        ARROW_ASSIGN_OR_RAISE(auto values, EvaluateAt(expression, *sub.record_batch(), t, feature));
        ARROW_ASSIGN_OR_RAISE(CheckedColumn col, CheckFeatureColumn(feature, values));
        return col.values;
      });
}

Result<std::vector<std::shared_ptr<arrow::Array>>> RetrievePointInTime(
    OfflineStore* offline, const PointInTimeQuery& q) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  const FeaturePlan& plan = *q.plan;
  if (!q.entity_keys || !q.times || q.entity_keys->num_rows() != q.times->length()) {
    return arrow::Status::Invalid("entity keys and times differ in length");
  }
  if (q.times->null_count() > 0) {
    return InvalidArgument("entity_df.data", "entity row times must not be null");
  }
  std::optional<int64_t> ttl;
  if (!plan.feature_set.ttl.empty()) {
    auto parsed = ParseDuration(plan.feature_set.ttl);
    if (!parsed.ok()) {
      return Unprocessable("ttl", "feature set '" + plan.feature_set.name + "' has an invalid ttl '" +
                                      plan.feature_set.ttl + "'");
    }
    ttl = *parsed;
  }
  // Which features come from where.
  std::vector<const PlannedFeature*> wanted, windows, clocked;
  std::vector<std::string> columns;  // offline columns to fetch
  std::vector<std::shared_ptr<arrow::DataType>> column_types;
  auto fetch = [&](const std::string& c, std::shared_ptr<arrow::DataType> type) {
    if (std::find(columns.begin(), columns.end(), c) != columns.end()) return;
    columns.push_back(c);
    column_types.push_back(std::move(type));
  };
  for (const auto& name : q.features) {
    if (std::find(plan.read_time_features.begin(), plan.read_time_features.end(), name) !=
        plan.read_time_features.end()) {
      return MakeError(ErrorCode::kNotImplemented,
                       "feature '" + plan.feature_set.name + ":" + name +
                           "' is derived from features of other feature sets; historical "
                           "retrieval of such features is not built yet",
                       "features");
    }
    auto it = std::find_if(plan.features.begin(), plan.features.end(),
                           [&](const PlannedFeature& p) { return p.feature.name == name; });
    if (it == plan.features.end()) {
      return InvalidArgument("features", "feature '" + name + "' is not in feature set '" +
                                             plan.feature_set.name + "'");
    }
    const PlannedFeature* p = &*it;
    wanted.push_back(p);
    if (p->kind == PlannedFeature::Kind::kWindow) {
      windows.push_back(p);
    } else if (p->reads_clock && p->kind == PlannedFeature::Kind::kScalar) {
      clocked.push_back(p);
    } else {
      ARROW_ASSIGN_OR_RAISE(auto type, ArrowTypeOf(p->feature.data_type));
      fetch(p->feature.name, type);
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto keys, EntityKeyColumns(q));
  if (!clocked.empty()) {
    for (size_t c = 0; c < plan.key_columns.size(); ++c) {
      fetch(plan.key_columns[c], keys[c]->type());
    }
    // The stored inputs, read with the type they are stored with (null type).
    for (const auto& c : plan.clock_inputs) fetch(std::string(kClockInputPrefix) + c, nullptr);
  }

  EntityGroups groups;
  ARROW_ASSIGN_OR_RAISE(AsOfMatches matches,
                        AsOfJoin(offline, q, std::move(keys), columns, column_types, ttl, &groups));
  auto matched = matches.rows;
  ARROW_ASSIGN_OR_RAISE(auto window_values, WindowsAtRows(q, groups, windows));

  std::vector<std::shared_ptr<arrow::Array>> out;
  for (const PlannedFeature* p : wanted) {
    std::shared_ptr<arrow::Array> values;
    if (p->kind == PlannedFeature::Kind::kWindow) {
      ARROW_ASSIGN_OR_RAISE(values, WithDefault(window_values.at(p->feature.name),
                                                matches.matched, p->feature, /*computed=*/true));
      out.push_back(values);
      continue;
    }
    if (std::find(clocked.begin(), clocked.end(), p) != clocked.end()) {
      ARROW_ASSIGN_OR_RAISE(values, ClockFeatureAtRows(q, *p, *matched));
    } else {
      values = matched->GetColumnByName(p->feature.name);
    }
    ARROW_ASSIGN_OR_RAISE(values, WithDefault(values, matches.matched, p->feature));
    out.push_back(values);
  }
  return out;
}

}  // namespace fstore
