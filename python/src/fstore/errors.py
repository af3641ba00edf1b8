"""The exceptions the SDK raises.

Every error is a :class:`FeatureStoreError`. An HTTP error answer of the
server, whose body is ``{"error": {"code", "message", "field"?, "position"?}}``,
becomes the subclass of its status (:data:`ERRORS_BY_STATUS`) carrying that
code, message, field and position and the HTTP status. Failures to talk to
the server at all are :class:`FeatureStoreConnectionError` and
:class:`FeatureStoreTimeoutError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type


class FeatureStoreError(Exception):
    """Base class of every SDK error.

    Attributes:
        status: the HTTP status of the answer (``None`` when there was no answer).
        code: the server's machine-readable code (``"not_found"``, ...), or an
            SDK code (``"timeout"``, ``"connection_error"``, ``"job_failed"``).
        message: the human-readable explanation.
        field: the request field or query parameter at fault, when known.
        position: the character position in an offending text (a SQL
            transformation), when known.
        body: the decoded error body (``{}`` when there was none).
    """

    def __init__(self, message: str, *, status: Optional[int] = None,
                 code: Optional[str] = None, field: Optional[str] = None,
                 position: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.position = position
        self.body: Dict[str, Any] = dict(body or {})

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.field:
            text += f" (field: {self.field}"
            if self.position is not None:
                text += f", position {self.position}"
            text += ")"
        return text


class BadRequestError(FeatureStoreError):
    """400 ``invalid_argument``: the request is malformed or breaks a rule."""


class AuthenticationError(FeatureStoreError):
    """401 ``unauthenticated``: no or an unknown API key."""


class PermissionDeniedError(FeatureStoreError):
    """403 ``permission_denied``: the API key may not do this."""


class NotFoundError(FeatureStoreError):
    """404 ``not_found``: no such entity, feature set, feature or job."""


class MethodNotAllowedError(FeatureStoreError):
    """405 ``method_not_allowed``: the route exists but not with this method."""


class ConflictError(FeatureStoreError):
    """409 ``already_exists`` / ``conflict``: a duplicate name, dependants, a clash."""


class PayloadTooLargeError(FeatureStoreError):
    """413 ``payload_too_large``: the body or the number of entities is over the limit."""


class UnsupportedMediaTypeError(FeatureStoreError):
    """415 ``unsupported_media_type``: the body's Content-Type is not accepted."""


class UnprocessableError(FeatureStoreError):
    """422 ``unprocessable``: well formed but inconsistent (unknown references,
    cycles, columns missing from the source)."""


class InternalServerError(FeatureStoreError):
    """500 ``internal``: a bug or an unexpected failure in the server."""


class NotImplementedByServerError(FeatureStoreError):
    """501 ``not_implemented``: the server does not offer this yet."""


class UnavailableError(FeatureStoreError):
    """503 ``unavailable``: a backend (registry, online store, source) is down.

    Retried by the client (``retries``) before it is raised."""


class FeatureStoreConnectionError(FeatureStoreError, ConnectionError):
    """The server could not be reached, or the connection broke (after retries)."""


class FeatureStoreTimeoutError(FeatureStoreError, TimeoutError):
    """No (complete) answer within the client's ``timeout``. Never retried: the
    server may still be working on the request."""


class MaterializationError(FeatureStoreError):
    """A materialization job ended ``failed``; :attr:`job` is the job record
    (its ``error`` says why; ``completed_until`` is where a retry resumes)."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        super().__init__(
            f"materialization job {job.get('id')} of feature set "
            f"{job.get('feature_set')!r} failed: {job.get('error')}",
            code="job_failed", body=job)
        self.job = job


class BatchJobError(FeatureStoreError):
    """A batch retrieval job ended ``failed``; :attr:`job` is the job record."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        super().__init__(f"batch retrieval job {job.get('id')} failed: {job.get('error')}",
                         code="job_failed", body=job)
        self.job = job


#: HTTP status -> the class raised for it. Other 4xx are FeatureStoreError,
#: other 5xx InternalServerError.
ERRORS_BY_STATUS: Dict[int, Type[FeatureStoreError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableError,
    500: InternalServerError,
    501: NotImplementedByServerError,
    503: UnavailableError,
}


def error_from_response(status: int, body: Any, reason: str = "") -> FeatureStoreError:
    """The exception for an HTTP error answer (``body``: the decoded JSON, or
    the raw text when it was not the server's error shape)."""
    cls = ERRORS_BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else FeatureStoreError
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        position = err.get("position")
        return cls(str(err.get("message") or reason or f"HTTP {status}"), status=status,
                   code=err.get("code"), field=err.get("field"),
                   position=position if isinstance(position, int) else None, body=body)
    text = body if isinstance(body, str) else ""
    return cls(text.strip()[:500] or reason or f"HTTP {status}", status=status, code=None,
               body=body if isinstance(body, dict) else None)
