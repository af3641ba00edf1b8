#pragma once

// The one place where errors become HTTP: ErrorCode -> status code, and the one
// JSON error shape:
//   {"error": {"code": "invalid_argument", "message": "...", "field": "ttl"}}
// ("field" and "position" only when known).

#include <boost/json/value.hpp>

#include "fstore/core/status.h"
#include "fstore/server/http_message.h"

namespace fstore {

/// 400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 501, 503.
int HttpStatusOf(ErrorCode code);

/// The error response for a non-OK status.
HttpResponse ErrorResponse(const Status& status);

/// A JSON response with the given status.
HttpResponse JsonResponse(int http_status, const boost::json::value& body);

}  // namespace fstore

/// In a route handler: `lhs = value` of a Result, or return its error as the
/// response (ARROW_ASSIGN_OR_RAISE for handlers, which return responses).
#define FSTORE_ASSIGN_OR_RESPOND(lhs, rexpr)                        \
  auto FSTORE_RESPOND_CONCAT(__LINE__) = (rexpr);                   \
  if (!FSTORE_RESPOND_CONCAT(__LINE__).ok()) {                      \
    return ::fstore::ErrorResponse(FSTORE_RESPOND_CONCAT(__LINE__).status()); \
  }                                                                 \
  lhs = std::move(FSTORE_RESPOND_CONCAT(__LINE__)).ValueUnsafe();
#define FSTORE_RESPOND_CONCAT_IMPL(line) _respond_result_##line
#define FSTORE_RESPOND_CONCAT(line) FSTORE_RESPOND_CONCAT_IMPL(line)
