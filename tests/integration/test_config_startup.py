"""Configuration and start-up: help text, refused settings, backends that are
not built yet, migrate, persistence across restarts, graceful SIGTERM."""

import json
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from conftest import FSTORE_BIN, FstoreServer, assert_error, clean_env, uniq

ENV_VARS = ["DATABASE_URL", "REDIS_URL", "STORAGE_BACKEND", "STORAGE_PATH", "S3_ENDPOINT",
            "S3_BUCKET", "S3_ACCESS_KEY", "S3_SECRET_KEY", "COMPUTE_ENGINE",
            "MAX_COMPUTE_THREADS", "SPARK_MASTER", "SERVING_CACHE_ENABLED", "SERVING_CACHE_TTL"]

# Defaults the product description implies.
EXPECTED_DEFAULTS = {"STORAGE_BACKEND": "local", "SERVING_CACHE_TTL": "300"}


def run(args, env=None, timeout=30):
    return subprocess.run([FSTORE_BIN, *args], env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout)


def serve(tmp_path, env=None, *flags):
    """Runs `fstore serve` expecting it to exit by itself."""
    return run(["serve", "--port", "0", "--host", "127.0.0.1", "--data-dir",
                str(tmp_path / "data"), *flags], env=env)


def test_serve_help_lists_every_env_var_with_its_default(fstore_bin):
    r = run(["serve", "--help"])
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\s+", " ", r.stdout)
    for var in ENV_VARS:
        m = re.search(r"\[env " + re.escape(var) + r", default: ([^\]]*)\]", text)
        assert m, f"{var} (with its default) missing from serve --help"
        if var in EXPECTED_DEFAULTS:
            assert m.group(1).strip() == EXPECTED_DEFAULTS[var], (var, m.group(1))
    assert "8002" in text  # the documented port


def test_version(fstore_bin):
    r = run(["version"])
    assert r.returncode == 0 and r.stdout.startswith("fstore ")


@pytest.mark.parametrize("env, name", [
    ({"SERVING_CACHE_TTL": "abc"}, "SERVING_CACHE_TTL"),
    ({"SERVING_CACHE_TTL": "0"}, "SERVING_CACHE_TTL"),
    ({"SERVING_CACHE_ENABLED": "maybe"}, "SERVING_CACHE_ENABLED"),
    ({"MAX_COMPUTE_THREADS": "-1"}, "MAX_COMPUTE_THREADS"),
    ({"STORAGE_BACKEND": "gcs"}, "STORAGE_BACKEND"),
    ({"COMPUTE_ENGINE": "flink"}, "COMPUTE_ENGINE"),
    ({"DATABASE_URL": "mysql://u:secretpw@h/db"}, "DATABASE_URL"),
    ({"STORAGE_BACKEND": "s3"}, "S3_BUCKET"),
    ({"COMPUTE_ENGINE": "spark"}, "SPARK_MASTER"),
    ({"FSTORE_BOGUS": "1"}, "FSTORE_BOGUS"),
    ({"FSTORE_PROT": "9000"}, "FSTORE_PORT"),  # suggested spelling
])
def test_bad_setting_refused_by_name(fstore_bin, tmp_path, env, name):
    r = serve(tmp_path, env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert name in r.stderr, r.stderr
    assert "fstore listening" not in r.stdout
    assert "secretpw" not in r.stderr + r.stdout  # URLs may hold passwords


def test_bad_flag_value_refused(fstore_bin, tmp_path):
    r = serve(tmp_path, None, "--serving-cache-ttl", "soon")
    assert r.returncode == 2 and "serving-cache-ttl" in r.stderr, r.stderr


def test_unknown_flag_refused(fstore_bin, tmp_path):
    r = serve(tmp_path, None, "--bogus-flag", "1")
    assert r.returncode != 0
    assert "bogus-flag" in (r.stderr + r.stdout)
    assert "fstore listening" not in r.stdout


def test_backend_not_built_exits_2(fstore_bin, tmp_path):
    r = serve(tmp_path, {"COMPUTE_ENGINE": "spark", "SPARK_MASTER": "spark://master:7077"})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "not built yet" in r.stderr, r.stderr
    assert "COMPUTE_ENGINE" in r.stderr, r.stderr
    assert "fstore listening" not in r.stdout


def test_unreachable_registry_database_stops_start_up_without_leaking_the_password(
        fstore_bin, tmp_path):
    # Nothing listens on port 1: the registry cannot migrate, so there is no
    # server to run; the message names PostgreSQL and hides the password.
    r = serve(tmp_path, {"DATABASE_URL": "postgresql://user:hunter2@127.0.0.1:1/feature_store"})
    assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    assert "fstore listening" not in r.stdout
    assert "postgres" in r.stderr.lower(), r.stderr
    assert "hunter2" not in r.stderr + r.stdout


def test_unreachable_redis_starts_but_is_not_ready(fstore_bin, start_server):
    # Redis may come up after the server (it reconnects by itself): the
    # server starts, /health answers, /ready says Redis is down.
    srv = start_server(env={"REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert requests.get(srv.url("/health"), timeout=10).status_code == 200
    r = requests.get(srv.url("/ready"), timeout=10)
    assert r.status_code == 503, r.text
    assert "redis" in r.text.lower() and "hunter2" not in r.text, r.text


def test_empty_env_var_keeps_default(fstore_bin, start_server):
    srv = start_server(env={"REDIS_URL": "", "SERVING_CACHE_TTL": "", "STORAGE_BACKEND": ""})
    assert requests.get(srv.url("/ready"), timeout=10).status_code == 200


def test_migrate_creates_registry(fstore_bin, tmp_path):
    d = tmp_path / "fresh" / "dir"
    r = run(["migrate", "--data-dir", str(d)])
    assert r.returncode == 0, r.stderr
    db = d / "registry.db"
    assert db.is_file()
    m = re.search(r"schema version (\d+)", r.stdout)
    assert m, r.stdout
    version = int(m.group(1))
    assert version >= 1
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables, "the registry database has no tables"
    # idempotent: a second run reports the same version
    r2 = run(["migrate", "--data-dir", str(d)])
    assert r2.returncode == 0 and f"schema version {version}" in r2.stdout


def test_migrated_dir_serves(fstore_bin, tmp_path, start_server):
    d = tmp_path / "migrated"
    assert run(["migrate", "--data-dir", str(d)]).returncode == 0
    srv = start_server(data_dir=d)
    assert requests.get(srv.url("/api/v1/feature-sets"), timeout=10).json()["count"] == 0


def test_data_persists_across_restart(fstore_bin, tmp_path, start_server):
    d = tmp_path / "persist"
    srv = start_server(data_dir=d)
    s = requests.Session()
    fs = s.post(srv.url("/api/v1/feature-sets"),
                json={"name": "persisted", "entities": ["user"], "tags": ["keep"]},
                timeout=10).json()
    f = s.post(srv.url("/api/v1/features"),
               json={"name": "f1", "feature_set_id": fs["id"], "data_type": "float"},
               timeout=10).json()
    assert s.patch(srv.url(f"/api/v1/feature-sets/{fs['id']}"), json={"description": "v2"},
                   timeout=10).status_code == 200
    gone = s.post(srv.url("/api/v1/feature-sets"), json={"name": "gone", "entities": ["user"]},
                  timeout=10).json()
    assert s.delete(srv.url(f"/api/v1/feature-sets/{gone['id']}"), timeout=10).status_code == 200
    s.close()
    assert srv.stop() == 0

    srv2 = start_server(data_dir=d)
    got = requests.get(srv2.url("/api/v1/feature-sets/persisted"), timeout=10).json()
    assert got["id"] == fs["id"] and got["version"] == 2 and got["description"] == "v2"
    assert [x["id"] for x in got["features"]] == [f["id"]]
    assert requests.get(srv2.url(f"/api/v1/features/{f['id']}"), timeout=10).json() == f
    vs = requests.get(srv2.url(f"/api/v1/feature-sets/{fs['id']}/versions"), timeout=10).json()
    assert vs["count"] == 2
    assert requests.get(srv2.url("/api/v1/feature-sets/gone"), timeout=10).status_code == 404
    ents = requests.get(srv2.url("/api/v1/entities"), timeout=10).json()["entities"]
    assert [e["name"] for e in ents] == ["user"]


def test_sigterm_lets_in_flight_request_finish(fstore_bin, tmp_path, start_server):
    d = tmp_path / "sigterm"
    srv = start_server(data_dir=d)
    name = uniq("inflight")
    body = json.dumps({"name": name, "entities": ["user"]}).encode()
    head = (f"POST /api/v1/feature-sets HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
    try:
        # the request is in flight: head and half the body sent
        sock.sendall(head + body[:10])
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert srv.proc.poll() is None, "the server exited with a request in flight"
        # while it drains, it takes no new connections
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        sock.sendall(body[10:])
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 201 "), data[:300]
    assert b"connection: close" in data.lower()
    assert srv.stop() == 0
    # the in-flight write landed
    srv2 = start_server(data_dir=d)
    assert requests.get(srv2.url(f"/api/v1/feature-sets/{name}"), timeout=10).status_code == 200


def test_sigterm_during_a_stream_of_requests(fstore_bin, tmp_path, start_server):
    """Requests sent one after another while SIGTERM arrives: every request
    either gets a complete answer or fails to connect; exit code 0; every
    answered creation is stored."""
    d = tmp_path / "stream"
    srv = start_server(data_dir=d)
    created, failures, stop = [], [], threading.Event()

    def client():
        s = requests.Session()
        i = 0
        while not stop.is_set():
            name = f"s_{i}"
            try:
                r = s.post(srv.url("/api/v1/feature-sets"),
                           json={"name": name, "entities": ["user"]}, timeout=10)
            except requests.ConnectionError:
                if srv.proc.poll() is not None:
                    break
                time.sleep(0.01)
                continue
            if r.status_code == 201:
                created.append(name)
            else:
                failures.append((r.status_code, r.text))
            i += 1

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 10
    while len(created) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.stop()
    stop.set()
    t.join(20)
    assert code == 0, srv.output()[-3000:]
    assert not failures, failures[:3]
    assert len(created) >= 20

    srv2 = start_server(data_dir=d)
    listed = requests.get(srv2.url("/api/v1/feature-sets"), timeout=10).json()
    stored = {x["name"] for x in listed["feature_sets"]}
    assert set(created) <= stored


def test_sigterm_idle_server_exits_quickly(fstore_bin, tmp_path):
    srv = FstoreServer(tmp_path / "idle")
    # an idle keep-alive connection must not hold the shutdown up
    s = requests.Session()
    assert s.get(srv.url("/health"), timeout=10).status_code == 200
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 5
    s.close()
