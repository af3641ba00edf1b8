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
