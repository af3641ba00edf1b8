#include "fstore/core/entity_time_order.h"
#include "fstore/offline/offline_store.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <unistd.h>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/filesystem/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/dictionary.h>
#include <arrow/ipc/reader.h>
#include <arrow/ipc/writer.h>
#include <arrow/util/base64.h>
#include <boost/json.hpp>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/schema.h>
#include <parquet/arrow/writer.h>
#include <parquet/column_reader.h>
#include <parquet/metadata.h>
#include <parquet/properties.h>
#include <parquet/statistics.h>

#include "fstore/offline/parquet_encryption.h"

namespace fstore {
namespace {

namespace cp = arrow::compute;

constexpr char kDatePrefix[] = "date=";
constexpr char kPartPrefix[] = "part-";
constexpr char kParquetSuffix[] = ".parquet";
constexpr char kMarkerPrefix[] = "_generation-";
constexpr char kMarkerSuffix[] = ".json";
constexpr char kTempPrefix[] = ".";
constexpr char kTempSuffix[] = ".tmp";
constexpr int kMarkerFormat = 1;

const std::shared_ptr<arrow::DataType>& TimestampType() {
  static const auto type = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  return type;
}

// ---------------------------------------------------------------------------
// Names and paths

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// A feature set name or job id becomes a path component: keep it to a safe
// alphabet, and away from the names the store itself uses ('.' temp files,
// '_' markers).
Status CheckName(const std::string& field, const std::string& name) {
  if (name.empty()) return InvalidArgument(field, "must not be empty");
  if (name.size() > 200) return InvalidArgument(field, "longer than 200 characters");
  if (name.front() == '.' || name.front() == '_') {
    return InvalidArgument(field, "'" + name + "' must not start with '.' or '_'");
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return InvalidArgument(field,
                             "'" + name + "' may only contain letters, digits, '_', '-', '.'");
    }
  }
  return Status::OK();
}

std::string JoinPath(const std::string& base, const std::string& name) {
  if (base.empty()) return name;
  if (base.back() == '/') return base + name;
  return base + "/" + name;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::optional<int64_t> ParseInt(std::string_view s) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// ---------------------------------------------------------------------------
// Dates: days since 1970-01-01 (UTC), floor division so that times before
// 1970 fall on the right day.

int64_t DayOf(TimestampMicros t) {
  int64_t q = t / kMicrosPerDay;
  if (t % kMicrosPerDay < 0) --q;
  return q;
}

int64_t DaysFromCivil(int year, unsigned month, unsigned day) {
  using namespace std::chrono;
  return sys_days{std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day}}
      .time_since_epoch()
      .count();
}

// The days whose dates the layout can name (years 0001..9999).
const int64_t kMinDay = DaysFromCivil(1, 1, 1);
const int64_t kMaxDay = DaysFromCivil(9999, 12, 31);

std::string FormatDate(int64_t day) {
  using namespace std::chrono;
  year_month_day ymd{sys_days{days{day}}};
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return buf;
}

// "YYYY-MM-DD" -> day, or nullopt if it is not a valid date.
std::optional<int64_t> ParseDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  auto y = ParseInt(s.substr(0, 4));
  auto m = ParseInt(s.substr(5, 2));
  auto d = ParseInt(s.substr(8, 2));
  if (!y || !m || !d) return std::nullopt;
  std::chrono::year_month_day ymd{std::chrono::year{static_cast<int>(*y)},
                                  std::chrono::month{static_cast<unsigned>(*m)},
                                  std::chrono::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  return static_cast<int64_t>(std::chrono::sys_days{ymd}.time_since_epoch().count());
}

// ---------------------------------------------------------------------------
// Generations and their commit markers

struct Generation {
  int64_t number = 0;
  std::string job_id;
  std::vector<std::string> key_columns;
  std::vector<std::string> files;  // base names, in key order
  int64_t rows = 0;
  std::shared_ptr<arrow::Schema> schema;
};

std::string MarkerName(int64_t number, const std::string& job_id) {
  return kMarkerPrefix + std::to_string(number) + "-" + job_id + kMarkerSuffix;
}

// The generation number of a committed marker's file name, if it is one.
std::optional<int64_t> MarkerNumber(std::string_view name) {
  if (!StartsWith(name, kMarkerPrefix) || !EndsWith(name, kMarkerSuffix)) return std::nullopt;
  std::string_view rest = name.substr(std::string_view(kMarkerPrefix).size());
  auto dash = rest.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto n = ParseInt(rest.substr(0, dash));
  if (!n || *n <= 0) return std::nullopt;
  return n;
}

// The <n> of "part-<job_id>-<n>.parquet", if `name` is such a file.
std::optional<int64_t> PartNumber(std::string_view name, const std::string& job_id) {
  std::string prefix = kPartPrefix + job_id + "-";
  if (!StartsWith(name, prefix) || !EndsWith(name, kParquetSuffix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  name.remove_suffix(std::string_view(kParquetSuffix).size());
  return ParseInt(name);
}

Result<std::string> EncodeSchema(const arrow::Schema& schema) {
  ARROW_ASSIGN_OR_RAISE(auto buffer, arrow::ipc::SerializeSchema(schema));
  return arrow::util::base64_encode(
      std::string_view(reinterpret_cast<const char*>(buffer->data()), buffer->size()));
}

Result<std::shared_ptr<arrow::Schema>> DecodeSchema(std::string_view text) {
  ARROW_ASSIGN_OR_RAISE(std::string bytes, arrow::util::base64_decode(text));
  arrow::io::BufferReader reader(arrow::Buffer::FromString(std::move(bytes)));
  arrow::ipc::DictionaryMemo memo;
  return arrow::ipc::ReadSchema(&reader, &memo);
}

Result<std::string> EncodeMarker(const Generation& g) {
  boost::json::object o;
  o["format"] = kMarkerFormat;
  o["generation"] = g.number;
  o["job_id"] = g.job_id;
  boost::json::array keys;
  for (const auto& k : g.key_columns) keys.emplace_back(k);
  o["key_columns"] = std::move(keys);
  boost::json::array files;
  for (const auto& f : g.files) files.emplace_back(f);
  o["files"] = std::move(files);
  o["rows"] = g.rows;
  ARROW_ASSIGN_OR_RAISE(auto schema, EncodeSchema(*g.schema));
  o["schema"] = schema;
  return boost::json::serialize(o);
}

Result<Generation> DecodeMarker(const std::string& path, std::string_view text) {
  auto corrupt = [&](const std::string& what) {
    return Status::IOError("offline store: corrupt commit marker ", path, ": ", what);
  };
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return corrupt("not a JSON object");
  const auto& o = v.as_object();
  auto int_field = [&](const char* name) -> std::optional<int64_t> {
    const auto* f = o.if_contains(name);
    if (f == nullptr || !f->is_int64()) return std::nullopt;
    return f->as_int64();
  };
  auto strings_field = [&](const char* name) -> std::optional<std::vector<std::string>> {
    const auto* f = o.if_contains(name);
    if (f == nullptr || !f->is_array()) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& e : f->as_array()) {
      if (!e.is_string()) return std::nullopt;
      out.emplace_back(e.as_string());
    }
    return out;
  };
  auto format = int_field("format");
  if (!format || *format != kMarkerFormat) return corrupt("unknown format");
  Generation g;
  auto number = int_field("generation");
  auto rows = int_field("rows");
  auto keys = strings_field("key_columns");
  auto files = strings_field("files");
  const auto* job = o.if_contains("job_id");
  const auto* schema = o.if_contains("schema");
  if (!number || !rows || !keys || !files || job == nullptr || !job->is_string() ||
      schema == nullptr || !schema->is_string()) {
    return corrupt("missing or mistyped field");
  }
  g.number = *number;
  g.rows = *rows;
  g.key_columns = std::move(*keys);
  g.files = std::move(*files);
  g.job_id = std::string(job->as_string());
  auto decoded = DecodeSchema(std::string_view(schema->as_string()));
  if (!decoded.ok()) return corrupt("bad schema: " + decoded.status().ToString());
  g.schema = *decoded;
  for (const auto& f : g.files) {
    if (f.empty() || f.find('/') != std::string::npos) return corrupt("bad file name");
  }
  return g;
}

// ---------------------------------------------------------------------------
// Rows: validation, normalisation, sort and dedup

bool IsKeyType(const arrow::DataType& type) {
  return type.id() == arrow::Type::INT64 || type.id() == arrow::Type::STRING;
}

// A time column as timestamp[us, UTC]: other units are converted (a loss of
// precision is an error), "UTC"-like or absent time zones are accepted.
Result<std::shared_ptr<arrow::ChunkedArray>> NormalizeTime(
    const std::string& name, const std::shared_ptr<arrow::ChunkedArray>& col) {
  if (col->type()->id() != arrow::Type::TIMESTAMP) {
    return InvalidArgument(name, "must be a timestamp column, not " + col->type()->ToString());
  }
  const auto& ts = static_cast<const arrow::TimestampType&>(*col->type());
  const std::string& tz = ts.timezone();
  if (!(tz.empty() || tz == "UTC" || tz == "Etc/UTC" || tz == "Z" || tz == "+00:00")) {
    return InvalidArgument(name, "must be in UTC, not time zone '" + tz + "'");
  }
  if (col->null_count() > 0) return InvalidArgument(name, "must not contain nulls");
  if (col->type()->Equals(*TimestampType())) return col;
  auto as_utc = arrow::timestamp(ts.unit(), "UTC");
  arrow::ArrayVector chunks;
  for (const auto& chunk : col->chunks()) {
    ARROW_ASSIGN_OR_RAISE(auto viewed, chunk->View(as_utc));
    chunks.push_back(std::move(viewed));
  }
  ARROW_ASSIGN_OR_RAISE(auto relabeled, arrow::ChunkedArray::Make(std::move(chunks), as_utc));
  auto cast = cp::Cast(relabeled, TimestampType());
  if (!cast.ok()) {
    return InvalidArgument(name, "cannot convert to microseconds: " + cast.status().message());
  }
  return cast->chunked_array();
}

// `rows` checked against the contract of ReplaceRange and rearranged into the
// stored column order: keys, event_timestamp, created_timestamp, features.
Result<std::shared_ptr<arrow::Table>> NormalizeRows(const std::shared_ptr<arrow::Table>& rows,
                                                    const std::vector<std::string>& key_columns) {
  if (rows == nullptr) return InvalidArgument("rows", "must not be null");
  if (key_columns.empty()) return InvalidArgument("key_columns", "must name at least one column");
  const auto& schema = *rows->schema();
  std::set<std::string> seen;
  for (const auto& f : schema.fields()) {
    if (!seen.insert(f->name()).second) {
      return InvalidArgument("rows", "duplicate column '" + f->name() + "'");
    }
  }
  std::vector<std::string> order;
  std::set<std::string> special;
  for (const auto& k : key_columns) {
    if (k == kEventTimestampColumn || k == kCreatedTimestampColumn || !special.insert(k).second) {
      return InvalidArgument("key_columns", "'" + k + "' is repeated or a time column");
    }
    order.push_back(k);
  }
  order.push_back(kEventTimestampColumn);
  order.push_back(kCreatedTimestampColumn);
  special.insert(kEventTimestampColumn);
  special.insert(kCreatedTimestampColumn);
  for (const auto& f : schema.fields()) {
    if (special.count(f->name()) == 0) order.push_back(f->name());
  }

  arrow::FieldVector fields;
  arrow::ChunkedArrayVector columns;
  for (const auto& name : order) {
    auto col = rows->GetColumnByName(name);
    if (col == nullptr) return InvalidArgument("rows", "missing column '" + name + "'");
    auto field = schema.GetFieldByName(name);
    bool is_key = std::find(key_columns.begin(), key_columns.end(), name) != key_columns.end();
    if (is_key) {
      if (!IsKeyType(*col->type())) {
        return InvalidArgument(
            "rows." + name, "a key column must be int64 or utf8, not " + col->type()->ToString());
      }
      if (col->null_count() > 0) return InvalidArgument("rows." + name, "must not contain nulls");
      fields.push_back(arrow::field(name, col->type(), /*nullable=*/false));
    } else if (name == kEventTimestampColumn || name == kCreatedTimestampColumn) {
      ARROW_ASSIGN_OR_RAISE(col, NormalizeTime("rows." + name, col));
      fields.push_back(arrow::field(name, TimestampType(), /*nullable=*/false));
    } else {
      fields.push_back(arrow::field(name, col->type(), field->nullable()));
    }
    columns.push_back(std::move(col));
  }
  return arrow::Table::Make(arrow::schema(std::move(fields)), std::move(columns), rows->num_rows());
}

// Equality of the (key columns, event time) of two rows of one table.
class EntityEventEquals {
 public:
  // `table` must be in one chunk per column.
  EntityEventEquals(const arrow::Table& table, const std::vector<std::string>& key_columns) {
    for (const auto& k : key_columns) keys_.push_back(table.GetColumnByName(k)->chunk(0));
    event_ = std::static_pointer_cast<arrow::TimestampArray>(
        table.GetColumnByName(kEventTimestampColumn)->chunk(0));
  }

  bool operator()(int64_t a, int64_t b) const {
    if (event_->Value(a) != event_->Value(b)) return false;
    for (const auto& k : keys_) {
      if (k->type_id() == arrow::Type::INT64) {
        const auto& ints = static_cast<const arrow::Int64Array&>(*k);
        if (ints.Value(a) != ints.Value(b)) return false;
      } else {
        const auto& strings = static_cast<const arrow::StringArray&>(*k);
        if (strings.GetView(a) != strings.GetView(b)) return false;
      }
    }
    return true;
  }

 private:
  std::vector<std::shared_ptr<arrow::Array>> keys_;
  std::shared_ptr<arrow::TimestampArray> event_;
};

// Equality of the feature values (every column but the key columns, event
// and created times) of two rows of one table: null equals null, and a
// number equals another with the same bits (NaN too). Fixed-width, bool
// and string columns are compared in place; others (lists) by Arrow's
// RangeEquals, which costs more per call.
class ValuesEqual {
 public:
  // `table` must be in one chunk per column.
  ValuesEqual(const arrow::Table& table, const std::vector<std::string>& key_columns) {
    for (int c = 0; c < table.num_columns(); ++c) {
      const std::string& name = table.field(c)->name();
      if (name == kEventTimestampColumn || name == kCreatedTimestampColumn ||
          std::find(key_columns.begin(), key_columns.end(), name) != key_columns.end()) {
        continue;
      }
      Column column;
      column.array = table.column(c)->chunk(0);
      const arrow::DataType& type = *column.array->type();
      if (type.id() == arrow::Type::STRING || type.id() == arrow::Type::BINARY) {
        column.kind = Column::kBinary;
      } else if (type.id() == arrow::Type::BOOL) {
        column.kind = Column::kBool;
      } else if (arrow::is_fixed_width(type.id()) && type.id() != arrow::Type::DICTIONARY &&
                 type.byte_width() > 0 && column.array->data()->buffers.size() > 1 &&
                 column.array->data()->buffers[1]) {
        column.kind = Column::kFixed;
        column.width = type.byte_width();
        column.values = column.array->data()->buffers[1]->data() +
                        column.array->offset() * column.width;
      }
      columns_.push_back(std::move(column));
    }
  }

  bool operator()(int64_t a, int64_t b) const {
    for (const Column& c : columns_) {
      const bool null_a = c.array->IsNull(a), null_b = c.array->IsNull(b);
      if (null_a != null_b) return false;
      if (null_a) continue;
      switch (c.kind) {
        case Column::kFixed:
          if (std::memcmp(c.values + a * c.width, c.values + b * c.width, c.width) != 0) {
            return false;
          }
          break;
        case Column::kBinary: {
          const auto& binary = static_cast<const arrow::BinaryArray&>(*c.array);
          if (binary.GetView(a) != binary.GetView(b)) return false;
          break;
        }
        case Column::kBool: {
          const auto& bools = static_cast<const arrow::BooleanArray&>(*c.array);
          if (bools.Value(a) != bools.Value(b)) return false;
          break;
        }
        case Column::kOther:
          if (!c.array->RangeEquals(a, a + 1, b, *c.array,
                                    arrow::EqualOptions::Defaults().nans_equal(true))) {
            return false;
          }
          break;
      }
    }
    return true;
  }

 private:
  struct Column {
    enum Kind { kFixed, kBinary, kBool, kOther } kind = kOther;
    std::shared_ptr<arrow::Array> array;
    const uint8_t* values = nullptr;  // kFixed: the value of row 0
    int width = 0;                    // kFixed: bytes per value
  };
  std::vector<Column> columns_;
};

// A date partition's new content: `old_rows` (its current rows) and `new_rows`
// (what a ReplaceRange of [start, end) brings for that date), sorted by key
// columns, event time and created time, with one row per (key, event time,
// created time) -- the later one (new rows come after old ones, and among new
// rows the later row of `rows` wins). Old rows outside [start, end) are kept.
// Inside it the new rows replace the old ones, except that an old row whose
// (key, event time) the new rows bring again with a greater created time is
// kept beside it: it is a superseded version, which time travel (`as_of`
// before the newer created time) still sees. An old row the new rows do not
// bring again at all is deleted, and so is one the new rows bring with an
// equal or smaller created time (a re-run of the range replaces it). A new
// row whose values (every column but the key, event and created times)
// equal those of the version just before it adds nothing the store did not
// know: it is dropped and that older version stays current, with its
// earlier created time (so a re-run that writes the wall clock as created
// time does not add a version of every unchanged row).
Result<std::shared_ptr<arrow::Table>> MergePartitionRows(
    const std::shared_ptr<arrow::Table>& old_rows, const std::shared_ptr<arrow::Table>& new_rows,
    const std::vector<std::string>& key_columns, TimestampMicros start, TimestampMicros end) {
  std::vector<std::shared_ptr<arrow::Table>> parts;
  if (old_rows) parts.push_back(old_rows);
  if (new_rows) parts.push_back(new_rows);
  ARROW_ASSIGN_OR_RAISE(auto table, arrow::ConcatenateTables(parts));
  if (table->num_rows() == 0) return table;
  const int64_t first_new = old_rows ? old_rows->num_rows() : 0;
  ARROW_ASSIGN_OR_RAISE(auto combined, table->CombineChunks());
  ARROW_ASSIGN_OR_RAISE(auto batch, combined->CombineChunksToBatch());
  ARROW_ASSIGN_OR_RAISE(auto order,
                        EntityTimeOrder(*batch, key_columns,
                                        {kEventTimestampColumn, kCreatedTimestampColumn}));
  const auto& sorted = static_cast<const arrow::UInt64Array&>(*order);
  const auto& created = static_cast<const arrow::TimestampArray&>(
      *combined->GetColumnByName(kCreatedTimestampColumn)->chunk(0));
  const auto& event = static_cast<const arrow::TimestampArray&>(
      *combined->GetColumnByName(kEventTimestampColumn)->chunk(0));
  EntityEventEquals same(*combined, key_columns);
  ValuesEqual same_values(*combined, key_columns);

  // Linear pass over the sorted order, a run of equal (key, event time) at a
  // time, then within it a run of equal created time (not relying on the
  // sort being stable: the greatest position is looked for).
  arrow::Int64Builder keep;
  ARROW_RETURN_NOT_OK(keep.Reserve(sorted.length()));
  const int64_t n = sorted.length();
  auto row_at = [&](int64_t i) { return static_cast<int64_t>(sorted.Value(i)); };
  int64_t i = 0;
  while (i < n) {
    const int64_t head = row_at(i);
    int64_t j = i + 1;
    while (j < n && same(head, row_at(j))) ++j;
    const bool in_range = event.Value(head) >= start && event.Value(head) < end;
    std::optional<int64_t> newest_new;  // the greatest created time of a new row
    if (in_range) {
      for (int64_t k = i; k < j; ++k) {
        const int64_t row = row_at(k);
        if (row >= first_new && (!newest_new || created.Value(row) > *newest_new)) {
          newest_new = created.Value(row);
        }
      }
    }
    std::optional<int64_t> previous;  // the version kept last in this run
    for (int64_t k = i; k < j;) {
      int64_t best = row_at(k);
      bool has_new = best >= first_new;
      int64_t m = k + 1;
      for (; m < j && created.Value(row_at(m)) == created.Value(best); ++m) {
        best = std::max(best, row_at(m));
        has_new = has_new || row_at(m) >= first_new;
      }
      k = m;
      if (!in_range || has_new || (newest_new && created.Value(best) < *newest_new)) {
        // (A run's new rows are all in range; `best` is new when has_new.)
        if (has_new && previous && same_values(*previous, best)) continue;
        keep.UnsafeAppend(best);
        previous = best;
      }
    }
    i = j;
  }
  ARROW_ASSIGN_OR_RAISE(auto indices, keep.Finish());
  ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(arrow::Datum(combined), arrow::Datum(indices)));
  return taken.table();
}

// Same fields (names, types, order), ignoring metadata and nullability.
bool SameColumns(const arrow::Schema& a, const arrow::Schema& b) {
  if (a.num_fields() != b.num_fields()) return false;
  for (int i = 0; i < a.num_fields(); ++i) {
    if (a.field(i)->name() != b.field(i)->name() ||
        !a.field(i)->type()->Equals(*b.field(i)->type())) {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// The state of one date partition on storage

struct PartitionState {
  std::string dir;
  std::optional<Generation> current;  // the committed generation, if any
  std::string current_marker;         // its marker's base name
  std::vector<std::string> files;     // base names of all files in `dir`
};

Result<std::vector<arrow::fs::FileInfo>> ListDir(arrow::fs::FileSystem& fs,
                                                 const std::string& dir) {
  arrow::fs::FileSelector selector;
  selector.base_dir = dir;
  selector.allow_not_found = true;
  selector.recursive = false;
  return fs.GetFileInfo(selector);
}

Result<std::string> ReadWholeFile(arrow::fs::FileSystem& fs, const std::string& path) {
  ARROW_ASSIGN_OR_RAISE(auto in, fs.OpenInputStream(path));
  std::string out;
  while (true) {
    ARROW_ASSIGN_OR_RAISE(auto chunk, in->Read(64 * 1024));
    if (chunk->size() == 0) break;
    out.append(reinterpret_cast<const char*>(chunk->data()), chunk->size());
  }
  ARROW_RETURN_NOT_OK(in->Close());
  return out;
}

Result<PartitionState> LoadPartition(arrow::fs::FileSystem& fs, const std::string& dir) {
  PartitionState state;
  state.dir = dir;
  ARROW_ASSIGN_OR_RAISE(auto entries, ListDir(fs, dir));
  std::optional<int64_t> best;
  std::string best_name;
  for (const auto& e : entries) {
    if (!e.IsFile()) continue;
    state.files.push_back(e.base_name());
    auto n = MarkerNumber(e.base_name());
    if (n && (!best || *n > *best)) {
      best = n;
      best_name = e.base_name();
    }
  }
  if (best) {
    std::string path = JoinPath(dir, best_name);
    ARROW_ASSIGN_OR_RAISE(auto text, ReadWholeFile(fs, path));
    ARROW_ASSIGN_OR_RAISE(auto g, DecodeMarker(path, text));
    if (g.number != *best) {
      return Status::IOError("offline store: commit marker ", path, " names generation ", g.number);
    }
    state.current = std::move(g);
    state.current_marker = best_name;
  }
  return state;
}

// The date partitions under a version directory, by day.
Result<std::map<int64_t, std::string>> ListDateDirs(arrow::fs::FileSystem& fs,
                                                    const std::string& version_dir) {
  std::map<int64_t, std::string> out;
  ARROW_ASSIGN_OR_RAISE(auto entries, ListDir(fs, version_dir));
  for (const auto& e : entries) {
    if (e.type() != arrow::fs::FileType::Directory) continue;
    std::string name = e.base_name();
    if (!StartsWith(name, kDatePrefix)) continue;
    auto day = ParseDate(std::string_view(name).substr(std::string_view(kDatePrefix).size()));
    if (day) out.emplace(*day, JoinPath(version_dir, name));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing

Result<std::shared_ptr<arrow::Table>> ReadGeneration(arrow::fs::FileSystem& fs,
                                                     const PartitionState& state,
                                                     const ParquetEncryption* encryption) {
  std::vector<std::shared_ptr<arrow::Table>> parts;
  for (const auto& file : state.current->files) {
    ARROW_ASSIGN_OR_RAISE(auto in, fs.OpenInputFile(JoinPath(state.dir, file)));
    ARROW_ASSIGN_OR_RAISE(auto reader,
                          OpenParquetFile(in, JoinPath(state.dir, file), encryption));
    ARROW_ASSIGN_OR_RAISE(auto table, reader->ReadTable());
    if (!SameColumns(*table->schema(), *state.current->schema)) {
      return Status::IOError("offline store: ", JoinPath(state.dir, file),
                             " does not have the schema of its generation");
    }
    // Take the generation's schema (nullability, no Parquet metadata).
    parts.push_back(arrow::Table::Make(state.current->schema, table->columns(), table->num_rows()));
  }
  if (parts.empty()) return arrow::Table::MakeEmpty(state.current->schema);
  return arrow::ConcatenateTables(parts);
}

// Where a file is written before it gets its name `name`: a temporary name
// beside it on a filesystem, the name itself on object storage (an object
// appears whole when its upload completes, or not at all).
std::string WritePath(const std::string& dir, const std::string& name, bool object_store) {
  return JoinPath(dir, object_store ? name : kTempPrefix + name + kTempSuffix);
}

// Gives the file written at WritePath its final name.
Status Publish(arrow::fs::FileSystem& fs, const std::string& dir, const std::string& name,
               bool object_store) {
  if (object_store) return Status::OK();
  return fs.Move(WritePath(dir, name, object_store), JoinPath(dir, name));
}

Status WriteAtomically(arrow::fs::FileSystem& fs, const std::string& dir, const std::string& name,
                       std::string_view content, bool object_store) {
  ARROW_ASSIGN_OR_RAISE(auto out, fs.OpenOutputStream(WritePath(dir, name, object_store)));
  ARROW_RETURN_NOT_OK(out->Write(content.data(), static_cast<int64_t>(content.size())));
  ARROW_RETURN_NOT_OK(out->Close());
  return Publish(fs, dir, name, object_store);
}

// Writes one Parquet file under a temporary name and moves it into place (on
// object storage: uploads it under its name); returns its size in bytes.
Result<int64_t> WriteParquetFile(arrow::fs::FileSystem& fs, const std::string& dir,
                                 const std::string& name,
                                 const std::vector<std::string>& key_columns,
                                 const std::shared_ptr<arrow::Table>& table, bool object_store,
                                 const ParquetEncryption* encryption) {
  ARROW_ASSIGN_OR_RAISE(auto out, fs.OpenOutputStream(WritePath(dir, name, object_store)));
  parquet::WriterProperties::Builder builder;
  builder.max_row_group_length(kOfflineRowGroupRows);
  // Encodings chosen for reading speed (point-in-time joins decode whole
  // partitions) and size, measured on 10M rows / 30 partitions
  // (docs/benchmarks.md "Historical retrieval"): snappy on every column
  // made decompression a third of a join's CPU. The integer key columns and
  // the two times are sorted (times within a key), so their deltas are
  // small: DELTA_BINARY_PACKED without a codec is smaller than snappy's
  // plain pages and decodes without a decompression pass. Other numbers
  // and times are written PLAIN without a codec: a join decodes every value
  // of a partition it reads, and LZ4 made ~10% of its CPU (and 10% of its
  // time) for ~30% fewer bytes on the benchmark's features (random floats
  // hardly compress at all). Every other column (strings, bools, lists) is
  // LZ4_RAW-compressed (faster to decode than snappy; read by Arrow, DuckDB
  // and Spark >= 3.4). Numbers and times rarely repeat enough to pay for a
  // dictionary; strings keep it.
  builder.compression(arrow::Compression::LZ4);
  for (const auto& field : table->schema()->fields()) {
    const auto id = field->type()->id();
    const bool sorted = field->name() == kEventTimestampColumn ||
                        field->name() == kCreatedTimestampColumn ||
                        (id == arrow::Type::INT64 &&
                         std::find(key_columns.begin(), key_columns.end(), field->name()) !=
                             key_columns.end());
    if (sorted) {
      builder.disable_dictionary(field->name());
      builder.encoding(field->name(), parquet::Encoding::DELTA_BINARY_PACKED);
      builder.compression(field->name(), arrow::Compression::UNCOMPRESSED);
    } else if (arrow::is_floating(id) || arrow::is_integer(id) || id == arrow::Type::TIMESTAMP ||
               id == arrow::Type::DATE32) {
      builder.disable_dictionary(field->name());
      builder.compression(field->name(), arrow::Compression::UNCOMPRESSED);
    }
  }
  if (encryption != nullptr) {
    // Encryption at rest: every column and the footer (parquet_encryption.h).
    ARROW_ASSIGN_OR_RAISE(auto file_encryption, encryption->FileEncryption());
    builder.encryption(std::move(file_encryption));
  }
  auto properties = builder.build();
  auto arrow_properties = parquet::ArrowWriterProperties::Builder().store_schema()->build();
  ARROW_ASSIGN_OR_RAISE(
      auto writer, parquet::arrow::FileWriter::Open(*table->schema(), arrow::default_memory_pool(),
                                                    out, properties, arrow_properties));
  ARROW_RETURN_NOT_OK(writer->WriteTable(*table, kOfflineRowGroupRows));
  ARROW_RETURN_NOT_OK(writer->Close());
  ARROW_ASSIGN_OR_RAISE(int64_t size, out->Tell());
  ARROW_RETURN_NOT_OK(out->Close());
  ARROW_RETURN_NOT_OK(Publish(fs, dir, name, object_store));
  return size;
}

// Deletes the files `names` of `dir` except those in `keep`.
Status DeleteAllBut(arrow::fs::FileSystem& fs, const std::string& dir,
                    const std::vector<std::string>& names, const std::vector<std::string>& keep) {
  std::vector<std::string> doomed;
  for (const auto& name : names) {
    if (std::find(keep.begin(), keep.end(), name) == keep.end()) doomed.push_back(name);
  }
  // Data files before old markers: correctness does not depend on it (the
  // greatest marker wins), but a half-cleaned directory stays readable to a
  // human.
  std::stable_partition(doomed.begin(), doomed.end(),
                        [](const std::string& name) { return !MarkerNumber(name).has_value(); });
  for (const auto& name : doomed) ARROW_RETURN_NOT_OK(fs.DeleteFile(JoinPath(dir, name)));
  return Status::OK();
}

// Commits `table` (sorted, deduplicated) as the next generation of the
// partition, then deletes everything else in its directory.
Status WriteGeneration(arrow::fs::FileSystem& fs, const PartitionState& state,
                       const std::vector<std::string>& key_columns,
                       const std::shared_ptr<arrow::Table>& table, const std::string& job_id,
                       bool object_store, const ParquetEncryption* encryption, WriteStats* stats) {
  // On object storage a directory is a key prefix: it exists once a file
  // does (Arrow's CreateDir would add empty marker objects at every level).
  if (!object_store) ARROW_RETURN_NOT_OK(fs.CreateDir(state.dir, /*recursive=*/true));
  Generation g;
  g.number = state.current ? state.current->number + 1 : 1;
  g.job_id = job_id;
  g.key_columns = key_columns;
  g.rows = table->num_rows();
  g.schema = table->schema();
  // File names never repeat one of the current generation (a retry with the
  // same job id), so a visible file is never overwritten.
  int64_t n = 0;
  if (state.current) {
    for (const auto& f : state.current->files) {
      if (auto k = PartNumber(f, job_id)) n = std::max(n, *k + 1);
    }
  }
  for (int64_t offset = 0; offset < table->num_rows(); offset += kOfflineFileRows, ++n) {
    std::string name = kPartPrefix + job_id + "-" + std::to_string(n) + kParquetSuffix;
    ARROW_ASSIGN_OR_RAISE(int64_t bytes,
                          WriteParquetFile(fs, state.dir, name, key_columns,
                                           table->Slice(offset, kOfflineFileRows), object_store,
                                           encryption));
    g.files.push_back(name);
    stats->bytes_written += bytes;
    stats->files_written += 1;
  }
  std::string marker = MarkerName(g.number, job_id);
  ARROW_ASSIGN_OR_RAISE(auto text, EncodeMarker(g));
  ARROW_RETURN_NOT_OK(WriteAtomically(fs, state.dir, marker, text, object_store));
  stats->rows_written += g.rows;
  stats->partitions_written += 1;

  // Committed. Now remove superseded generations and leftovers of crashed
  // writes; readers ignore them anyway, this only reclaims space.
  ARROW_ASSIGN_OR_RAISE(auto entries, ListDir(fs, state.dir));
  std::vector<std::string> names;
  for (const auto& e : entries) {
    if (e.IsFile()) names.push_back(e.base_name());
  }
  g.files.push_back(marker);
  return DeleteAllBut(fs, state.dir, names, g.files);
}

// ---------------------------------------------------------------------------
// Reading

// The leaf column indices of the top-level field `field_index`.
void CollectLeaves(const parquet::arrow::SchemaField& field, std::vector<int>* out) {
  if (field.column_index >= 0) out->push_back(field.column_index);
  for (const auto& child : field.children) CollectLeaves(child, out);
}

struct ScanFile {
  std::string path;
  std::shared_ptr<arrow::Schema> schema;  // of its generation
};

// The row groups of a file that may hold rows with event time in [start,
// end), as (index, wholly inside [start, end)): those whose event-time
// statistics miss the range are skipped; those wholly inside it need no
// filter.
std::vector<std::pair<int, bool>> RowGroupsOf(const parquet::FileMetaData& metadata,
                                              int event_leaf, TimestampMicros start,
                                              TimestampMicros end) {
  std::vector<std::pair<int, bool>> out;
  for (int rg = 0; rg < metadata.num_row_groups(); ++rg) {
    auto row_group = metadata.RowGroup(rg);
    if (row_group->num_rows() == 0) continue;
    auto stats = row_group->ColumnChunk(event_leaf)->statistics();
    if (stats != nullptr && stats->HasMinMax() && stats->physical_type() == parquet::Type::INT64) {
      const auto& typed = static_cast<const parquet::Int64Statistics&>(*stats);
      if (typed.max() < start || typed.min() >= end) continue;
      out.emplace_back(rg, typed.min() >= start && typed.max() < end);
    } else {
      out.emplace_back(rg, false);
    }
  }
  return out;
}

// Streams the rows of a list of files that lie in [start, end), projected to
// `schema`, one row group at a time.
class OfflineScanReader : public arrow::RecordBatchReader {
 public:
  OfflineScanReader(std::shared_ptr<arrow::fs::FileSystem> fs,
                    std::shared_ptr<const ParquetEncryption> encryption, std::vector<ScanFile> files,
                    std::shared_ptr<arrow::Schema> schema, TimestampMicros start,
                    TimestampMicros end)
      : fs_(std::move(fs)),
        encryption_(std::move(encryption)),
        files_(std::move(files)),
        schema_(std::move(schema)),
        start_(start),
        end_(end) {}

  std::shared_ptr<arrow::Schema> schema() const override { return schema_; }

  Status ReadNext(std::shared_ptr<arrow::RecordBatch>* batch) override {
    while (true) {
      if (batches_ != nullptr) {
        std::shared_ptr<arrow::RecordBatch> next;
        ARROW_RETURN_NOT_OK(batches_->ReadNext(&next));
        if (next != nullptr) {
          ARROW_ASSIGN_OR_RAISE(next, Project(next));
          if (!row_group_inside_) {
            ARROW_ASSIGN_OR_RAISE(next, Filter(next));
          }
          if (next->num_rows() == 0) continue;
          *batch = std::move(next);
          return Status::OK();
        }
        batches_.reset();
      }
      if (reader_ != nullptr && next_row_group_ < static_cast<int>(row_groups_.size())) {
        auto [row_group, inside] = row_groups_[next_row_group_++];
        row_group_inside_ = inside;
        ARROW_ASSIGN_OR_RAISE(batches_, reader_->GetRecordBatchReader({row_group}, leaves_));
        continue;
      }
      reader_.reset();
      if (next_file_ >= files_.size()) {
        *batch = nullptr;
        return Status::OK();
      }
      ARROW_RETURN_NOT_OK(OpenFile(files_[next_file_++]));
    }
  }

  Status Close() override {
    batches_.reset();
    reader_.reset();
    next_file_ = files_.size();
    return Status::OK();
  }

 private:
  Status OpenFile(const ScanFile& file) {
    ARROW_ASSIGN_OR_RAISE(auto in, fs_->OpenInputFile(file.path));
    ARROW_ASSIGN_OR_RAISE(reader_, OpenParquetFile(in, file.path, encryption_.get()));
    const auto& manifest = reader_->manifest();
    auto metadata = reader_->parquet_reader()->metadata();
    std::shared_ptr<arrow::Schema> file_schema;
    ARROW_RETURN_NOT_OK(reader_->GetSchema(&file_schema));
    if (!SameColumns(*file_schema, *file.schema)) {
      return Status::IOError("offline store: ", file.path,
                             " does not have the schema of its generation");
    }
    // Read the file's fields that the output needs, in file order.
    leaves_.clear();
    int event_leaf = -1;
    for (int i = 0; i < file_schema->num_fields(); ++i) {
      const auto& name = file_schema->field(i)->name();
      if (name == kEventTimestampColumn) event_leaf = manifest.schema_fields[i].column_index;
      if (schema_->GetFieldIndex(name) >= 0) CollectLeaves(manifest.schema_fields[i], &leaves_);
    }
    if (event_leaf < 0)
      return Status::IOError("offline store: ", file.path, " has no event_timestamp");
    row_groups_ = RowGroupsOf(*metadata, event_leaf, start_, end_);
    next_row_group_ = 0;
    return Status::OK();
  }

  Result<std::shared_ptr<arrow::RecordBatch>> Project(
      const std::shared_ptr<arrow::RecordBatch>& batch) {
    arrow::ArrayVector columns;
    for (const auto& f : schema_->fields()) {
      auto col = batch->GetColumnByName(f->name());
      if (col == nullptr) return Status::IOError("offline store: a file lacks column ", f->name());
      columns.push_back(std::move(col));
    }
    return arrow::RecordBatch::Make(schema_, batch->num_rows(), std::move(columns));
  }

  Result<std::shared_ptr<arrow::RecordBatch>> Filter(
      const std::shared_ptr<arrow::RecordBatch>& batch) {
    auto event = batch->GetColumnByName(kEventTimestampColumn);
    auto start = std::make_shared<arrow::TimestampScalar>(start_, TimestampType());
    auto end = std::make_shared<arrow::TimestampScalar>(end_, TimestampType());
    ARROW_ASSIGN_OR_RAISE(auto ge, cp::CallFunction("greater_equal", {event, start}));
    ARROW_ASSIGN_OR_RAISE(auto lt, cp::CallFunction("less", {event, end}));
    ARROW_ASSIGN_OR_RAISE(auto mask, cp::CallFunction("and", {ge, lt}));
    ARROW_ASSIGN_OR_RAISE(auto filtered, cp::Filter(arrow::Datum(batch), mask));
    return filtered.record_batch();
  }

  std::shared_ptr<arrow::fs::FileSystem> fs_;
  std::shared_ptr<const ParquetEncryption> encryption_;  // null: files in clear
  std::vector<ScanFile> files_;
  std::shared_ptr<arrow::Schema> schema_;
  TimestampMicros start_;
  TimestampMicros end_;

  size_t next_file_ = 0;
  std::unique_ptr<parquet::arrow::FileReader> reader_;
  std::vector<int> leaves_;
  std::vector<std::pair<int, bool>> row_groups_;  // (index, wholly inside [start, end))
  int next_row_group_ = 0;
  bool row_group_inside_ = false;
  std::unique_ptr<arrow::RecordBatchReader> batches_;
};

Status InitializeArrowOnce() {
  static const Status status = cp::Initialize();
  return status;
}

}  // namespace

// ---------------------------------------------------------------------------

OfflineStore::OfflineStore(std::shared_ptr<arrow::fs::FileSystem> fs, std::string root,
                           std::shared_ptr<const Cipher> cipher)
    : fs_(std::move(fs)),
      root_(std::move(root)),
      object_store_(fs_->type_name() == "s3"),
      health_fs_(fs_),
      // On S3 the bucket: a prefix with no object yet does not "exist".
      health_path_(object_store_ ? root_.substr(0, root_.find('/')) : root_),
      cipher_(std::move(cipher)),
      encryption_(cipher_ ? std::make_shared<const ParquetEncryption>(cipher_) : nullptr) {}

OfflineStore::~OfflineStore() = default;

Result<std::unique_ptr<OfflineStore>> OfflineStore::Open(const std::string& uri,
                                                         const S3ConnectionOptions& s3,
                                                         std::shared_ptr<const Cipher> cipher) {
  if (IsS3Uri(uri)) {
    ARROW_ASSIGN_OR_RAISE(std::string root, S3PathFromUri(uri, "uri"));
    ARROW_ASSIGN_OR_RAISE(auto fs, MakeS3FileSystem(s3));
    std::string bucket = root.substr(0, root.find('/'));
    ARROW_RETURN_NOT_OK(EnsureS3Bucket(*fs, bucket, s3.create_bucket, s3.endpoint));
    // Readiness probes must answer fast when S3 is down or hangs.
    S3ConnectionOptions probe = s3;
    probe.connect_timeout_seconds = std::min(probe.connect_timeout_seconds, 2.0);
    probe.request_timeout_seconds = std::min(probe.request_timeout_seconds, 3.0);
    probe.max_attempts = 1;
    ARROW_ASSIGN_OR_RAISE(auto health_fs, MakeS3FileSystem(probe));
    ARROW_ASSIGN_OR_RAISE(auto store, Make(std::move(fs), std::move(root), std::move(cipher)));
    store->health_fs_ = std::move(health_fs);
    return store;
  }
  std::string path;
  auto fs = arrow::fs::FileSystemFromUri(uri, &path);
  if (!fs.ok()) {
    return InvalidArgument("uri",
                           "cannot open offline store '" + uri + "': " + fs.status().message());
  }
  return Make(*std::move(fs), std::move(path), std::move(cipher));
}

Result<std::unique_ptr<OfflineStore>> OfflineStore::Make(std::shared_ptr<arrow::fs::FileSystem> fs,
                                                         std::string root,
                                                         std::shared_ptr<const Cipher> cipher) {
  if (fs == nullptr) return InvalidArgument("fs", "must not be null");
  ARROW_RETURN_NOT_OK(InitializeArrowOnce());
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  return std::unique_ptr<OfflineStore>(
      new OfflineStore(std::move(fs), std::move(root), std::move(cipher)));
}

namespace {

Result<std::string> VersionDir(const std::string& root, const std::string& feature_set,
                               int64_t schema_version) {
  ARROW_RETURN_NOT_OK(CheckName("feature_set", feature_set));
  if (schema_version < 0) return InvalidArgument("schema_version", "must not be negative");
  return JoinPath(JoinPath(root, feature_set), "v" + std::to_string(schema_version));
}

}  // namespace

Result<WriteStats> OfflineStore::ReplaceRange(const std::string& feature_set,
                                              int64_t schema_version,
                                              const std::vector<std::string>& key_columns,
                                              TimestampMicros start, TimestampMicros end,
                                              const std::shared_ptr<arrow::Table>& rows,
                                              const std::string& job_id) {
  auto written = ReplaceRangeImpl(feature_set, schema_version, key_columns, start, end, rows,
                                  job_id);
  if (written.ok() || ErrorOf(written.status()) != nullptr) return written;
  // A storage failure ("AWS Error NETWORK_CONNECTION ...", "Permission
  // denied") does not say what was being written, nor where.
  const Status& st = written.status();
  return st.WithMessage("offline store (" + fs_->type_name() + " " + root_ + "): writing " +
                        feature_set + " v" + std::to_string(schema_version) + " [" +
                        FormatTimestamp(start) + ", " + FormatTimestamp(end) +
                        ") failed: " + st.message());
}

Result<WriteStats> OfflineStore::ReplaceRangeImpl(const std::string& feature_set,
                                                  int64_t schema_version,
                                                  const std::vector<std::string>& key_columns,
                                                  TimestampMicros start, TimestampMicros end,
                                                  const std::shared_ptr<arrow::Table>& rows,
                                                  const std::string& job_id) {
  ARROW_ASSIGN_OR_RAISE(std::string version_dir, VersionDir(root_, feature_set, schema_version));
  ARROW_RETURN_NOT_OK(CheckName("job_id", job_id));
  if (start >= end) {
    return InvalidArgument(
        "end", "the range [" + FormatTimestamp(start) + ", " + FormatTimestamp(end) + ") is empty");
  }
  ARROW_ASSIGN_OR_RAISE(auto table, NormalizeRows(rows, key_columns));

  // Group the new rows by date, refusing any outside [start, end).
  std::map<int64_t, std::vector<int64_t>> rows_by_day;
  {
    int64_t row = 0;
    int64_t current_day = std::numeric_limits<int64_t>::min();  // no valid day
    std::vector<int64_t>* current = nullptr;
    for (const auto& chunk : table->GetColumnByName(kEventTimestampColumn)->chunks()) {
      const auto& events = static_cast<const arrow::TimestampArray&>(*chunk);
      for (int64_t i = 0; i < events.length(); ++i, ++row) {
        TimestampMicros t = events.Value(i);
        if (t < start || t >= end) {
          return InvalidArgument("rows.event_timestamp",
                                 "row " + std::to_string(row) + " has event time " +
                                     FormatTimestamp(t) + ", outside the range [" +
                                     FormatTimestamp(start) + ", " + FormatTimestamp(end) + ")");
        }
        int64_t day = DayOf(t);
        if (day < kMinDay || day > kMaxDay) {
          return InvalidArgument(
              "rows.event_timestamp",
              "row " + std::to_string(row) + " has an event time outside the years 0001..9999");
        }
        if (day != current_day) {
          current_day = day;
          current = &rows_by_day[day];
        }
        current->push_back(row);
      }
    }
  }

  // The dates to rewrite: those with new rows, and the existing ones the
  // range touches (their rows inside the range go away).
  ARROW_ASSIGN_OR_RAISE(auto existing, ListDateDirs(*fs_, version_dir));
  const int64_t first_day = DayOf(start);
  const int64_t last_day = DayOf(end - 1);
  std::set<int64_t> days;
  for (const auto& [day, _] : rows_by_day) days.insert(day);
  for (auto it = existing.lower_bound(first_day); it != existing.end() && it->first <= last_day;
       ++it) {
    days.insert(it->first);
  }

  // Load every touched partition before writing any, so that a schema
  // mismatch is found before anything changes.
  std::map<int64_t, PartitionState> states;
  bool checked_schema = false;
  for (int64_t day : days) {
    std::string dir = JoinPath(version_dir, kDatePrefix + FormatDate(day));
    ARROW_ASSIGN_OR_RAISE(auto state, LoadPartition(*fs_, dir));
    if (state.current) {
      if (!SameColumns(*state.current->schema, *table->schema()) ||
          state.current->key_columns != key_columns) {
        return InvalidArgument("rows", "the columns (" + table->schema()->ToString() +
                                           ") or key columns differ from "
                                           "those stored for " +
                                           feature_set + " v" + std::to_string(schema_version) +
                                           " (" + state.current->schema->ToString() + ")");
      }
      checked_schema = true;
    }
    states.emplace(day, std::move(state));
  }
  if (!checked_schema && !existing.empty()) {
    // Nothing touched exists yet: compare with the latest existing partition.
    for (auto it = existing.rbegin(); it != existing.rend(); ++it) {
      ARROW_ASSIGN_OR_RAISE(auto state, LoadPartition(*fs_, it->second));
      if (!state.current) continue;
      if (!SameColumns(*state.current->schema, *table->schema()) ||
          state.current->key_columns != key_columns) {
        return InvalidArgument("rows", "the columns or key columns differ from those stored for " +
                                           feature_set + " v" + std::to_string(schema_version) +
                                           " (" + state.current->schema->ToString() + ")");
      }
      break;
    }
  }

  WriteStats stats;
  for (int64_t day : days) {
    const PartitionState& state = states.at(day);
    const bool wholly_inside = day * kMicrosPerDay >= start && (day + 1) * kMicrosPerDay <= end;
    auto new_rows = rows_by_day.find(day);
    if (new_rows == rows_by_day.end() && (!state.current || state.current->rows == 0) &&
        wholly_inside) {
      // Already empty (or absent) and stays so; only leftovers of an
      // interrupted earlier write may need cleaning.
      if (state.current) {
        ARROW_RETURN_NOT_OK(DeleteAllBut(*fs_, state.dir, state.files, {state.current_marker}));
      }
      continue;
    }
    // The old rows are read also for a partition wholly inside the range
    // when new rows come: those they supersede stay (MergePartitionRows).
    std::shared_ptr<arrow::Table> old_rows, day_rows;
    if (state.current && state.current->rows > 0 &&
        (!wholly_inside || new_rows != rows_by_day.end())) {
      ARROW_ASSIGN_OR_RAISE(old_rows, ReadGeneration(*fs_, state, encryption_.get()));
    }
    if (new_rows != rows_by_day.end()) {
      arrow::Int64Builder indices;
      ARROW_RETURN_NOT_OK(indices.AppendValues(new_rows->second));
      ARROW_ASSIGN_OR_RAISE(auto index_array, indices.Finish());
      ARROW_ASSIGN_OR_RAISE(auto taken, cp::Take(arrow::Datum(table), arrow::Datum(index_array)));
      day_rows = taken.table();
    }
    std::shared_ptr<arrow::Table> content;
    if (!old_rows && !day_rows) {
      ARROW_ASSIGN_OR_RAISE(content, arrow::Table::MakeEmpty(table->schema()));
    } else {
      ARROW_ASSIGN_OR_RAISE(content,
                            MergePartitionRows(old_rows, day_rows, key_columns, start, end));
    }
    ARROW_RETURN_NOT_OK(
        WriteGeneration(*fs_, state, key_columns, content, job_id, object_store_,
                        encryption_.get(), &stats));
  }
  return stats;
}

namespace {

struct ScanPlan {
  std::shared_ptr<arrow::RecordBatchReader> reader;
  std::vector<std::string> key_columns;
};

// The files holding the rows of [start, end), and the generation giving
// their schema and key columns (with no files: the latest partition's, if
// any).
struct FilePlan {
  std::vector<ScanFile> files;
  std::optional<Generation> reference;
};

Result<FilePlan> PlanFiles(const std::shared_ptr<arrow::fs::FileSystem>& fs,
                           const std::string& version_dir, TimestampMicros start,
                           TimestampMicros end) {
  if (start > end) {
    return InvalidArgument("end", "the range [" + FormatTimestamp(start) + ", " +
                                      FormatTimestamp(end) + ") ends before it starts");
  }
  ARROW_ASSIGN_OR_RAISE(auto existing, ListDateDirs(*fs, version_dir));
  std::vector<ScanFile> files;
  std::optional<Generation> reference;  // gives the schema and key columns
  if (start < end) {
    const int64_t first_day = DayOf(start);
    const int64_t last_day = DayOf(end - 1);
    for (auto it = existing.lower_bound(first_day); it != existing.end() && it->first <= last_day;
         ++it) {
      ARROW_ASSIGN_OR_RAISE(auto state, LoadPartition(*fs, it->second));
      if (!state.current) continue;
      if (reference && !SameColumns(*reference->schema, *state.current->schema)) {
        return Status::IOError("offline store: partition ", state.dir,
                               " has a schema different from the other partitions'");
      }
      for (const auto& f : state.current->files) {
        files.push_back(ScanFile{JoinPath(state.dir, f), state.current->schema});
      }
      if (!reference) reference = std::move(state.current);
    }
  }
  if (!reference) {
    // Nothing in the range: the schema comes from the latest partition, if any.
    for (auto it = existing.rbegin(); it != existing.rend() && !reference; ++it) {
      ARROW_ASSIGN_OR_RAISE(auto state, LoadPartition(*fs, it->second));
      reference = std::move(state.current);
    }
  }
  return FilePlan{std::move(files), std::move(reference)};
}

Result<ScanPlan> PlanScan(const std::shared_ptr<arrow::fs::FileSystem>& fs,
                          const std::shared_ptr<const ParquetEncryption>& encryption,
                          const std::string& version_dir, TimestampMicros start,
                          TimestampMicros end, const std::vector<std::string>& columns,
                          bool with_created = true) {
  ARROW_ASSIGN_OR_RAISE(FilePlan files, PlanFiles(fs, version_dir, start, end));
  const std::optional<Generation>& reference = files.reference;
  ScanPlan plan;
  std::shared_ptr<arrow::Schema> schema = arrow::schema(arrow::FieldVector{});
  if (reference) {
    plan.key_columns = reference->key_columns;
    const auto& stored = *reference->schema;
    const size_t fixed = reference->key_columns.size() + 2;  // keys, event, created
    arrow::FieldVector fields;
    if (columns.empty()) {
      fields = stored.fields();
    } else {
      for (size_t i = 0; i < fixed && i < static_cast<size_t>(stored.num_fields()); ++i) {
        fields.push_back(stored.field(static_cast<int>(i)));
      }
      std::set<std::string> added;
      for (const auto& f : fields) added.insert(f->name());
      for (const auto& name : columns) {
        auto field = stored.GetFieldByName(name);
        if (field == nullptr) {
          return InvalidArgument("columns", "no column '" + name + "' in the offline store");
        }
        if (added.insert(name).second) fields.push_back(field);
      }
    }
    if (!with_created) {
      std::erase_if(fields, [](const std::shared_ptr<arrow::Field>& f) {
        return f->name() == kCreatedTimestampColumn;
      });
    }
    schema = arrow::schema(std::move(fields));
  }
  plan.reader = std::make_shared<OfflineScanReader>(fs, encryption, std::move(files.files), schema,
                                                    start, end);
  return plan;
}

}  // namespace


namespace {

// Resizes *buffer (made from Arrow's pool when null) to `size` bytes,
// keeping its contents and its memory: capacity grows geometrically and
// never shrinks. Arrow's pool (mimalloc) puts large blocks on transparent
// huge pages where the system allows (far fewer page faults for a
// partition's columns than `new[]`: the first join of a process 0.16-0.20 s
// instead of 0.20-0.23 s) and reuses freed memory for a while.
Result<uint8_t*> Grow(std::shared_ptr<arrow::ResizableBuffer>* buffer, int64_t size) {
  if (*buffer == nullptr) {
    ARROW_ASSIGN_OR_RAISE(auto made, arrow::AllocateResizableBuffer(0));
    *buffer = std::move(made);
  }
  arrow::ResizableBuffer& b = **buffer;
  if (size > b.capacity()) ARROW_RETURN_NOT_OK(b.Reserve(std::max(size, b.capacity() * 3 / 2)));
  ARROW_RETURN_NOT_OK(b.Resize(size, /*shrink_to_fit=*/false));
  return b.mutable_data();
}

// Whether ReadFixedWidth reads columns of `type`.
bool IsReadRaw(const arrow::DataType& type) {
  switch (type.id()) {
    case arrow::Type::INT32:
    case arrow::Type::DATE32:
    case arrow::Type::INT64:
    case arrow::Type::FLOAT:
    case arrow::Type::DOUBLE:
    case arrow::Type::TIMESTAMP:
      return true;
    default:
      return false;
  }
}

// Whether a column of `type` (IsReadRaw) is stored in Parquet `column` as
// its own values, with no conversion on reading.
bool StoredRaw(const arrow::DataType& type, const parquet::ColumnDescriptor& column) {
  const auto physical = column.physical_type();
  switch (type.id()) {
    case arrow::Type::INT32:
    case arrow::Type::DATE32:
      return physical == parquet::Type::INT32;
    case arrow::Type::INT64:
      return physical == parquet::Type::INT64;
    case arrow::Type::FLOAT:
      return physical == parquet::Type::FLOAT;
    case arrow::Type::DOUBLE:
      return physical == parquet::Type::DOUBLE;
    case arrow::Type::TIMESTAMP: {
      // Stored in the Arrow type's own unit (seconds are stored as
      // milliseconds and converted when read through Arrow: not raw).
      if (physical != parquet::Type::INT64) return false;
      const auto& logical = column.logical_type();
      if (logical == nullptr || !logical->is_timestamp()) return false;
      const auto unit = static_cast<const parquet::TimestampLogicalType&>(*logical).time_unit();
      const auto arrow_unit = static_cast<const arrow::TimestampType&>(type).unit();
      return (unit == parquet::LogicalType::TimeUnit::MILLIS &&
              arrow_unit == arrow::TimeUnit::MILLI) ||
             (unit == parquet::LogicalType::TimeUnit::MICROS &&
              arrow_unit == arrow::TimeUnit::MICRO) ||
             (unit == parquet::LogicalType::TimeUnit::NANOS &&
              arrow_unit == arrow::TimeUnit::NANO);
    }
    default:
      return false;
  }
}

// Decodes `rows` values of a column chunk into dst (rows * sizeof(T) bytes)
// with nulls as zeros; where a value is null, valid[i] = 0 (valid: `rows`
// bytes, written only when a value is null: *has_nulls says so).
template <typename ParquetType>
Status DecodeChunk(parquet::ColumnReader* reader, int64_t rows, int16_t* defs,
                   typename ParquetType::c_type* dst, uint8_t* valid, bool* has_nulls) {
  auto* typed = static_cast<parquet::TypedColumnReader<ParquetType>*>(reader);
  const int16_t max_def = reader->descr()->max_definition_level();
  int64_t levels = 0, values = 0;
  while (levels < rows) {
    int64_t values_read = 0;
    // With nulls the values come packed: each batch's after the previous.
    const int64_t read =
        typed->ReadBatch(rows - levels, defs + levels, nullptr, dst + values, &values_read);
    if (read <= 0) return Status::IOError("offline store: a column chunk ends early");
    levels += read;
    values += values_read;
  }
  *has_nulls = values < rows;
  if (!*has_nulls) return Status::OK();
  // Spread the packed values to their rows, back to front (in place).
  for (int64_t i = rows - 1; i >= 0; --i) {
    const bool is_valid = defs[i] == max_def;
    valid[i] = is_valid;
    dst[i] = is_valid ? dst[--values] : typename ParquetType::c_type{};
  }
  return Status::OK();
}

}  // namespace

Status OfflineStore::ReadFixedWidth(const std::string& feature_set, int64_t schema_version,
                                    TimestampMicros start, TimestampMicros end,
                                    const std::vector<std::string>& columns,
                                    FixedWidthRows* out) {
  ARROW_ASSIGN_OR_RAISE(std::string version_dir, VersionDir(root_, feature_set, schema_version));
  ARROW_ASSIGN_OR_RAISE(FilePlan plan, PlanFiles(fs_, version_dir, start, end));
  out->rows = 0;
  out->columns.resize(columns.size());
  int event_column = -1;
  for (size_t c = 0; c < columns.size(); ++c) {
    FixedWidthColumn& col = out->columns[c];
    col.name = columns[c];
    col.type = nullptr;
    col.width = 0;
    col.has_nulls = false;
    ARROW_RETURN_NOT_OK(Grow(&col.values, 0).status());
    if (columns[c] == kEventTimestampColumn) event_column = static_cast<int>(c);
    if (!plan.reference) continue;
    auto field = plan.reference->schema->GetFieldByName(columns[c]);
    if (field == nullptr) continue;
    const auto& type = field->type();
    if (!IsReadRaw(*type)) {
      return Status::NotImplemented("column '", columns[c], "' of type ", type->ToString(),
                                    " is not read as fixed-width values");
    }
    col.type = type;
    col.width = type->byte_width();
  }
  if (event_column < 0) return InvalidArgument("columns", "event_timestamp is required");
  std::vector<int16_t> defs;
  std::vector<uint8_t> chunk_valid;  // a column chunk's validity until it has nulls
  for (const ScanFile& file : plan.files) {
    ARROW_ASSIGN_OR_RAISE(auto in, fs_->OpenInputFile(file.path));
    ARROW_ASSIGN_OR_RAISE(auto reader, OpenParquetFile(in, file.path, encryption_.get()));
    std::shared_ptr<arrow::Schema> file_schema;
    ARROW_RETURN_NOT_OK(reader->GetSchema(&file_schema));
    if (!SameColumns(*file_schema, *file.schema)) {
      return Status::IOError("offline store: ", file.path,
                             " does not have the schema of its generation");
    }
    const auto& manifest = reader->manifest();
    const parquet::SchemaDescriptor* descriptor = reader->parquet_reader()->metadata()->schema();
    // Each asked-for column's leaf, checked to be read raw.
    std::vector<int> leaves(columns.size(), -1);
    for (size_t c = 0; c < columns.size(); ++c) {
      if (!out->columns[c].type) continue;
      const int i = file_schema->GetFieldIndex(columns[c]);
      const int leaf = i < 0 ? -1 : manifest.schema_fields[i].column_index;
      if (leaf < 0 || !StoredRaw(*out->columns[c].type, *descriptor->Column(leaf))) {
        return Status::NotImplemented("column '", columns[c], "' of ", file.path,
                                      " is not stored as raw fixed-width values");
      }
      leaves[c] = leaf;
    }
    auto metadata = reader->parquet_reader()->metadata();
    const auto row_groups = RowGroupsOf(*metadata, leaves[event_column], start, end);
    // The file's rows at most: no growing (and copying) row group by row group.
    int64_t most = out->rows;
    for (auto [rg, inside] : row_groups) most += metadata->RowGroup(rg)->num_rows();
    for (FixedWidthColumn& col : out->columns) {
      if (!col.type) continue;
      ARROW_RETURN_NOT_OK(col.values->Reserve(most * col.width));
    }
    for (auto [rg, inside] : row_groups) {
      const int64_t base = out->rows;
      const int64_t rows = metadata->RowGroup(rg)->num_rows();
      if (static_cast<int64_t>(defs.size()) < rows) defs.resize(static_cast<size_t>(rows));
      auto row_group = reader->parquet_reader()->RowGroup(rg);
      for (size_t c = 0; c < columns.size(); ++c) {
        FixedWidthColumn& col = out->columns[c];
        if (!col.type) continue;
        ARROW_ASSIGN_OR_RAISE(uint8_t* dst, Grow(&col.values, (base + rows) * col.width));
        dst += base * col.width;
        // The validity of earlier rows (all valid) is filled in when the
        // first null appears.
        uint8_t* valid = nullptr;
        if (col.has_nulls) {
          ARROW_ASSIGN_OR_RAISE(valid, Grow(&col.valid, base + rows));
          valid += base;
        } else if (descriptor->Column(leaves[c])->max_definition_level() > 0) {
          if (static_cast<int64_t>(chunk_valid.size()) < rows) {
            chunk_valid.resize(static_cast<size_t>(rows));
          }
          valid = chunk_valid.data();
        }
        bool nulls = false;
        auto column = row_group->Column(leaves[c]);
        Status st;
        switch (descriptor->Column(leaves[c])->physical_type()) {
          case parquet::Type::INT32:
            st = DecodeChunk<parquet::Int32Type>(column.get(), rows, defs.data(),
                                                 reinterpret_cast<int32_t*>(dst), valid, &nulls);
            break;
          case parquet::Type::INT64:
            st = DecodeChunk<parquet::Int64Type>(column.get(), rows, defs.data(),
                                                 reinterpret_cast<int64_t*>(dst), valid, &nulls);
            break;
          case parquet::Type::FLOAT:
            st = DecodeChunk<parquet::FloatType>(column.get(), rows, defs.data(),
                                                 reinterpret_cast<float*>(dst), valid, &nulls);
            break;
          default:
            st = DecodeChunk<parquet::DoubleType>(column.get(), rows, defs.data(),
                                                  reinterpret_cast<double*>(dst), valid, &nulls);
            break;
        }
        ARROW_RETURN_NOT_OK(st);
        if (col.has_nulls && !nulls) {
          std::memset(valid, 1, static_cast<size_t>(rows));
        } else if (!col.has_nulls && nulls) {
          col.has_nulls = true;
          ARROW_ASSIGN_OR_RAISE(uint8_t* all, Grow(&col.valid, base + rows));
          std::memset(all, 1, static_cast<size_t>(base));
          std::memcpy(all + base, chunk_valid.data(), static_cast<size_t>(rows));
        }
      }
      int64_t kept = rows;
      if (!inside) {
        // Keep the rows with event time in [start, end), in order.
        const auto* events = reinterpret_cast<const int64_t*>(
            out->columns[static_cast<size_t>(event_column)].values->data()) + base;
        std::vector<int64_t> keep;
        for (int64_t i = 0; i < rows; ++i) {
          if (events[i] >= start && events[i] < end) keep.push_back(i);
        }
        kept = static_cast<int64_t>(keep.size());
        for (FixedWidthColumn& col : out->columns) {
          if (!col.type) continue;
          uint8_t* v = col.values->mutable_data() + base * col.width;
          for (int64_t j = 0; j < kept; ++j) {
            std::memmove(v + j * col.width, v + keep[j] * col.width,
                         static_cast<size_t>(col.width));
          }
          ARROW_RETURN_NOT_OK(Grow(&col.values, (base + kept) * col.width).status());
          if (col.has_nulls) {
            uint8_t* valid = col.valid->mutable_data() + base;
            for (int64_t j = 0; j < kept; ++j) valid[j] = valid[keep[j]];
            ARROW_RETURN_NOT_OK(Grow(&col.valid, base + kept).status());
          }
        }
      }
      out->rows = base + kept;
    }
  }
  return Status::OK();
}

Result<std::shared_ptr<arrow::RecordBatchReader>> OfflineStore::Scan(
    const std::string& feature_set, int64_t schema_version, TimestampMicros start,
    TimestampMicros end, const std::vector<std::string>& columns, bool with_created_timestamp) {
  ARROW_ASSIGN_OR_RAISE(std::string version_dir, VersionDir(root_, feature_set, schema_version));
  ARROW_ASSIGN_OR_RAISE(auto plan, PlanScan(fs_, encryption_, version_dir, start, end, columns,
                                            with_created_timestamp));
  return plan.reader;
}

Result<std::shared_ptr<arrow::Table>> OfflineStore::Read(const std::string& feature_set,
                                                         int64_t schema_version,
                                                         TimestampMicros start, TimestampMicros end,
                                                         const std::vector<std::string>& columns) {
  ARROW_ASSIGN_OR_RAISE(std::string version_dir, VersionDir(root_, feature_set, schema_version));
  ARROW_ASSIGN_OR_RAISE(auto plan, PlanScan(fs_, encryption_, version_dir, start, end, columns));
  ARROW_ASSIGN_OR_RAISE(auto table, plan.reader->ToTable());
  if (table->num_rows() <= 1) return table;
  // Each partition is sorted; across partitions the keys interleave.
  ARROW_ASSIGN_OR_RAISE(auto batch, table->CombineChunksToBatch());
  ARROW_ASSIGN_OR_RAISE(auto order,
                        EntityTimeOrder(*batch, plan.key_columns,
                                        {kEventTimestampColumn, kCreatedTimestampColumn}));
  ARROW_ASSIGN_OR_RAISE(auto sorted, cp::Take(arrow::Datum(table), arrow::Datum(order)));
  return sorted.table();
}

Status OfflineStore::CheckHealth() {
  if (health_fs_->type_name() == "local") {
    if (::access(health_path_.c_str(), W_OK) != 0) {
      return Unavailable("the offline store directory " + health_path_ + " is not writable");
    }
    return Status::OK();
  }
  auto info = health_fs_->GetFileInfo(health_path_);
  if (!info.ok()) {
    return Unavailable("the offline store (" + health_fs_->type_name() + ") does not answer: " +
                       info.status().message());
  }
  if (object_store_ && info->type() != arrow::fs::FileType::Directory) {
    return Unavailable("the offline store's bucket '" + health_path_ + "' does not exist");
  }
  return Status::OK();
}

Result<std::vector<std::string>> OfflineStore::Partitions(const std::string& feature_set,
                                                          int64_t schema_version) {
  ARROW_ASSIGN_OR_RAISE(std::string version_dir, VersionDir(root_, feature_set, schema_version));
  ARROW_ASSIGN_OR_RAISE(auto existing, ListDateDirs(*fs_, version_dir));
  std::vector<std::string> out;
  for (const auto& [day, dir] : existing) {
    ARROW_ASSIGN_OR_RAISE(auto entries, ListDir(*fs_, dir));
    bool committed = std::any_of(entries.begin(), entries.end(), [](const arrow::fs::FileInfo& e) {
      return e.IsFile() && MarkerNumber(e.base_name()).has_value();
    });
    if (committed) out.push_back(FormatDate(day));
  }
  return out;
}

}  // namespace fstore

namespace fstore {

namespace {
constexpr char kKeyCheckName[] = "_encryption_key_check";
constexpr char kKeyCheckPlaintext[] = "fstore-encryption-key-check";
}  // namespace

Status OfflineStore::CheckEncryptionKey() {
  const std::string path = JoinPath(root_, kKeyCheckName);
  auto info = fs_->GetFileInfo(path);
  if (!info.ok()) {
    return Unavailable("the offline store does not answer: " + info.status().message());
  }
  const bool exists = info->IsFile();
  if (exists) {
    ARROW_ASSIGN_OR_RAISE(auto sealed, ReadWholeFile(*fs_, path));
    if (!cipher_) {
      return InvalidArgument("FSTORE_ENCRYPTION_KEY",
                             "the store's data is encrypted (" + path +
                                 " exists) and no encryption key is configured: set "
                                 "FSTORE_ENCRYPTION_KEY or FSTORE_ENCRYPTION_KEY_FILE to its key");
    }
    auto opened = cipher_->Open(sealed, kKeyCheckName);
    if (!opened.ok() || *opened != kKeyCheckPlaintext) {
      std::string why = opened.ok() ? "the key check does not match" : ErrorMessageOf(opened.status());
      return InvalidArgument("FSTORE_ENCRYPTION_KEY",
                             "the configured encryption key (FSTORE_ENCRYPTION_KEY or "
                             "FSTORE_ENCRYPTION_KEY_FILE) is not the key this store was encrypted "
                             "with: " + why);
    }
    return Status::OK();
  }
  if (!cipher_) return Status::OK();
  // A store that already holds data written in clear cannot be switched to
  // encryption in place: its files would stay readable by anyone and fail
  // every read with the key. Refuse now rather than fail on reads later.
  ARROW_ASSIGN_OR_RAISE(auto entries, ListDir(*fs_, root_));
  for (const auto& entry : entries) {
    const std::string name = entry.base_name();
    if (!name.empty() && name[0] != '.' && name[0] != '_') {
      return InvalidArgument("FSTORE_ENCRYPTION_KEY",
                             "the offline store at " + root_ +
                                 " already holds data written without encryption ('" + name +
                                 "'); encryption at rest cannot be turned on for it: start "
                                 "without a key, or re-materialize into an empty store");
    }
  }
  // First start with a key: record it, so that a later start without it, or
  // with another, stops with a clear message instead of failing on reads.
  ARROW_ASSIGN_OR_RAISE(auto sealed, cipher_->Seal(kKeyCheckPlaintext, kKeyCheckName));
  if (!object_store_ && !root_.empty()) ARROW_RETURN_NOT_OK(fs_->CreateDir(root_, true));
  return WriteAtomically(*fs_, root_, kKeyCheckName, sealed, object_store_);
}

}  // namespace fstore
