#include "fstore/server/http_error.h"

#include <boost/json/object.hpp>

#include "fstore/core/json_text.h"

namespace fstore {

int HttpStatusOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kMethodNotAllowed: return 405;
    case ErrorCode::kAlreadyExists: return 409;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kPayloadTooLarge: return 413;
    case ErrorCode::kUnsupportedMediaType: return 415;
    case ErrorCode::kUnprocessable: return 422;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kNotImplemented: return 501;
    case ErrorCode::kUnavailable: return 503;
  }
  return 500;
}

HttpResponse ErrorResponse(const Status& status) {
  // An OK status here is a caller bug; answer 500 rather than crash.
  const ErrorCode code = status.ok() ? ErrorCode::kInternal : ErrorCodeOf(status);
  boost::json::object error;
  error["code"] = ErrorCodeName(code);
  error["message"] = status.ok() ? std::string("error response for an OK status")
                                 : ErrorMessageOf(status);
  if (const ErrorDetail* detail = ErrorOf(status)) {
    if (!detail->field().empty()) error["field"] = detail->field();
    if (detail->position()) error["position"] = *detail->position();
  }
  boost::json::object body;
  body["error"] = std::move(error);
  return JsonResponse(HttpStatusOf(code), body);
}

HttpResponse JsonResponse(int http_status, const boost::json::value& body) {
  HttpResponse response;
  response.status = http_status;
  response.content_type = "application/json";
  response.body = SerializeJson(body);
  return response;
}

}  // namespace fstore
