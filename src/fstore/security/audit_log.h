#pragma once

// The audit log (issue #7): who did what to which object, and how it ended.
// Entries go to the registry (Registry::AppendAudit). An entry never holds an
// API key's secret or a feature value: callers pass names, ids, error codes
// and messages they build themselves, never request bodies.

#include <string>

#include "fstore/core/status.h"
#include "fstore/registry/operations.h"
#include "fstore/registry/registry.h"

namespace fstore {

/// Outcomes as stored.
inline constexpr std::string_view kAuditSuccess = "success";
inline constexpr std::string_view kAuditDenied = "denied";
inline constexpr std::string_view kAuditFailure = "failure";

/// The outcome an HTTP status means: 2xx/3xx success, 401/403 denied, else failure.
std::string_view AuditOutcomeOf(int http_status);

/// Appends entries to the registry. Thread-safe as the registry is.
class AuditLog {
 public:
  explicit AuditLog(Registry* registry) : registry_(registry) {}

  /// Appends `event`, stamping its time when 0. A failure to write is logged
  /// (error level) and returned; the action it records is not undone and a
  /// request that caused it still gets its answer (an unavailable audit store
  /// must not take serving down with it).
  Status Record(AuditEvent event);

 private:
  Registry* registry_;
};

}  // namespace fstore
