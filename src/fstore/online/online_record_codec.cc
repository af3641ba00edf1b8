#include "fstore/online/online_record_codec.h"

#include <cstring>

#include <openssl/crypto.h>

namespace fstore {

namespace {

enum Tag : uint8_t {
  kNull = 0,
  kInt64 = 1,
  kFloat64 = 2,
  kString = 3,
  kBool = 4,
  kTimestamp = 5,
  kList = 6,
};

constexpr int kMaxListDepth = 32;

inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t UnZigZag(uint64_t u) {
  return static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1);
}

inline void PutVarint(uint64_t v, std::string* out) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

void PutValue(const FeatureValue& value, std::string* out) {
  switch (value.index()) {
    case 0:
      out->push_back(static_cast<char>(kNull));
      break;
    case 1:
      out->push_back(static_cast<char>(kInt64));
      PutVarint(ZigZag(std::get<int64_t>(value)), out);
      break;
    case 2: {
      out->push_back(static_cast<char>(kFloat64));
      double d = std::get<double>(value);
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      char buf[8];
      for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(bits >> (8 * i));
      out->append(buf, 8);
      break;
    }
    case 3: {
      const std::string& s = std::get<std::string>(value);
      out->push_back(static_cast<char>(kString));
      PutVarint(s.size(), out);
      out->append(s);
      break;
    }
    case 4:
      out->push_back(static_cast<char>(kBool));
      out->push_back(std::get<bool>(value) ? 1 : 0);
      break;
    case 5:
      out->push_back(static_cast<char>(kTimestamp));
      PutVarint(ZigZag(std::get<TimestampValue>(value).micros), out);
      break;
    case 6: {
      const auto& items = std::get<ListValue>(value).items;
      out->push_back(static_cast<char>(kList));
      PutVarint(items.size(), out);
      for (const auto& item : items) PutValue(item, out);
      break;
    }
  }
}

Status Corrupt(const char* what) {
  return Internal(std::string("corrupt online record: ") + what);
}

/// A bounds-checked reader over the encoded bytes.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  bool done() const { return p_ == end_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  const char* position() const { return p_; }

  bool Byte(uint8_t* out) {
    if (p_ == end_) return false;
    *out = static_cast<uint8_t>(*p_++);
    return true;
  }

  bool Varint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;  // more than 10 bytes
  }

  bool Signed(int64_t* out) {
    uint64_t u;
    if (!Varint(&u)) return false;
    *out = UnZigZag(u);
    return true;
  }

  bool Bytes(size_t n, std::string_view* out) {
    if (n > remaining()) return false;
    *out = std::string_view(p_, n);
    p_ += n;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

Status GetValue(Reader* r, int depth, FeatureValue* out) {
  uint8_t tag;
  if (!r->Byte(&tag)) return Corrupt("truncated value tag");
  switch (tag) {
    case kNull:
      *out = std::monostate{};
      return Status::OK();
    case kInt64: {
      int64_t v;
      if (!r->Signed(&v)) return Corrupt("truncated int value");
      *out = v;
      return Status::OK();
    }
    case kFloat64: {
      std::string_view b;
      if (!r->Bytes(8, &b)) return Corrupt("truncated float value");
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
      double d;
      std::memcpy(&d, &bits, sizeof d);
      *out = d;
      return Status::OK();
    }
    case kString: {
      uint64_t n;
      std::string_view b;
      if (!r->Varint(&n) || !r->Bytes(n, &b)) return Corrupt("truncated string value");
      *out = std::string(b);
      return Status::OK();
    }
    case kBool: {
      uint8_t b;
      if (!r->Byte(&b)) return Corrupt("truncated bool value");
      if (b > 1) return Corrupt("bool value is neither 0 nor 1");
      *out = b == 1;
      return Status::OK();
    }
    case kTimestamp: {
      int64_t v;
      if (!r->Signed(&v)) return Corrupt("truncated timestamp value");
      *out = TimestampValue{v};
      return Status::OK();
    }
    case kList: {
      if (depth >= kMaxListDepth) return Corrupt("lists nested too deep");
      uint64_t n;
      if (!r->Varint(&n)) return Corrupt("truncated list length");
      // Each element takes at least one byte: refuse counts the bytes cannot hold.
      if (n > r->remaining()) return Corrupt("list length beyond the value");
      ListValue list;
      list.items.resize(n);
      for (auto& item : list.items) ARROW_RETURN_NOT_OK(GetValue(r, depth + 1, &item));
      *out = std::move(list);
      return Status::OK();
    }
    default:
      return Corrupt("unknown value tag");
  }
}

Status GetHeader(Reader* r, TimestampMicros* event_time, TimestampMicros* created_time,
                 uint8_t* version) {
  if (!r->Byte(version)) return Corrupt("empty value");
  if (*version != kOnlineRecordFormatVersion && *version != kSealedOnlineRecordFormatVersion) {
    return Corrupt("unknown format version");
  }
  if (!r->Signed(event_time)) return Corrupt("truncated event time");
  if (!r->Signed(created_time)) return Corrupt("truncated created time");
  return Status::OK();
}

// The values part (count, then name/value pairs) up to the end of `r`.
/// Walks the values part (count, then name/value pairs) up to the end of
/// `r`: `take(name, &value, encoded)` for each, `encoded` being the value's
/// bytes as stored (take may move from *value). `on_count(count)` first.
template <typename OnCount, typename Take>
Status WalkValues(Reader* r, OnCount on_count, Take take) {
  uint64_t count;
  if (!r->Varint(&count)) return Corrupt("truncated value count");
  // Each value takes at least two bytes (name length, tag).
  if (count > r->remaining() / 2) return Corrupt("value count beyond the value");
  on_count(static_cast<size_t>(count));
  FeatureValue value;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t n;
    std::string_view name;
    if (!r->Varint(&n) || !r->Bytes(n, &name)) return Corrupt("truncated feature name");
    const char* start = r->position();
    ARROW_RETURN_NOT_OK(GetValue(r, 0, &value));
    take(name, &value, std::string_view(start, static_cast<size_t>(r->position() - start)));
  }
  if (!r->done()) return Corrupt("trailing bytes");
  return Status::OK();
}

// The values part into `record`.
Status GetValues(Reader* r, OnlineRecord* record) {
  return WalkValues(
      r, [&](size_t count) { record->values.reserve(count); },
      [&](std::string_view name, FeatureValue* value, std::string_view) {
        record->values.emplace_back(std::string(name), std::move(*value));
      });
}

void PutValues(const OnlineRecord& record, std::string* out) {
  PutVarint(record.values.size(), out);
  for (const auto& [name, value] : record.values) {
    PutVarint(name.size(), out);
    out->append(name);
    PutValue(value, out);
  }
}

/// Reads a record's header and hands `on_times` its times; when that
/// returns true, hands `with_values` a reader over the values part in
/// clear -- the bytes themselves (version 1) or the opened sealed part
/// (version 2), which is wiped afterwards. The checks and errors of
/// DecodeOnlineRecord (online_record_codec.h).
template <typename OnTimes, typename WithValues>
Status OpenRecord(std::string_view bytes, const Cipher* cipher,
                  std::string_view associated_data, OnTimes on_times,
                  WithValues with_values) {
  Reader r(bytes);
  TimestampMicros event_time = 0;
  TimestampMicros created_time = 0;
  uint8_t version = 0;
  ARROW_RETURN_NOT_OK(GetHeader(&r, &event_time, &created_time, &version));
  if (version == kOnlineRecordFormatVersion) {
    if (cipher != nullptr) {
      return Internal(
          "the online record was written without encryption but an encryption key is "
          "configured (re-materialize the feature set to encrypt it)");
    }
    if (!on_times(event_time, created_time)) return Status::OK();
    return with_values(&r);
  }
  if (cipher == nullptr) {
    return Internal(
        "the online record is encrypted and no encryption key is configured (set "
        "FSTORE_ENCRYPTION_KEY or FSTORE_ENCRYPTION_KEY_FILE)");
  }
  if (!on_times(event_time, created_time)) return Status::OK();
  std::string_view sealed;
  (void)r.Bytes(r.remaining(), &sealed);
  auto opened = cipher->Open(sealed, associated_data);
  if (!opened.ok()) {
    return Internal("the online record cannot be decrypted: " + ErrorMessageOf(opened.status()));
  }
  Reader values(*opened);
  Status st = with_values(&values);
  OPENSSL_cleanse(opened->data(), opened->size());
  return st;
}

}  // namespace

void AppendOnlineRecord(const OnlineRecord& record, std::string* out) {
  out->push_back(static_cast<char>(kOnlineRecordFormatVersion));
  PutVarint(ZigZag(record.event_time), out);
  PutVarint(ZigZag(record.created_time), out);
  PutValues(record, out);
}

Status AppendSealedOnlineRecord(const OnlineRecord& record, const Cipher& cipher,
                                std::string_view associated_data, std::string* out) {
  std::string values;
  values.reserve(16 + record.values.size() * 16);
  PutValues(record, &values);
  ARROW_ASSIGN_OR_RAISE(auto sealed, cipher.Seal(values, associated_data));
  OPENSSL_cleanse(values.data(), values.size());
  out->push_back(static_cast<char>(kSealedOnlineRecordFormatVersion));
  PutVarint(ZigZag(record.event_time), out);
  PutVarint(ZigZag(record.created_time), out);
  out->append(sealed);
  return Status::OK();
}

Status AppendOnlineRecord(const OnlineRecord& record, const Cipher* cipher,
                          std::string_view associated_data, std::string* out) {
  if (cipher == nullptr) {
    AppendOnlineRecord(record, out);
    return Status::OK();
  }
  return AppendSealedOnlineRecord(record, *cipher, associated_data, out);
}

std::string EncodeOnlineRecord(const OnlineRecord& record) {
  std::string out;
  out.reserve(24 + record.values.size() * 24);
  AppendOnlineRecord(record, &out);
  return out;
}

Result<OnlineRecord> DecodeOnlineRecord(std::string_view bytes) {
  return DecodeOnlineRecord(bytes, nullptr, {});
}

Result<OnlineRecord> DecodeOnlineRecord(std::string_view bytes, const Cipher* cipher,
                                        std::string_view associated_data) {
  OnlineRecord record;
  ARROW_RETURN_NOT_OK(OpenRecord(
      bytes, cipher, associated_data,
      [&](TimestampMicros event_time, TimestampMicros created_time) {
        record.event_time = event_time;
        record.created_time = created_time;
        return true;
      },
      [&](Reader* r) { return GetValues(r, &record); }));
  return record;
}

Status VisitOnlineRecord(std::string_view bytes, const Cipher* cipher,
                         std::string_view associated_data, OnlineRecordVisitor* visitor) {
  return OpenRecord(
      bytes, cipher, associated_data,
      [&](TimestampMicros event_time, TimestampMicros created_time) {
        return visitor->Times(event_time, created_time);
      },
      [&](Reader* r) {
        return WalkValues(
            r, [](size_t) {},
            [&](std::string_view name, FeatureValue* value, std::string_view encoded) {
              visitor->Value(name, *value, encoded);
            });
      });
}

void AppendFeatureValue(const FeatureValue& value, std::string* out) { PutValue(value, out); }

Result<FeatureValue> DecodeFeatureValue(std::string_view bytes) {
  Reader r(bytes);
  FeatureValue value;
  ARROW_RETURN_NOT_OK(GetValue(&r, 0, &value));
  if (!r.done()) return Corrupt("trailing bytes after a value");
  return value;
}

void AppendVarint(uint64_t v, std::string* out) { PutVarint(v, out); }

bool ReadVarint(std::string_view data, size_t* pos, uint64_t* out) {
  if (*pos > data.size()) return false;
  Reader r(data.substr(*pos));
  if (!r.Varint(out)) return false;
  *pos = data.size() - r.remaining();
  return true;
}

Result<std::pair<TimestampMicros, TimestampMicros>> DecodeOnlineRecordTimes(
    std::string_view bytes) {
  Reader r(bytes);
  std::pair<TimestampMicros, TimestampMicros> times;
  uint8_t version = 0;
  ARROW_RETURN_NOT_OK(GetHeader(&r, &times.first, &times.second, &version));
  return times;
}

}  // namespace fstore
