#include "fstore/registry/materialization_job.h"

#include <string>

namespace fstore {

std::string_view JobStatusName(JobStatus status) {
  switch (status) {
    case JobStatus::kQueued: return "queued";
    case JobStatus::kRunning: return "running";
    case JobStatus::kSucceeded: return "succeeded";
    case JobStatus::kFailed: return "failed";
  }
  return "unknown";
}

Result<JobStatus> ParseJobStatus(std::string_view name) {
  for (JobStatus status :
       {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded, JobStatus::kFailed}) {
    if (JobStatusName(status) == name) return status;
  }
  return InvalidArgument("status", "must be queued, running, succeeded or failed, got '" +
                                       std::string(name) + "'");
}

}  // namespace fstore
