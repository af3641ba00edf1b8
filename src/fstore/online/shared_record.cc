#include "fstore/online/shared_record.h"

#include <openssl/crypto.h>

#include "fstore/online/feature_value_json.h"
#include "fstore/online/online_record_codec.h"

namespace fstore {

namespace {

constexpr size_t kScratchKeptBytes = 64 * 1024;

/// Appends what `write` appends, after its length as a varint. The length
/// is almost always one byte: written in place, and only a part of 128
/// bytes or more has its text moved to make room for a longer one.
template <typename Write>
void AppendPart(std::string* out, Write write) {
  const size_t at = out->size();
  out->push_back('\0');
  write(out);
  const size_t n = out->size() - at - 1;
  if (n < 0x80) {
    (*out)[at] = static_cast<char>(n);
    return;
  }
  std::string length;
  AppendVarint(n, &length);
  (*out)[at] = length[0];
  out->insert(at + 1, length, 1);
}

/// This thread's scratch string, empty: a buffer is built there (its
/// capacity kept from record to record) and then copied once, so that a
/// record's buffer is one allocation of its exact size -- a record is built
/// for every read the record cache misses and every read from Redis.
std::string& Scratch() {
  thread_local std::string buffer;
  buffer.clear();
  return buffer;
}

/// A record with a huge value does not leave its memory with the thread.
void TrimScratch(std::string& buffer) {
  if (buffer.capacity() > kScratchKeptBytes) std::string().swap(buffer);
}

/// Appends one value's parts: name, JSON text, and the typed encoding that
/// `append_typed` writes.
template <typename AppendTyped>
void AppendValue(std::string* buffer, std::string_view name, const FeatureValue& value,
                 AppendTyped append_typed) {
  AppendPart(buffer, [&](std::string* out) { out->append(name); });
  AppendPart(buffer, [&](std::string* out) { AppendFeatureValueJson(value, out); });
  AppendPart(buffer, append_typed);
}

}  // namespace

SharedRecord::SharedRecord(const OnlineRecord& record)
    : event_time_(record.event_time), created_time_(record.created_time) {
  std::string& buffer = Scratch();
  for (const auto& entry : record.values) {
    // (Named, not a structured binding: clang 14 cannot capture one.)
    const FeatureValue& value = entry.second;
    AppendValue(&buffer, entry.first, value,
                [&](std::string* out) { AppendFeatureValue(value, out); });
  }
  data_.assign(buffer);
  TrimScratch(buffer);
}

Result<std::shared_ptr<const SharedRecord>> SharedRecord::Decode(
    std::string_view bytes, const Cipher* cipher, std::string_view associated_data) {
  class Builder : public OnlineRecordVisitor {
   public:
    explicit Builder(std::string* buffer) : buffer_(buffer) {}
    bool Times(TimestampMicros event_time, TimestampMicros created_time) override {
      event_time_ = event_time;
      created_time_ = created_time;
      return true;
    }
    void Value(std::string_view name, const FeatureValue& value,
               std::string_view encoded) override {
      AppendValue(buffer_, name, value, [&](std::string* out) { out->append(encoded); });
    }
    TimestampMicros event_time_ = 0;
    TimestampMicros created_time_ = 0;

   private:
    std::string* buffer_;
  };
  std::string& buffer = Scratch();
  Builder builder(&buffer);
  Status st = VisitOnlineRecord(bytes, cipher, associated_data, &builder);
  std::shared_ptr<const SharedRecord> record;
  if (st.ok()) {
    record = std::make_shared<const SharedRecord>(Private{}, builder.event_time_,
                                                  builder.created_time_, buffer);
  }
  // A sealed record's values were in clear here: wiped before the scratch
  // is reused or freed.
  if (cipher != nullptr) OPENSSL_cleanse(buffer.data(), buffer.size());
  TrimScratch(buffer);
  ARROW_RETURN_NOT_OK(st);
  return record;
}

void SharedRecord::Next(size_t* pos, Value* out) const {
  // Built by the constructor: every length is there and within the buffer.
  auto part = [&](std::string_view* view) {
    uint64_t n;
    const auto first = static_cast<unsigned char>(data_[*pos]);
    if (first < 0x80) {  // most lengths: one byte
      n = first;
      ++*pos;
    } else {
      (void)ReadVarint(data_, pos, &n);
    }
    *view = std::string_view(data_).substr(*pos, n);
    *pos += n;
  };
  part(&out->name);
  part(&out->json);
  part(&out->typed);
}

std::optional<SharedRecord::Value> SharedRecord::Find(std::string_view name,
                                                      size_t* cursor) const {
  const size_t from = *cursor < data_.size() ? *cursor : 0;
  Value v;
  for (size_t pos = from; pos < data_.size();) {
    Next(&pos, &v);
    if (v.name == name) {
      *cursor = pos;
      return v;
    }
  }
  for (size_t pos = 0; pos < from;) {
    Next(&pos, &v);
    if (v.name == name) {
      *cursor = pos;
      return v;
    }
  }
  return std::nullopt;
}

FeatureValue SharedRecord::Value::Decode() const {
  auto value = DecodeFeatureValue(typed);
  return value.ok() ? std::move(value).ValueUnsafe() : FeatureValue{};
}

OnlineRecord SharedRecord::ToRecord() const {
  OnlineRecord record;
  record.event_time = event_time_;
  record.created_time = created_time_;
  Value v;
  for (size_t pos = 0; pos < data_.size();) {
    Next(&pos, &v);
    record.values.emplace_back(std::string(v.name), v.Decode());
  }
  return record;
}

}  // namespace fstore
