#pragma once

// The online store: the latest feature values per (feature set, entity key),
// served in well under a millisecond. One interface, one backend per URI
// scheme, chosen by OnlineStoreFromUri: rocksdb:// (embedded, the default),
// redis:// / rediss:// (one Redis server) and redis+cluster:// (Redis Cluster).
//
// Data model: one OnlineRecord per (feature set, entity key), holding the
// event time and created time of the source row it came from and the typed
// values of the feature set's features. A write replaces the whole record,
// and only when it is not older than the stored one: the store never goes
// back in time, so backfills and re-runs of a materialization are safe.
//
// Every backend passes the conformance suite in online_store_conformance.h.
//
// Thread safety: all methods of OnlineStore may be called concurrently.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fstore/core/status.h"
#include "fstore/core/time.h"

namespace fstore {

class Cipher;
class SharedRecord;  // shared_record.h

/// A timestamp feature value (UTC microseconds since the epoch); a type of
/// its own so that it is not mistaken for an int feature.
struct TimestampValue {
  TimestampMicros micros = 0;
  bool operator==(const TimestampValue&) const = default;
};

struct ListValue;

/// A typed feature value. std::monostate is null. Lists hold elements of one
/// scalar type (int, float, string, bool or timestamp) and may hold nulls;
/// the store itself keeps whatever it is given (nested lists included) and
/// does not check that a list is homogeneous.
using FeatureValue =
    std::variant<std::monostate, int64_t, double, std::string, bool, TimestampValue, ListValue>;

/// A list feature value: its elements in order (null elements are monostate).
/// An empty list is not null.
struct ListValue {
  std::vector<FeatureValue> items;
  bool operator==(const ListValue&) const = default;
};

/// One entity's latest values for one feature set.
struct OnlineRecord {
  TimestampMicros event_time = 0;    ///< event time of the source row (UTC us)
  TimestampMicros created_time = 0;  ///< created time of the source row (UTC us); 0 if none
  /// The feature values by feature name, in the order written. Names are
  /// expected to be unique; the store keeps them as given.
  std::vector<std::pair<std::string, FeatureValue>> values;

  bool operator==(const OnlineRecord&) const = default;
};

/// One part of an entity key: the value of one join key (string or int).
using EntityKeyPart = std::variant<int64_t, std::string>;

/// An entity key: the values of the feature set's join keys, in the feature
/// set's join key order. Never empty. int64 7 and string "7" are different keys.
using EntityKey = std::vector<EntityKeyPart>;

/// The canonical byte encoding of an entity key, shared by every backend
/// (RocksDB key suffix, Redis key suffix). Each part is type-tagged and
/// self-delimiting, so the encoding is unambiguous and injective:
///   int64:  0x01, then 8 bytes big-endian with the sign bit flipped
///           (byte order sorts like the numbers);
///   string: 0x02, then the length as a LEB128 varint, then the bytes.
/// The parts follow each other with nothing in between.
std::string EncodeEntityKey(const EntityKey& key);

/// Appends the encoding of one part to `out` (the building block of
/// EncodeEntityKey, for callers that encode from columns without an EntityKey).
void AppendEntityKeyPart(int64_t part, std::string* out);
void AppendEntityKeyPart(std::string_view part, std::string* out);

/// The inverse of EncodeEntityKey; InvalidArgument on malformed bytes.
Result<EntityKey> DecodeEntityKey(std::string_view bytes);

/// What a Write did.
struct WriteResult {
  int64_t applied = 0;  ///< records stored
  int64_t ignored = 0;  ///< records dropped because a newer one was stored or written
  bool operator==(const WriteResult&) const = default;
};

/// How to write: hints from the feature set's definition.
struct OnlineWriteOptions {
  /// The feature set's ttl in microseconds (<= 0: none). A backend with
  /// native expiry (Redis) lets a record expire at event_time + ttl by its
  /// own clock to reclaim memory; others ignore it. Read's ttl rule alone
  /// decides what is served, so the hint never changes an answer that Read
  /// gives with `now` near the wall clock.
  int64_t ttl_micros = 0;
};

class OnlineStore {
 public:
  virtual ~OnlineStore() = default;

  /// OK when the store can serve; Unavailable otherwise (for /ready).
  virtual Status CheckHealth() = 0;

  /// Flushes and releases the store; further calls fail with Unavailable.
  /// Idempotent.
  virtual Status Close() = 0;

  /// Writes `records` for `feature_set`, replacing each key's whole record,
  /// unless the stored record is newer: a record is ignored when its
  /// (event_time, created_time) is lower than the stored one's, compared
  /// lexicographically (an older event time loses; at equal event times the
  /// greater created time wins; when both are equal the new write wins).
  /// Several records for one key in one call are resolved the same way (on
  /// a full tie the later one in `records` wins).
  ///
  /// Each record is written atomically (a reader sees the old or the new
  /// record, never a mix); a call is not atomic as a whole in general (it is
  /// in RocksDB), so after a failure some records may be written: a retry is
  /// safe because of the rule above. Concurrent writers to the same keys end
  /// with the newest record per key. Writes are not durable until Sync().
  ///
  /// InvalidArgument for an empty feature set name or one containing '\0',
  /// or an empty entity key; nothing is written then.
  [[nodiscard]] virtual Result<WriteResult> Write(
      const std::string& feature_set, const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
      const OnlineWriteOptions& options) = 0;

  /// Write with default options (no ttl hint). Implementations add
  /// `using OnlineStore::Write;` so that it stays visible on their type.
  [[nodiscard]] Result<WriteResult> Write(
      const std::string& feature_set,
      const std::vector<std::pair<EntityKey, OnlineRecord>>& records) {
    return Write(feature_set, records, OnlineWriteOptions{});
  }

  /// Reads the records of `keys` with one multi-get: result[i] is the record
  /// of keys[i], or nullopt when it is missing or expired. With
  /// `ttl_micros` > 0 a record is expired when its event_time < now - ttl;
  /// a record exactly at the boundary (event_time == now - ttl) is served.
  /// `ttl_micros` <= 0 means no expiry. `now` is UTC microseconds.
  /// Expired records are served as missing but not deleted. A stored value
  /// that cannot be decoded is an Internal error for the whole call.
  [[nodiscard]] virtual Result<std::vector<std::optional<OnlineRecord>>> Read(
      const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
      TimestampMicros now) = 0;

  /// Read, with the records as SharedRecords (shared_record.h): result[i]
  /// is null when keys[i] is missing or expired. The same rules and errors
  /// as Read. The default wraps Read; a store with a record cache (RocksDB)
  /// hands out the cached records themselves.
  [[nodiscard]] virtual Result<std::vector<std::shared_ptr<const SharedRecord>>> ReadShared(
      const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
      TimestampMicros now);

  /// Removes every record of `feature_set` (when the feature set is
  /// deleted); other feature sets are untouched. OK when there is none.
  [[nodiscard]] virtual Status DeleteFeatureSet(const std::string& feature_set) = 0;

  /// For a store that several processes share (Redis): a counter per
  /// feature set that moves after every Write that changed a record of it
  /// and every DeleteFeatureSet of it, made by any process; result[i] is
  /// feature_sets[i]'s (0 when it was never written). A process caching
  /// records in front of the store polls it to learn of writes made by
  /// others. nullopt (the default) for a store only one process opens
  /// (RocksDB), whose writes that process sees directly.
  [[nodiscard]] virtual Result<std::optional<std::vector<int64_t>>> WriteVersions(
      const std::vector<std::string>& feature_sets);

  /// Makes every write that returned before this call durable (survives a
  /// process or machine crash). The materializer calls it before committing
  /// its watermark.
  [[nodiscard]] virtual Status Sync() = 0;
};

/// Opens the online store a URI names:
///   rocksdb:///abs/dir[?record_cache_mb=N]   (N MiB of record cache, default 1024; 0: none)
///   redis://[[user]:password@]host[:port][/db][?options]     one Redis server
///   rediss://...                                             the same over TLS
///   redis+cluster://[[user]:password@]h1:p1,h2:p2,...[?options]  Redis Cluster
///   rediss+cluster://...                                     Redis Cluster over TLS
/// The Redis options (timeouts, key prefix, TLS files) are listed in
/// online/redis/redis_online_store.h. InvalidArgument for a malformed URI or
/// an unknown scheme. A Redis that cannot be reached yet is not an error: the
/// store connects on first use (and CheckHealth says Unavailable until then).
/// With `cipher` (encryption at rest) every backend seals the feature values
/// of each record (online_record_codec.h, version 2).
Result<std::unique_ptr<OnlineStore>> OnlineStoreFromUri(const std::string& uri,
                                                        std::shared_ptr<const Cipher> cipher = nullptr);

}  // namespace fstore
