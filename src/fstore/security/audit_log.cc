#include "fstore/security/audit_log.h"

#include <spdlog/spdlog.h>

#include "fstore/core/time.h"

namespace fstore {

std::string_view AuditOutcomeOf(int http_status) {
  if (http_status == 401 || http_status == 403) return kAuditDenied;
  if (http_status >= 200 && http_status < 400) return kAuditSuccess;
  return kAuditFailure;
}

Status AuditLog::Record(AuditEvent event) {
  if (event.time == 0) event.time = NowMicros();
  Status st = registry_->AppendAudit(event);
  if (!st.ok()) {
    spdlog::error("audit log: could not record {} {} by '{}' ({}): {}", event.action,
                  event.target, event.key_id, event.outcome, st.ToString());
  }
  return st;
}

}  // namespace fstore
