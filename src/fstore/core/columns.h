#pragma once

// Column names every store shares (ARCHITECTURE.md "Storage layouts"): the
// offline Parquet files and the online writer's input both carry them.

namespace fstore {

/// When the feature values became true (the source's timestamp_field).
inline constexpr char kEventTimestampColumn[] = "event_timestamp";
/// When the row was written: breaks ties between equal event times.
inline constexpr char kCreatedTimestampColumn[] = "created_timestamp";

}  // namespace fstore
