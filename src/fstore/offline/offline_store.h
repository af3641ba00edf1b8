#pragma once

// The offline store: a feature set's full history as Parquet files, for
// training data and point-in-time joins. Written and read through
// arrow::fs::FileSystem, so the same code runs on local disk (file://) and on
// object storage (s3://) -- whatever arrow::fs::FileSystemFromUri supports.
//
// Layout (ARCHITECTURE.md, "Storage layouts"):
//
//   <root>/<feature_set>/v<schema_version>/date=YYYY-MM-DD/
//       part-<job>-<n>.parquet        data files of the current generation
//       _generation-<g>-<job>.json    commit marker of generation g
//
// Columns of every data file: the join key columns (int64 or utf8, in the
// order given to ReplaceRange), `event_timestamp` and `created_timestamp`
// (both timestamp[us, UTC], never null), then the feature columns. Inside a
// date partition the rows are unique per (entity key, event time, created
// time) and sorted by the key columns, event time, then created time; a
// partition's files are consecutive slices of that order (in the order its
// marker lists them). The date of a row is the UTC date of its event time.
// Several rows of one (entity key, event time) are versions of it: the one
// with the greatest created time is current, older ones are what the store
// knew before (time travel: a read as of an earlier time sees them).
//
// Generations. A date partition is replaced as a whole: the writer puts the
// new files under temporary names, moves them to their final names, then
// writes the commit marker `_generation-<g>-<job>.json` (temp name + Move),
// whose file list is the partition's content. Readers use the marker with
// the greatest g and only the files it lists, so a crash at any point leaves
// either the old or the new generation visible, never a mix. Files not listed
// by the current marker (superseded generations, temp files of a crashed
// write) are ignored by readers and deleted by the next write to the
// partition. A ReplaceRange over several dates is atomic per date partition,
// not as a whole: after a crash some dates may show the new rows and others
// the old ones; repeating the ReplaceRange (what a re-run of the
// materialization job does) completes it.
//
// On object storage (S3) the same layout holds, with two differences the
// store handles itself: directories are key prefixes (none is created; a
// date partition exists while it holds a file), and a file is written under
// its final name at once, since an object PUT or multipart upload appears
// whole at completion or not at all (Move would be a copy and a delete per
// object). A write interrupted mid-file (S3 down) can leave an unlisted
// object behind; readers ignore it and the next write deletes it, as for a
// local temp file.
//
// Encryption at rest: with a cipher, every data file is Parquet with modular
// encryption (encrypted footer, every column; parquet_encryption.h) and the
// root holds a key check file (CheckEncryptionKey). Generation markers hold
// file names, row counts and the schema, never feature values: they stay
// in clear.
//
// Thread safety and concurrency: one writer at a time per feature set (the
// materialization scheduler runs one job per feature set); any number of
// readers, also during a write. A reader that lists a partition just before a
// write deletes its superseded files may fail with an IOError (retry).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <arrow/filesystem/type_fwd.h>
#include <arrow/type_fwd.h>

#include "fstore/core/columns.h"
#include "fstore/core/status.h"
#include "fstore/core/time.h"
#include "fstore/offline/s3_filesystem.h"
#include "fstore/security/encryption.h"

namespace fstore {

class ParquetEncryption;

/// The schema version materialization writes and retrieval reads (the "v1"
/// of the layout); bumped when the stored columns change incompatibly.
inline constexpr int64_t kOfflineSchemaVersion = 1;

/// Rows per Parquet row group written by the offline store.
inline constexpr int64_t kOfflineRowGroupRows = 128 * 1024;
/// Rows per Parquet file before a partition is split into several files.
inline constexpr int64_t kOfflineFileRows = 8 * kOfflineRowGroupRows;

/// What a ReplaceRange wrote.
struct WriteStats {
  int64_t rows_written = 0;   ///< rows in the new files (incl. rows kept from outside the range)
  int64_t bytes_written = 0;  ///< bytes of the new Parquet files (markers not counted)
  int64_t files_written = 0;  ///< Parquet files written
  int64_t partitions_written = 0;  ///< date partitions given a new generation
};

/// One column as OfflineStore::ReadFixedWidth decodes it.
struct FixedWidthColumn {
  std::string name;
  /// The stored type; null when the stored schema lacks the column (a
  /// feature added after the rows were written: every value is null).
  std::shared_ptr<arrow::DataType> type;
  int width = 0;  ///< bytes per value
  /// rows * width bytes, zeros where a value is null. Kept (with its
  /// capacity) from one read to the next.
  std::shared_ptr<arrow::ResizableBuffer> values;
  /// One byte per row, 1 where a value; only with has_nulls.
  std::shared_ptr<arrow::ResizableBuffer> valid;
  bool has_nulls = false;
};

/// Rows decoded by OfflineStore::ReadFixedWidth; reused from call to call.
struct FixedWidthRows {
  int64_t rows = 0;
  std::vector<FixedWidthColumn> columns;  ///< in the order asked for
  const FixedWidthColumn* Find(std::string_view name) const {
    for (const auto& c : columns) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }
};

class OfflineStore {
 public:
  /// Opens the store rooted at `uri`: `file:///abs/dir`, `s3://bucket[/prefix]`
  /// (reached with `s3`, s3_filesystem.h), or anything else
  /// arrow::fs::FileSystemFromUri accepts. The root need not exist yet: an
  /// empty store reads as empty and the first write creates it. For s3:// the
  /// bucket must exist or be creatable (`s3.create_bucket`): Unavailable
  /// when S3 does not answer.
  /// With `cipher` (encryption at rest) every Parquet file is written with
  /// Parquet modular encryption and read with the key (parquet_encryption.h).
  static Result<std::unique_ptr<OfflineStore>> Open(const std::string& uri,
                                                    const S3ConnectionOptions& s3 = {},
                                                    std::shared_ptr<const Cipher> cipher = nullptr);

  /// A store rooted at `root` (a path in `fs`'s own syntax) of an existing
  /// filesystem: for tests (fault injection) and for callers that configure
  /// the filesystem themselves (S3 options).
  static Result<std::unique_ptr<OfflineStore>> Make(std::shared_ptr<arrow::fs::FileSystem> fs,
                                                    std::string root,
                                                    std::shared_ptr<const Cipher> cipher = nullptr);

  ~OfflineStore();
  OfflineStore(const OfflineStore&) = delete;
  OfflineStore& operator=(const OfflineStore&) = delete;

  /// Replaces the feature set's rows whose event time lies in [start, end)
  /// (UTC microseconds, start < end) with `rows`.
  ///
  /// `rows` has the columns `key_columns` (int64 or utf8, no nulls),
  /// `event_timestamp` and `created_timestamp` (timestamp of any unit, UTC or
  /// no time zone, no nulls; stored as timestamp[us, UTC]) and the feature
  /// columns, in any order; every row's event time must lie in [start, end)
  /// and in the years 0001..9999, else InvalidArgument and nothing is written.
  /// For each date partition touched, its new content is its current rows
  /// outside [start, end), the new rows of that date, and the current rows
  /// inside [start, end) that a new row supersedes (same entity key and event
  /// time, a greater created time: kept as an older version for time
  /// travel; but a new row whose feature values equal the version before it
  /// is dropped, that version staying current with its earlier created
  /// time); other current rows inside the range are gone. It is
  /// deduplicated to one row per (entity key, event time, created time)
  /// (a new row over an old one, the later row of `rows` over an earlier),
  /// sorted by key, event time and created time, and written (integer keys
  /// and times DELTA_BINARY_PACKED, other numbers and times PLAIN without a
  /// codec, other columns LZ4_RAW; row groups of kOfflineRowGroupRows) as a
  /// new generation. A
  /// partition wholly inside [start, end) that gets no new rows is replaced by
  /// an empty generation; dates in the range with neither old nor new rows
  /// are not created. The schema of `rows` (feature columns and their types)
  /// must match the data already stored for this schema version, else
  /// InvalidArgument. `job_id` ([A-Za-z0-9_.-]+, not starting with '.' or
  /// '_') names the files. Rows of a partition are held in memory while it is
  /// rewritten (one date at a time).
  Result<WriteStats> ReplaceRange(const std::string& feature_set, int64_t schema_version,
                                  const std::vector<std::string>& key_columns,
                                  TimestampMicros start, TimestampMicros end,
                                  const std::shared_ptr<arrow::Table>& rows,
                                  const std::string& job_id);

  /// The rows with event time in [start, end), sorted by key, event time and
  /// created time (every stored version).
  /// With `columns` non-empty only those feature columns are returned (the
  /// key and time columns always are, first); a column the stored schema
  /// lacks is InvalidArgument. Only the date partitions of [start, end) are opened,
  /// and only the row groups whose event-time statistics overlap it are read.
  /// A feature set (or schema version) with no data is not an error: the
  /// result is an empty table -- with the stored schema if any partition of
  /// the feature set exists, else with no columns at all.
  Result<std::shared_ptr<arrow::Table>> Read(const std::string& feature_set, int64_t schema_version,
                                             TimestampMicros start, TimestampMicros end,
                                             const std::vector<std::string>& columns = {});

  /// The same rows as Read, streamed in bounded memory (one row group at a
  /// time) for large reads. The order differs from Read's: date partitions in
  /// date order, within each the rows sorted by key, event time and created
  /// time. Without `with_created_timestamp` the created_timestamp column is
  /// left out (not decoded).
  Result<std::shared_ptr<arrow::RecordBatchReader>> Scan(
      const std::string& feature_set, int64_t schema_version, TimestampMicros start,
      TimestampMicros end, const std::vector<std::string>& columns = {},
      bool with_created_timestamp = true);

  /// The rows Scan(feature_set, schema_version, start, end) gives (in the
  /// same order), only the columns `columns` -- which must include
  /// event_timestamp -- decoded from Parquet straight into `out`'s buffers,
  /// which keep their memory from one call to the next: no Arrow arrays are
  /// built, nothing is copied after decoding. For hot paths that read whole
  /// partitions (the point-in-time join). Only fixed-width columns: int32,
  /// int64, float, double, date32 and timestamp[ms|us|ns]; any other stored
  /// type is NotImplemented (nothing read; use Scan). A column the stored
  /// schema lacks comes back with a null type.
  Status ReadFixedWidth(const std::string& feature_set, int64_t schema_version,
                        TimestampMicros start, TimestampMicros end,
                        const std::vector<std::string>& columns, FixedWidthRows* out);

  /// OK when the storage answers: a local root is a writable directory
  /// (FeatureStore::Open creates it); an S3
  /// bucket exists (checked with short timeouts and no retry, so a down
  /// server answers within seconds). Unavailable otherwise. For readiness
  /// probes; cheap (one stat, or one request).
  Status CheckHealth();

  /// The dates ("YYYY-MM-DD", ascending) that have a committed generation,
  /// including those whose current generation is empty. A missing feature
  /// set has none.
  Result<std::vector<std::string>> Partitions(const std::string& feature_set,
                                              int64_t schema_version);

  /// The start-up key check of encryption at rest. The root holds
  /// `_encryption_key_check` (a value sealed with the key) once the store
  /// has been opened with a key. Then opening without a key, or with
  /// another key, is InvalidArgument (field FSTORE_ENCRYPTION_KEY) with a
  /// message saying which; with no check file and a key, the check file is
  /// written, unless the root already holds feature set data (written in
  /// clear: InvalidArgument, encryption cannot be turned on for it); with
  /// neither, OK. Unavailable when the storage does not answer.
  Status CheckEncryptionKey();

  /// The cipher of encryption at rest; null without.
  const std::shared_ptr<const Cipher>& cipher() const { return cipher_; }

 private:
  OfflineStore(std::shared_ptr<arrow::fs::FileSystem> fs, std::string root,
               std::shared_ptr<const Cipher> cipher);
  Result<WriteStats> ReplaceRangeImpl(const std::string& feature_set, int64_t schema_version,
                                      const std::vector<std::string>& key_columns,
                                      TimestampMicros start, TimestampMicros end,
                                      const std::shared_ptr<arrow::Table>& rows,
                                      const std::string& job_id);

  std::shared_ptr<arrow::fs::FileSystem> fs_;
  std::string root_;  // no trailing '/'; empty means the filesystem's root
  // Object storage (fs_->type_name() == "s3"): write final names directly,
  // create no directories.
  bool object_store_ = false;
  // CheckHealth's filesystem (fs_, or for an S3 store from Open one with short
  // timeouts and one attempt) and what it looks at (the root; S3: the bucket).
  std::shared_ptr<arrow::fs::FileSystem> health_fs_;
  std::string health_path_;
  std::shared_ptr<const Cipher> cipher_;
  std::shared_ptr<const ParquetEncryption> encryption_;  // null without a cipher
};

}  // namespace fstore
