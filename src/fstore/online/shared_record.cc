#include "fstore/online/shared_record.h"

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

}  // namespace

SharedRecord::SharedRecord(const OnlineRecord& record)
    : event_time_(record.event_time), created_time_(record.created_time) {
  // Built in this thread's scratch string (its capacity kept from record to
  // record), then copied once: the buffer is one allocation of its exact
  // size (a record is built for every read the record cache misses, and
  // for every read from Redis).
  thread_local std::string buffer;
  buffer.clear();
  for (const auto& entry : record.values) {
    // (Named, not a structured binding: clang 14 cannot capture one.)
    const std::string& name = entry.first;
    const FeatureValue& value = entry.second;
    AppendPart(&buffer, [&](std::string* out) { out->append(name); });
    AppendPart(&buffer, [&](std::string* out) { AppendFeatureValueJson(value, out); });
    AppendPart(&buffer, [&](std::string* out) { AppendFeatureValue(value, out); });
  }
  data_.assign(buffer);
  // A record with a huge value does not leave its memory with the thread.
  if (buffer.capacity() > kScratchKeptBytes) std::string().swap(buffer);
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
