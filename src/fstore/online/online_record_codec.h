#pragma once

// The compact binary value of an OnlineRecord, shared by every backend (the
// RocksDB value, the Redis value), so that a record is bytes-for-bytes the
// same wherever it is stored.
//
// Format, version 1 (all varints are LEB128; "zigzag" maps signed to unsigned
// so that small negative numbers stay short):
//   u8      version (= 1)
//   varint  zigzag(event_time)
//   varint  zigzag(created_time)
//   varint  number of values
//   per value: varint name length, name bytes, then the value:
//   value := u8 tag, payload
//     0 null       (no payload)
//     1 int64      varint zigzag
//     2 float64    8 bytes, IEEE 754 little-endian
//     3 string     varint length, bytes
//     4 bool       u8 0 or 1
//     5 timestamp  varint zigzag(micros)
//     6 list       varint element count, then each element as a value
// Version 2 is the same with encryption at rest (security/encryption.h):
//   u8      version (= 2)
//   varint  zigzag(event_time)
//   varint  zigzag(created_time)
//   bytes   Cipher::Seal(the version 1 bytes from "number of values" on)
// The times stay in clear so that newer-wins compares without the key (the
// Redis Lua script, RocksDB's read-compare-write); the feature names and
// values are sealed, authenticated with the caller's associated data (the
// store key: feature set and entity key), so a sealed record cannot be moved
// to another key unnoticed. Entity keys are keys, not feature values: they
// stay in clear.
//
// Feature names are stored inline: simplest, and a record of 10 features with
// short names stays well under a cache line or two of overhead.

#include <string>
#include <string_view>
#include <utility>

#include "fstore/core/status.h"
#include "fstore/online/online_store.h"
#include "fstore/security/encryption.h"

namespace fstore {

inline constexpr uint8_t kOnlineRecordFormatVersion = 1;
inline constexpr uint8_t kSealedOnlineRecordFormatVersion = 2;

/// Appends the encoding of `record` to `out`.
void AppendOnlineRecord(const OnlineRecord& record, std::string* out);

/// Appends the version 2 (sealed) encoding of `record` with `cipher`, or
/// version 1 when `cipher` is null.
Status AppendOnlineRecord(const OnlineRecord& record, const Cipher* cipher,
                          std::string_view associated_data, std::string* out);

/// The encoding of `record`.
std::string EncodeOnlineRecord(const OnlineRecord& record);

/// Decodes a whole record. Internal error (never a crash) on bytes that are
/// not a valid encoding: truncated, trailing bytes, unknown version or tag,
/// lists nested deeper than 32.
Result<OnlineRecord> DecodeOnlineRecord(std::string_view bytes);

/// Decodes a version 1 record (`cipher` must be null) or a version 2 one
/// (`cipher` must be the key it was sealed with, and `associated_data` the
/// same). Internal error with a clear message otherwise: "written without
/// encryption but an encryption key is configured", "encrypted and no
/// encryption key is configured", "sealed with a different encryption key",
/// "authentication failed". Never garbage.
Result<OnlineRecord> DecodeOnlineRecord(std::string_view bytes, const Cipher* cipher,
                                        std::string_view associated_data);

/// Receives a record's parts from VisitOnlineRecord, in the record's order.
class OnlineRecordVisitor {
 public:
  virtual ~OnlineRecordVisitor() = default;
  /// The record's times, first (before a sealed record is opened); false
  /// skips its values.
  virtual bool Times(TimestampMicros event_time, TimestampMicros created_time) = 0;
  /// Each value: its name, the value decoded, and its encoding as it is in
  /// the record (AppendFeatureValue's bytes). The views live until the call
  /// returns.
  virtual void Value(std::string_view name, const FeatureValue& value,
                     std::string_view encoded) = 0;
};

/// DecodeOnlineRecord without building an OnlineRecord: the same checks and
/// errors, the parts handed to `visitor` as they are read (a reader that
/// builds its own form of the record, SharedRecord, keeps the values'
/// encodings as they are instead of encoding them again). On an error the
/// visitor may have seen some values.
Status VisitOnlineRecord(std::string_view bytes, const Cipher* cipher,
                         std::string_view associated_data, OnlineRecordVisitor* visitor);

/// The encoding of one value (its tag and payload, as in a record) and its
/// inverse (the whole of `bytes` is one value; Internal error otherwise).
/// SharedRecord keeps its values' typed form this way.
void AppendFeatureValue(const FeatureValue& value, std::string* out);
Result<FeatureValue> DecodeFeatureValue(std::string_view bytes);

/// A LEB128 varint, as the encoding writes them; ReadVarint reads one at
/// data[*pos] and moves *pos past it (false when truncated or too long).
void AppendVarint(uint64_t v, std::string* out);
bool ReadVarint(std::string_view data, size_t* pos, uint64_t* out);

/// Decodes only (event_time, created_time), for newer-wins comparisons
/// without decoding the values (either version; no key needed).
Result<std::pair<TimestampMicros, TimestampMicros>> DecodeOnlineRecordTimes(
    std::string_view bytes);

}  // namespace fstore
