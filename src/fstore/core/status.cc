#include "fstore/core/status.h"

#include <memory>

namespace fstore {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kMethodNotAllowed: return "method_not_allowed";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kPayloadTooLarge: return "payload_too_large";
    case ErrorCode::kUnsupportedMediaType: return "unsupported_media_type";
    case ErrorCode::kUnprocessable: return "unprocessable";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kNotImplemented: return "not_implemented";
    case ErrorCode::kUnavailable: return "unavailable";
  }
  return "internal";
}

std::string ErrorDetail::ToString() const {
  std::string out(ErrorCodeName(code_));
  if (!field_.empty()) out += " (field " + field_ + ")";
  if (position_) out += " at position " + std::to_string(*position_);
  return out;
}

namespace {
arrow::StatusCode ArrowCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnprocessable:
    case ErrorCode::kUnsupportedMediaType:
    case ErrorCode::kPayloadTooLarge:
    case ErrorCode::kMethodNotAllowed:
      return arrow::StatusCode::Invalid;
    case ErrorCode::kNotFound:
      return arrow::StatusCode::KeyError;
    case ErrorCode::kAlreadyExists:
      return arrow::StatusCode::AlreadyExists;
    case ErrorCode::kNotImplemented:
      return arrow::StatusCode::NotImplemented;
    case ErrorCode::kUnavailable:
      return arrow::StatusCode::IOError;
    case ErrorCode::kConflict:
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kInternal:
      return arrow::StatusCode::UnknownError;
  }
  return arrow::StatusCode::UnknownError;
}
}  // namespace

Status MakeError(ErrorCode code, std::string message, std::string field,
                 std::optional<int> position) {
  return Status(ArrowCodeFor(code), std::move(message),
                std::make_shared<ErrorDetail>(code, std::move(field), position));
}

const ErrorDetail* ErrorOf(const Status& status) {
  const auto& detail = status.detail();
  if (detail && std::string_view(detail->type_id()) == "fstore::ErrorDetail") {
    return static_cast<const ErrorDetail*>(detail.get());
  }
  return nullptr;
}

ErrorCode ErrorCodeOf(const Status& status) {
  if (const ErrorDetail* e = ErrorOf(status)) return e->code();
  switch (status.code()) {
    case arrow::StatusCode::Invalid:
    case arrow::StatusCode::TypeError:
    case arrow::StatusCode::IndexError:
    case arrow::StatusCode::SerializationError:
      return ErrorCode::kInvalidArgument;
    case arrow::StatusCode::KeyError:
      return ErrorCode::kNotFound;
    case arrow::StatusCode::AlreadyExists:
      return ErrorCode::kAlreadyExists;
    case arrow::StatusCode::NotImplemented:
      return ErrorCode::kNotImplemented;
    case arrow::StatusCode::IOError:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

std::string ErrorMessageOf(const Status& status) { return status.message(); }

Status WithFieldPrefix(const Status& status, std::string_view prefix) {
  const ErrorDetail* e = ErrorOf(status);
  if (e == nullptr) return status;
  std::string field(prefix);
  if (!e->field().empty()) {
    if (e->field().front() != '[') field += ".";
    field += e->field();
  }
  return MakeError(e->code(), status.message(), std::move(field), e->position());
}

}  // namespace fstore
