#pragma once

// SharedRecord: a record as OnlineStore::ReadShared hands it out, immutable
// and shared by the store's record cache and every reader of it (a cached
// record is built once, not once per read, and never copied).
//
// Compact, in one buffer: for each value, in the record's order, its name,
// its JSON text as the REST API serves it (feature_value_json.h) and its
// typed encoding (online_record_codec.h), each after its length as a varint.
// Serving copies the text instead of decoding the value and formatting its
// number (a 100-entity x 250-feature response is 25,000 values), and reads
// one contiguous buffer per record; whoever needs a typed value decodes
// that one.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fstore/online/online_store.h"

namespace fstore {

class Cipher;  // security/encryption.h

class SharedRecord {
  struct Private {
    explicit Private() = default;
  };

 public:
  explicit SharedRecord(const OnlineRecord& record);

  /// Decodes a stored record (online_record_codec.h) straight into a
  /// SharedRecord: each value's encoding kept as it is stored, no
  /// OnlineRecord in between (the stores build one for every record they
  /// read). The checks and errors of DecodeOnlineRecord.
  static Result<std::shared_ptr<const SharedRecord>> Decode(std::string_view bytes,
                                                            const Cipher* cipher,
                                                            std::string_view associated_data);

  /// (For Decode: the buffer as it builds it.)
  SharedRecord(Private, TimestampMicros event_time, TimestampMicros created_time,
               std::string_view buffer)
      : event_time_(event_time), created_time_(created_time), data_(buffer) {}

  SharedRecord(const SharedRecord&) = delete;
  SharedRecord& operator=(const SharedRecord&) = delete;

  TimestampMicros event_time() const { return event_time_; }
  TimestampMicros created_time() const { return created_time_; }

  /// One value, viewed in the record's buffer.
  struct Value {
    std::string_view name;
    std::string_view json;   ///< its JSON text
    std::string_view typed;  ///< its typed encoding
    /// The typed value (null if the buffer were not one this class built).
    FeatureValue Decode() const;
  };

  /// The value named `name`: looked for from byte offset *cursor (where the
  /// previous Find on this record left off, so that values asked for in the
  /// record's order are each found at once), then from the start. When
  /// found, *cursor is moved past it. Nullopt when the record has no such
  /// value. Start with *cursor = 0.
  std::optional<Value> Find(std::string_view name, size_t* cursor) const;

  /// The record decoded (equal to the one it was built from).
  OnlineRecord ToRecord() const;

  /// Prefetches the buffer into the CPU caches (a reader about to Find in
  /// many records issues their prefetches ahead).
  void Prefetch() const {
    for (size_t at = 0; at < data_.size(); at += 64) __builtin_prefetch(data_.data() + at);
  }

  /// The bytes of its buffer (for the record cache's accounting).
  size_t buffer_bytes() const { return data_.capacity(); }

 private:
  /// Reads the value at *pos into *out and moves *pos past it.
  void Next(size_t* pos, Value* out) const;

  TimestampMicros event_time_ = 0;
  TimestampMicros created_time_ = 0;
  std::string data_;
};

}  // namespace fstore
