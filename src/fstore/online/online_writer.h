#pragma once

// The materializer's way into the online store: the latest row per entity of
// an Arrow table, converted to OnlineRecords and written in batches.

#include <cstdint>
#include <string>
#include <vector>

#include "fstore/core/columns.h"
#include "fstore/core/status.h"
#include "fstore/online/online_store.h"

namespace arrow {
class Table;
}

namespace fstore {

/// Records per OnlineStore::Write call.
inline constexpr int64_t kDefaultOnlineWriteBatch = 10'000;

/// Writes the newest row per entity key of `rows` to `feature_set` in
/// `store`, in Write calls of at most `batch_size` records (the store's
/// newer-wins rule then applies against what is stored).
///
/// Columns of `rows`:
///  - `key_columns`, in the feature set's join key order: string (utf8,
///    large_utf8) or integer (int8..int64, uint8..uint32); no nulls.
///  - `event_timestamp`: timestamp (any unit, converted to microseconds,
///    rounded down; the time zone is ignored: values are UTC) or int64
///    microseconds; no nulls.
///  - `created_timestamp`, optional, of the same types; a missing column or
///    a null counts as 0.
///  - `feature_columns`, each stored under its column name: int64 (and
///    narrower ints) -> int, float64/float32 -> float, utf8/large_utf8 ->
///    string, boolean -> bool, timestamp (any unit) -> TimestampValue, and
///    list/large_list of those -> ListValue. Nulls are null values.
/// When several rows share a key, the one with the greatest (event, created)
/// is written, the last of them on a full tie; the others count as ignored.
///
/// Cost: one pass over the rows to find the newest per key (an open-addressing
/// hash index over the encoded keys), then the winners are converted batch by
/// batch; each Write runs on a helper thread while the next batch is built,
/// so at most two Writes' worth of records are in memory besides the index.
/// Not thread-safe with respect to `rows` being modified; `store` must
/// outlive the call.
///
/// InvalidArgument (field = the column) for a missing column, an unsupported
/// type, or a null key or event time; nothing is written then. A failing
/// Write stops the loop: earlier batches stay written (a re-run is safe).
/// `write_options` go to every Write (the feature set's ttl as an expiry hint).
Result<WriteResult> WriteLatestRows(OnlineStore* store, const std::string& feature_set,
                                    const std::vector<std::string>& key_columns,
                                    const std::vector<std::string>& feature_columns,
                                    const arrow::Table& rows,
                                    int64_t batch_size = kDefaultOnlineWriteBatch,
                                    const OnlineWriteOptions& write_options = {});

}  // namespace fstore
