#pragma once

// A materialization job: one run of a feature set's pipeline over an event
// time range [start, end), as recorded in the registry. The job record and the
// feature set's watermark are the last things a run commits (ARCHITECTURE.md
// "Materialization, step by step"), so a crash leaves the previous watermark.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

#include "fstore/core/time.h"

namespace fstore {

enum class JobStatus { kQueued, kRunning, kSucceeded, kFailed };

/// "queued", "running", "succeeded", "failed".
std::string_view JobStatusName(JobStatus status);
/// The status a JobStatusName names; InvalidArgument (field "status") for any
/// other text.
Result<JobStatus> ParseJobStatus(std::string_view name);

struct MaterializationJob {
  std::string id;                ///< UUID
  std::string feature_set_id;
  std::string feature_set_name;
  int64_t feature_set_version = 0;  ///< the definition version the run used
  JobStatus status = JobStatus::kQueued;
  std::string trigger;           ///< "api", "schedule", "cli"
  bool incremental = false;      ///< range chosen from the watermark
  TimestampMicros start = 0;     ///< event-time range [start, end)
  TimestampMicros end = 0;
  /// Progress of a chunked run: everything before this is durable in both
  /// stores; a retry resumes here. Equals start before the first chunk.
  TimestampMicros completed_until = 0;

  TimestampMicros created_at = 0;
  std::optional<TimestampMicros> started_at;
  std::optional<TimestampMicros> finished_at;

  int64_t rows_read = 0;
  int64_t rows_written_offline = 0;
  int64_t rows_written_online = 0;
  int64_t rows_rejected = 0;  ///< dropped or nulled by validation
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
  double duration_seconds = 0;
  double cpu_seconds = 0;  ///< CPU time of the run's threads (read, compute, write)
  /// The newest event time among the rows this run wrote to each store;
  /// unset when it wrote none there. Freshness (monitoring/) takes the max
  /// over successful runs.
  std::optional<TimestampMicros> max_event_time_offline;
  std::optional<TimestampMicros> max_event_time_online;
  /// Per feature and rule: {"feature": {"rule": {"count": n, "samples": [...]}}}.
  boost::json::object quality_report;
  std::string error;  ///< why it failed
};

}  // namespace fstore
