"""HTTP transport: the standard library's http.client with keep-alive, the
server's error shape mapped to exceptions, and retries with exponential
backoff.

Retry policy (``retries`` extra attempts after the first):

* ``503 unavailable`` is retried for every request: the server answers it
  before applying anything (a backend it needs is down).
* A failure to connect (refused, unreachable, DNS) is retried for every
  request: nothing was sent.
* A connection that breaks after the request was sent is retried only for
  idempotent requests (GET, and the read-only serving POSTs); a create, an
  update or a materialization may have been applied, so it is raised as
  :class:`FeatureStoreConnectionError`. A kept-alive connection that the
  server had closed while idle is reopened and the request sent again once,
  without counting as a retry (the server never saw it).
* A timeout is never retried (the server may still be working; retrying
  would multiply the caller's ``timeout``): it raises
  :class:`FeatureStoreTimeoutError` at once.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from . import __version__
from .errors import (FeatureStoreConnectionError, FeatureStoreError, FeatureStoreTimeoutError,
                     error_from_response)

logger = logging.getLogger("fstore")

JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"

QueryValue = Union[str, int, float, bool, None]


@dataclass
class Response:
    """One HTTP answer: status, headers (lower-case names) and raw body."""

    status: int
    headers: Dict[str, str]
    body: bytes
    attempts: int = 1

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body decoded as JSON (``None`` for an empty body)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


class _ConnectFailed(Exception):
    """Internal: the connection could not be opened (nothing was sent)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Local(threading.local):
    conn: Optional[http.client.HTTPConnection] = None
    requests_on_conn: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)


class Transport:
    """Sends requests to one fstore server. Thread-safe: each thread keeps its
    own kept-alive connection."""

    def __init__(self, url: str, *, api_key: Optional[str] = None, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, max_backoff: float = 8.0) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"url must be http:// or https://, got {url!r}")
        if not parsed.hostname:
            raise ValueError(f"url has no host: {url!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (seconds)")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc,
                                            parsed.path.rstrip("/"), "", ""))
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._local = _Local()

    # ------------------------------------------------------------ connections
    def _new_connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self) -> None:
        """Closes this thread's kept-alive connection (reopened when needed)."""
        conn = self._local.conn
        self._local.conn = None
        self._local.requests_on_conn = 0
        if conn is not None:
            conn.close()

    def _send_once(self, method: str, target: str, body: Optional[bytes],
                   headers: Mapping[str, str]) -> Response:
        """One exchange on this thread's connection. Raises _ConnectFailed when
        the connection could not be opened, socket.timeout on a timeout, and
        OSError / http.client errors when it broke."""
        local = self._local
        if local.conn is None:
            local.conn = self._new_connection()
            local.requests_on_conn = 0
        conn = local.conn
        if conn.sock is None:
            try:
                conn.connect()
            except (socket.timeout, TimeoutError):
                self.close()
                raise
            except OSError as e:
                self.close()
                raise _ConnectFailed(e) from e
            local.requests_on_conn = 0
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        local.requests_on_conn += 1
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            self.close()
        return Response(resp.status, hdrs, data)

    def _exchange(self, method: str, target: str, body: Optional[bytes],
                  headers: Mapping[str, str]) -> Response:
        """_send_once, sending again once on a fresh connection when a reused
        kept-alive connection turns out to have been closed by the server."""
        reused = self._local.conn is not None and self._local.conn.sock is not None \
            and self._local.requests_on_conn > 0
        try:
            return self._send_once(method, target, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                ConnectionAbortedError):
            if not reused:
                raise
            logger.debug("fstore: kept-alive connection was closed by the server; reconnecting")
            return self._send_once(method, target, body, headers)

    # ---------------------------------------------------------------- request
    def target(self, path: str, params: Optional[Mapping[str, QueryValue]] = None) -> str:
        """The request target: the url's path prefix, ``path``, the query."""
        t = self.prefix + path
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "true" if v else "false"
                items.append((k, str(v)))
            if items:
                t += "?" + urllib.parse.urlencode(items, quote_via=urllib.parse.quote)
        return t

    def request(self, method: str, path: str, *,
                params: Optional[Mapping[str, QueryValue]] = None,
                json_body: Any = None, body: Optional[bytes] = None,
                content_type: Optional[str] = None, accept: str = JSON,
                idempotent: Optional[bool] = None,
                ok_statuses: Optional[Tuple[int, ...]] = None) -> Response:
        """Sends a request and returns the answer; raises the mapped
        :class:`FeatureStoreError` for an error status (after the retries).

        ``idempotent`` (default: True for GET and HEAD only; pass True for
        read-only POSTs) decides whether a connection that broke after the
        request was sent is retried (see the module's retry policy).
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        headers: Dict[str, str] = {
            "Accept": accept,
            "User-Agent": f"fstore-python/{__version__}",
        }
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        if json_body is not None:
            body = json.dumps(json_body, default=_json_default).encode("utf-8")
            content_type = JSON
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
        elif method in ("POST", "PATCH", "PUT"):
            headers["Content-Length"] = "0"
        target = self.target(path, params)

        attempt = 0
        while True:
            attempt += 1
            retry_reason: Optional[str] = None
            retry_after: Optional[float] = None
            try:
                resp = self._exchange(method, target, body, headers)
            except (socket.timeout, TimeoutError) as e:
                raise FeatureStoreTimeoutError(
                    f"{method} {path}: no answer within {self.timeout}s", code="timeout") from e
            except _ConnectFailed as e:
                retry_reason = f"cannot connect to {self.url}: {e.cause}"
                error: FeatureStoreError = FeatureStoreConnectionError(
                    f"{method} {path}: {retry_reason}", code="connection_error")
            except (OSError, http.client.HTTPException) as e:
                error = FeatureStoreConnectionError(
                    f"{method} {path}: the connection to {self.url} broke: {e!r}",
                    code="connection_error")
                if not idempotent:
                    # The server may have applied it: do not send it twice.
                    raise error from e
                retry_reason = f"connection broke: {e!r}"
            else:
                resp.attempts = attempt
                if 200 <= resp.status < 300 or (ok_statuses and resp.status in ok_statuses):
                    return resp
                error = error_from_response(resp.status, _decode_error(resp), _reason(resp))
                if resp.status != 503:
                    raise error
                retry_reason = f"503 {error.message}"
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt > self.retries:
                raise error
            delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
            delay = delay * (0.5 + random.random() / 2)  # jitter: 50-100%
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            logger.warning("fstore: %s %s failed (%s); retry %d of %d in %.2fs", method, path,
                           retry_reason, attempt, self.retries, delay)
            time.sleep(delay)


def _json_default(value: Any) -> Any:
    """JSON for the non-JSON values callers commonly pass (datetimes, numpy)."""
    import datetime as dt
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_time(value: Any) -> str:
    """An ISO 8601 UTC string for a datetime (naive: taken as UTC), a date, a
    pandas Timestamp or a string (passed through)."""
    import datetime as dt
    if isinstance(value, str):
        return value
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if callable(to_pydatetime):
        value = to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return str(value.isoformat(timespec="microseconds")) + "Z"
    if isinstance(value, dt.date):
        return value.isoformat() + "T00:00:00Z"
    raise TypeError(f"expected a datetime, a date or an ISO 8601 string, got {value!r}")


def _decode_error(resp: Response) -> Any:
    try:
        return resp.json()
    except (ValueError, UnicodeDecodeError):
        return resp.body.decode("utf-8", "replace")


def _reason(resp: Response) -> str:
    return http.client.responses.get(resp.status, "")


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
