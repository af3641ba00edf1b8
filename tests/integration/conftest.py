"""Harness for the fstore HTTP integration tests.

Starts the real binary (``FSTORE_BIN`` or <repo>/build/fstore) with
``serve --port 0 --host 127.0.0.1 --data-dir <tmp>`` and an environment
stripped of every backend setting, so the embedded defaults (SQLite registry,
RocksDB online store, local offline store) are used.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading
import time
import uuid
from typing import Iterable, Mapping, Optional

import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
FSTORE_BIN = os.environ.get("FSTORE_BIN", str(REPO / "build" / "fstore"))

# Settings the server reads from the environment; the harness removes them so
# that a developer's shell cannot change what the tests run against.
SETTING_ENV_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "STORAGE_BACKEND",
    "STORAGE_PATH",
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_REGION",
    "COMPUTE_ENGINE",
    "MAX_COMPUTE_THREADS",
    "SPARK_MASTER",
    "SERVING_CACHE_ENABLED",
    "SERVING_CACHE_TTL",
)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def clean_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    """The test process's environment without any fstore setting.

    Every FSTORE_* variable goes too (FSTORE_BIN included): the server refuses
    unknown FSTORE_* variables by design.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SETTING_ENV_VARS and not k.startswith("FSTORE_")
    }
    if extra:
        env.update(extra)
    return env


def uniq(prefix: str = "t") -> str:
    """A name unique across tests on a shared server (a valid identifier)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class FstoreServer:
    """A running ``fstore serve``; ``base_url`` is http://127.0.0.1:<port>."""

    def __init__(self, data_dir: pathlib.Path, args: Iterable[str] = (),
                 env: Optional[Mapping[str, str]] = None):
        self.data_dir = pathlib.Path(data_dir)
        self.args = list(args)
        self.cmd = [FSTORE_BIN, "serve", "--port", "0", "--host", "127.0.0.1",
                    "--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(env),
            text=True,
            bufsize=1,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.port: Optional[int] = None
        self.returncode: Optional[int] = None
        self._port_event = threading.Event()
        self._out_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._out_thread.start()
        self._err_thread.start()
        if not self._port_event.wait(START_TIMEOUT) or self.port is None:
            self.kill()
            raise RuntimeError(
                f"fstore did not report its port: cmd={self.cmd}\n"
                f"stdout={''.join(self.stdout_lines)}\nstderr={''.join(self.stderr_lines)}")
        self.base_url = f"http://127.0.0.1:{self.port}"

    # Both pipes are drained for the server's whole life so that logging never
    # blocks on a full pipe.
    def _read_stdout(self) -> None:
        prefix = "fstore listening on port "
        for line in self.proc.stdout:
            self.stdout_lines.append(line)
            if self.port is None and line.startswith(prefix):
                self.port = int(line[len(prefix):].strip())
                self._port_event.set()
        self._port_event.set()  # EOF: the process ended before listening

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, and return the exit code (killing after timeout)."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"fstore did not exit within {timeout}s of SIGTERM")
        self._out_thread.join(5)
        self._err_thread.join(5)
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.returncode = self.proc.returncode

    def output(self) -> str:
        return "".join(self.stdout_lines) + "".join(self.stderr_lines)


def _stop_and_check(server: FstoreServer) -> None:
    code = server.stop()
    assert code == 0, f"fstore exited with {code} on SIGTERM:\n{server.output()[-4000:]}"


@pytest.fixture(scope="session")
def fstore_bin() -> str:
    if not os.access(FSTORE_BIN, os.X_OK):
        pytest.fail(f"fstore binary not found or not executable: {FSTORE_BIN}")
    return FSTORE_BIN


@pytest.fixture(scope="module")
def server(fstore_bin, tmp_path_factory):
    """One server shared by a test module: use unique names (``uniq``)."""
    srv = FstoreServer(tmp_path_factory.mktemp("fstore-data"))
    yield srv
    _stop_and_check(srv)


@pytest.fixture
def fresh_server(fstore_bin, tmp_path):
    """A server of its own, on an empty data dir, for tests that count things."""
    srv = FstoreServer(tmp_path / "data")
    yield srv
    _stop_and_check(srv)


@pytest.fixture
def start_server(fstore_bin, tmp_path):
    """Factory: start_server(*flags, env={...}, data_dir=...) -> FstoreServer.

    Every server it started is stopped at teardown and must exit 0.
    """
    started: list[FstoreServer] = []

    def start(*flags: str, env: Optional[Mapping[str, str]] = None,
              data_dir: Optional[pathlib.Path] = None) -> FstoreServer:
        d = data_dir if data_dir is not None else tmp_path / f"data-{len(started)}"
        srv = FstoreServer(d, flags, env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.returncode is None:
            _stop_and_check(srv)


@pytest.fixture
def api(server):
    return Api(server)


@pytest.fixture
def fresh_api(fresh_server):
    return Api(fresh_server)


class Api:
    """Thin helpers over requests for the JSON API."""

    def __init__(self, server: FstoreServer):
        self.server = server
        self.base = server.base_url
        self.session = requests.Session()

    def get(self, path, **kw):
        return self.session.get(self.base + path, timeout=30, **kw)

    def post(self, path, body=None, **kw):
        if body is not None:
            kw["json"] = body
        return self.session.post(self.base + path, timeout=30, **kw)

    def patch(self, path, body=None, **kw):
        if body is not None:
            kw["json"] = body
        return self.session.patch(self.base + path, timeout=30, **kw)

    def delete(self, path, **kw):
        return self.session.delete(self.base + path, timeout=30, **kw)

    def raw(self, method, path, data=None, headers=None):
        return self.session.request(method, self.base + path, data=data, headers=headers,
                                    timeout=30)

    # --- creation helpers: assert 201 and return the body -----------------
    def create_entity(self, **fields):
        body = {"name": uniq("ent")}
        body.update(fields)
        r = self.post("/api/v1/entities", body)
        assert r.status_code == 201, r.text
        return r.json()

    def create_feature_set(self, **fields):
        body = {"name": uniq("fs"), "entities": ["user"], "owner": "tests"}
        body.update(fields)
        r = self.post("/api/v1/feature-sets", body)
        assert r.status_code == 201, r.text
        return r.json()

    def create_feature(self, feature_set_id, **fields):
        body = {"name": uniq("f"), "feature_set_id": feature_set_id, "data_type": "int"}
        body.update(fields)
        r = self.post("/api/v1/features", body)
        assert r.status_code == 201, r.text
        return r.json()


def assert_error(response, status: int, code: str, field: Optional[str] = None):
    """Asserts the JSON error shape {"error": {"code", "message", "field"?}}."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text}")
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        response.headers
    try:
        body = response.json()
    except json.JSONDecodeError:  # pragma: no cover - reported by the assert
        raise AssertionError(f"error body is not JSON: {response.text!r}")
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err.get("code") == code, body
    assert isinstance(err.get("message"), str) and err["message"], body
    if field is not None:
        assert err.get("field") == field, body
    return err


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
