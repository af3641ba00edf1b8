#pragma once

// fstore's errors are arrow::Status values carrying an ErrorDetail: a code from
// the feature-store vocabulary (what the HTTP layer maps to a status code, in
// one place: server/http_error.h) and, for client errors, the request field
// that was wrong and, for SQL, the character position in it.

#include <optional>
#include <string>
#include <string_view>

#include <arrow/result.h>
#include <arrow/status.h>

namespace fstore {

using arrow::Result;
using arrow::Status;

/// What went wrong, independent of transport.
enum class ErrorCode {
  kInvalidArgument,     ///< malformed request or definition (400)
  kUnauthenticated,     ///< missing or bad credentials (401)
  kPermissionDenied,    ///< authenticated but not allowed (403)
  kNotFound,            ///< no such object (404)
  kMethodNotAllowed,    ///< route exists, method does not (405)
  kAlreadyExists,       ///< duplicate name (409)
  kConflict,            ///< the change conflicts with current state (409)
  kPayloadTooLarge,     ///< request body over the limit (413)
  kUnsupportedMediaType,///< body is not JSON (415)
  kUnprocessable,       ///< well-formed but semantically invalid (422)
  kInternal,            ///< a bug or an unexpected failure (500)
  kNotImplemented,      ///< not built yet (501)
  kUnavailable,         ///< a dependency is down; retry later (503)
};

/// The wire name of a code: "invalid_argument", "not_found", ...
std::string_view ErrorCodeName(ErrorCode code);

/// Attached to an arrow::Status; read back with ErrorOf().
class ErrorDetail : public arrow::StatusDetail {
 public:
  ErrorDetail(ErrorCode code, std::string field, std::optional<int> position)
      : code_(code), field_(std::move(field)), position_(position) {}

  const char* type_id() const override { return "fstore::ErrorDetail"; }
  std::string ToString() const override;

  ErrorCode code() const { return code_; }
  /// The request field at fault ("validation_rules.min_value"), or empty.
  const std::string& field() const { return field_; }
  /// 1-based character position inside the field's text (SQL), if known.
  std::optional<int> position() const { return position_; }

 private:
  ErrorCode code_;
  std::string field_;
  std::optional<int> position_;
};

/// A Status with an ErrorDetail. The arrow::StatusCode is chosen so that code
/// that only looks at Arrow codes still sees the right family of error.
Status MakeError(ErrorCode code, std::string message, std::string field = {},
                 std::optional<int> position = std::nullopt);

inline Status InvalidArgument(std::string field, std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message), std::move(field));
}
inline Status Unprocessable(std::string field, std::string message) {
  return MakeError(ErrorCode::kUnprocessable, std::move(message), std::move(field));
}
inline Status NotFound(std::string message) {
  return MakeError(ErrorCode::kNotFound, std::move(message));
}
inline Status AlreadyExists(std::string field, std::string message) {
  return MakeError(ErrorCode::kAlreadyExists, std::move(message), std::move(field));
}
inline Status Conflict(std::string message) {
  return MakeError(ErrorCode::kConflict, std::move(message));
}
inline Status NotImplemented(std::string message) {
  return MakeError(ErrorCode::kNotImplemented, std::move(message));
}
inline Status Unavailable(std::string message) {
  return MakeError(ErrorCode::kUnavailable, std::move(message));
}
inline Status Internal(std::string message) {
  return MakeError(ErrorCode::kInternal, std::move(message));
}

/// The code of any status: its ErrorDetail's, else derived from the Arrow code
/// (Invalid -> invalid_argument, KeyError -> not_found, AlreadyExists ->
/// already_exists, NotImplemented -> not_implemented, IOError -> unavailable,
/// anything else -> internal). Must not be called on an OK status.
ErrorCode ErrorCodeOf(const Status& status);

/// The ErrorDetail of a status, or null.
const ErrorDetail* ErrorOf(const Status& status);

/// The message without Arrow's "Invalid: " prefix.
std::string ErrorMessageOf(const Status& status);

/// Prefixes the field of an error with `prefix.` (for nested decoding); other
/// statuses pass through unchanged.
Status WithFieldPrefix(const Status& status, std::string_view prefix);

}  // namespace fstore
