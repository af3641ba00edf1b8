"""Operational endpoints: health, readiness, OpenAPI, docs, keep-alive."""

import http.client
import json

import pytest
import requests

# Every route AddApiRoutes registers (src/fstore/server/api_routes.cc).
API_ROUTES = [
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("POST", "/api/v1/entities"),
    ("GET", "/api/v1/entities"),
    ("GET", "/api/v1/entities/{id}"),
    ("POST", "/api/v1/feature-sets"),
    ("GET", "/api/v1/feature-sets"),
    ("GET", "/api/v1/feature-sets/{id}"),
    ("PATCH", "/api/v1/feature-sets/{id}"),
    ("DELETE", "/api/v1/feature-sets/{id}"),
    ("GET", "/api/v1/feature-sets/{id}/versions"),
    ("POST", "/api/v1/feature-sets/{id}/materialize"),
    ("GET", "/api/v1/feature-sets/{id}/materialization-jobs"),
    ("GET", "/api/v1/materialization-jobs/{id}"),
    ("POST", "/api/v1/materialization-jobs/{id}/retry"),
    ("POST", "/api/v1/features"),
    ("GET", "/api/v1/features"),
    ("GET", "/api/v1/features/{id}"),
    ("PATCH", "/api/v1/features/{id}"),
    ("DELETE", "/api/v1/features/{id}"),
    ("GET", "/api/v1/features/{id}/versions"),
    ("GET", "/api/v1/features/{id}/lineage"),
    ("GET", "/api/v1/search"),
    ("POST", "/api/v1/serving/online"),
    ("POST", "/api/v1/serving/historical"),
    ("POST", "/api/v1/serving/batch"),
    ("GET", "/api/v1/serving/batch/{id}"),
    ("GET", "/api/v1/serving/batch"),
    ("POST", "/api/v1/serving/batch/{id}/cancel"),
    ("GET", "/monitoring/metrics"),
    ("GET", "/monitoring/statistics"),
    ("GET", "/monitoring/data-freshness"),
    ("GET", "/monitoring/usage"),
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("GET", "/api/v1/audit"),
]


def test_health(api):
    r = api.get("/health")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}


def test_ready(api):
    r = api.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_root_points_to_docs(api):
    r = api.get("/")
    assert r.status_code == 200
    assert r.json()["docs"] == "/docs" and r.json()["openapi"] == "/openapi.json"


def test_every_route_is_routed(api):
    """Each route answers with something other than 404-no-route / 405."""
    for method, path in API_ROUTES:
        concrete = path.replace("{id}", "no_such_thing")
        kw = {"data": b"{}", "headers": {"Content-Type": "application/json"}} \
            if method in ("POST", "PATCH") else {}
        r = api.raw(method, concrete, **kw)
        assert r.status_code != 405, (method, path, r.text)
        if r.status_code == 404:
            assert "no route" not in r.json()["error"]["message"], (method, path, r.text)


def openapi_operations(doc):
    ops = set()
    for path, item in doc.get("paths", {}).items():
        for method in item:
            if method.lower() in ("get", "post", "put", "patch", "delete", "head", "options"):
                ops.add((method.upper(), path))
    return ops


def test_openapi_is_json(api):
    r = api.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    doc = json.loads(r.text)
    assert doc["openapi"].startswith("3.")
    assert "paths" in doc


def test_openapi_lists_every_route(api):
    doc = api.get("/openapi.json").json()
    ops = openapi_operations(doc)
    # OpenAPI path templates may name the parameter differently ({id}, {ref}...)
    def norm(path):
        return "/".join("{}" if s.startswith("{") else s for s in path.split("/"))
    documented = {(m, norm(p)) for m, p in ops}
    missing = [(m, p) for m, p in API_ROUTES if (m, norm(p)) not in documented]
    assert missing == [], f"routes missing from openapi.json: {missing}"
    extra = documented - {(m, norm(p)) for m, p in API_ROUTES}
    assert extra == set(), f"openapi.json documents routes the server lacks: {extra}"


def test_docs_is_html(api):
    r = api.get("/docs")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    text = r.text.lower()
    assert text.lstrip().startswith(("<!doctype html", "<html")), r.text[:200]


def test_keep_alive_with_session(api):
    with requests.Session() as s:
        r1 = s.get(api.base + "/health", timeout=10)
        r2 = s.get(api.base + "/api/v1/entities", timeout=10)
    assert r1.status_code == 200 and r2.status_code == 200
    assert r1.headers.get("Connection", "").lower() != "close"


def test_keep_alive_reuses_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/health")
        r1 = conn.getresponse()
        assert r1.status == 200 and json.loads(r1.read()) == {"status": "ok"}
        sock = conn.sock
        assert sock is not None, "the server closed a keep-alive connection"
        body = json.dumps({"name": "x-bad"})
        conn.request("POST", "/api/v1/entities", body=body,
                     headers={"Content-Type": "application/json"})
        r2 = conn.getresponse()
        assert r2.status == 400
        r2.read()
        conn.request("GET", "/ready")
        r3 = conn.getresponse()
        assert r3.status == 200 and json.loads(r3.read())["status"] == "ready"
        assert conn.sock is sock, "a new connection was opened"
    finally:
        conn.close()


def test_pipelined_requests_answered_in_order(server):
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n" \
              b"Connection: close\r\n\r\n"
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    first = data.find(b"HTTP/1.1 200")
    second = data.find(b"HTTP/1.1 404")
    assert 0 == first < second, data
