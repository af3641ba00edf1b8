#include "fstore/online/shared_record.h"

#include "fstore/online/feature_value_json.h"
#include "fstore/online/online_record_codec.h"

namespace fstore {

namespace {

void AppendPart(std::string_view part, std::string* out) {
  AppendVarint(part.size(), out);
  out->append(part);
}

}  // namespace

SharedRecord::SharedRecord(const OnlineRecord& record)
    : event_time_(record.event_time), created_time_(record.created_time) {
  std::string json, typed;
  for (const auto& [name, value] : record.values) {
    json.clear();
    typed.clear();
    AppendFeatureValueJson(value, &json);
    AppendFeatureValue(value, &typed);
    AppendPart(name, &data_);
    AppendPart(json, &data_);
    AppendPart(typed, &data_);
  }
  data_.shrink_to_fit();
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
