"""The SDK's transport under faults: 503s retried with backoff then raised
(a real server whose Redis online store is a closed port), timeouts, refused
and broken connections, kept-alive connections closed by the server, and the
statuses the server does not answer yet (401, 403) -- those from a
fault-injecting HTTP stub in the test."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List

import pytest

import fstore
from fstore import FeatureStore

from conftest import uniq, wait_until


def free_closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stub:
    """A local HTTP/1.1 server answering every request with ``behaviour``:
    called with the handler, it writes an answer, hangs or drops the
    connection. Records (method, path, headers) of each request."""

    def __init__(self, behaviour: Callable[["Stub", BaseHTTPRequestHandler], None]):
        self.behaviour = behaviour
        self.requests: List[tuple] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.requests.append((self.command, self.path, dict(self.headers)))
                stub.behaviour(stub, self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(status: int, body: bytes, close: bool = False, content_type="application/json"):
    def behaviour(stub: Stub, h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        if close:  # close without "Connection: close": a kept-alive socket dies
            h.close_connection = True
    return behaviour


def hang(stub: Stub, h: BaseHTTPRequestHandler) -> None:
    stub.release.wait(30)
    h.close_connection = True


def drop(stub: Stub, h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True  # no answer at all


@pytest.fixture
def stub_factory():
    stubs = []

    def make(behaviour):
        s = Stub(behaviour)
        stubs.append(s)
        return s

    yield make
    for s in stubs:
        s.close()


# --------------------------------------------------------------------- 503
def test_503_is_retried_then_raised_as_unavailable(start_server):
    """A real server with an unreachable Redis answers online lookups 503:
    the SDK sends the request 1 + retries times (the server's request log
    shows each), then raises UnavailableError with the server's message."""
    srv = start_server("--log-level", "debug", env={"REDIS_URL": f"redis://127.0.0.1:{free_closed_port()}/0"})
    fs = FeatureStore(srv.base_url, retries=2, backoff=0.01)
    name = uniq("fs")
    fs.create_feature_set(name=name, entities=["user"])
    fs.create_feature(name="x", feature_set_id=name, data_type="int")
    with pytest.raises(fstore.UnavailableError) as e:
        fs.get_online_features([f"{name}:x"], {"user": ["u1"]})
    assert (e.value.status, e.value.code) == (503, "unavailable")
    assert "redis" in e.value.message.lower()
    fs.close()

    def logged():
        return [ln for ln in srv.output().splitlines() if "POST /api/v1/serving/online 503" in ln]

    # The server logs a request after answering it: wait for the log to catch up.
    wait_until(lambda: len(logged()) >= 3)
    assert len(logged()) == 3, srv.output()[-3000:]
    assert fs.is_ready() is False
    with pytest.raises(fstore.UnavailableError):
        fs.ready()
    assert fs.health() == {"status": "ok"}


def test_503_then_success_returns_the_answer(stub_factory):
    def flaky(stub, h):
        if len(stub.requests) <= 2:
            answer(503, b'{"error": {"code": "unavailable", "message": "warming up"}}')(stub, h)
        else:
            answer(200, b'{"status": "ok"}')(stub, h)

    stub = stub_factory(flaky)
    fs = FeatureStore(stub.url, retries=3, backoff=0.01)
    assert fs.health() == {"status": "ok"}
    assert len(stub.requests) == 3


def test_503_retries_a_create_too(stub_factory):
    """A 503 means the server applied nothing: creates are retried as well."""
    stub = stub_factory(answer(503, b'{"error": {"code": "unavailable", "message": "db down"}}'))
    fs = FeatureStore(stub.url, retries=2, backoff=0.01)
    with pytest.raises(fstore.UnavailableError):
        fs.create_entity("user")
    assert [r[0] for r in stub.requests] == ["POST"] * 3


def test_retries_zero_sends_once(stub_factory):
    stub = stub_factory(answer(503, b'{"error": {"code": "unavailable", "message": "x"}}'))
    with pytest.raises(fstore.UnavailableError):
        FeatureStore(stub.url, retries=0).health()
    assert len(stub.requests) == 1


# ------------------------------------------------------------- connections
def test_connection_refused_is_retried_then_raised(caplog):
    fs = FeatureStore(f"http://127.0.0.1:{free_closed_port()}", retries=2, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="fstore"):
        with pytest.raises(fstore.FeatureStoreConnectionError) as e:
            fs.create_entity("user")  # nothing was sent: safe to retry even a create
    assert isinstance(e.value, ConnectionError) and e.value.status is None
    assert e.value.code == "connection_error"
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2


def test_broken_connection_retries_reads_only(stub_factory):
    stub = stub_factory(drop)
    fs = FeatureStore(stub.url, retries=2, backoff=0.01)
    with pytest.raises(fstore.FeatureStoreConnectionError):
        fs.list_entities()
    assert len(stub.requests) == 3  # a GET: retried
    stub.requests.clear()
    with pytest.raises(fstore.FeatureStoreConnectionError):
        fs.create_entity("user")
    assert len(stub.requests) == 1  # a create may have been applied: never sent twice


def test_keep_alive_connection_closed_by_the_server_is_reopened(stub_factory):
    stub = stub_factory(answer(201, b'{"name": "user"}', close=True))
    fs = FeatureStore(stub.url, retries=0)
    for _ in range(3):  # each closes the socket the client keeps: reopened, not an error
        assert fs.create_entity("user") == {"name": "user"}
    assert len(stub.requests) == 3


def test_keep_alive_reuses_one_connection(server):
    fs = FeatureStore(server.base_url)
    fs.health()
    sock = fs._http._local.conn.sock
    for _ in range(5):
        fs.health()
    assert fs._http._local.conn.sock is sock
    fs.close()


# ----------------------------------------------------------------- timeouts
def test_timeout_raises_and_is_not_retried(stub_factory):
    stub = stub_factory(hang)
    fs = FeatureStore(stub.url, timeout=0.3, retries=3)
    with pytest.raises(fstore.FeatureStoreTimeoutError) as e:
        fs.list_entities()
    assert isinstance(e.value, TimeoutError) and e.value.code == "timeout"
    assert len(stub.requests) == 1


def test_wait_timeout_on_a_job(stub_factory):
    body = b'{"id": "j1", "status": "running", "feature_set": "fs"}'
    stub = stub_factory(answer(200, body))
    fs = FeatureStore(stub.url)
    with pytest.raises(fstore.FeatureStoreTimeoutError) as e:
        fs.wait_for_materialization("j1", progress=False, timeout=0.2, poll_interval=0.05)
    assert e.value.body["status"] == "running"


# ------------------------------------------------- statuses and the API key
@pytest.mark.parametrize("status,code,cls", [
    (401, "unauthenticated", fstore.AuthenticationError),
    (403, "permission_denied", fstore.PermissionDeniedError),
    (500, "internal", fstore.InternalServerError),
])
def test_statuses_the_server_does_not_answer_yet(stub_factory, status, code, cls):
    body = ('{"error": {"code": "%s", "message": "no access to feature set", '
            '"field": "feature_sets[0]"}}' % code).encode()
    stub = stub_factory(answer(status, body))
    with pytest.raises(cls) as e:
        FeatureStore(stub.url).get_feature_set("x")
    assert (e.value.status, e.value.code, e.value.field) == (status, code, "feature_sets[0]")
    assert e.value.message == "no access to feature set"


def test_an_error_body_that_is_not_the_server_shape(stub_factory):
    stub = stub_factory(answer(502, b"<html>bad gateway</html>", content_type="text/html"))
    with pytest.raises(fstore.FeatureStoreError) as e:
        FeatureStore(stub.url).health()
    assert e.value.status == 502 and "bad gateway" in e.value.message and e.value.code is None


def test_api_key_is_sent_as_x_api_key(stub_factory):
    stub = stub_factory(answer(200, b'{"status": "ok"}'))
    FeatureStore(stub.url, api_key="s3cret").health()
    FeatureStore(stub.url).health()
    assert stub.requests[0][2].get("X-API-Key") == "s3cret"
    assert "X-API-Key" not in stub.requests[1][2]


def test_url_path_prefix_is_kept(stub_factory):
    stub = stub_factory(answer(200, b'{"entities": [], "count": 0}'))
    assert FeatureStore(stub.url + "/fstore/").list_entities() == []
    assert stub.requests[0][1] == "/fstore/api/v1/entities"
