"""Security: API keys (CLI and /api/v1/keys), authentication by Bearer or
X-API-Key, roles, feature-set limited keys through every way of reading a
feature set (online, historical JSON and Arrow IPC, batch, definitions,
materialization, derived inputs), filtered lists, and the SDK with a key.
Every test runs a real server and the real `fstore keys` CLI on its data dir."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import requests

import fstore
from fstore import FeatureStore

from conftest import FSTORE_BIN, FstoreServer, assert_error, clean_env, uniq, wait_until

UTC = dt.timezone.utc
ONLINE = "/api/v1/serving/online"
HIST = "/api/v1/serving/historical"
BATCH = "/api/v1/serving/batch"


def cli(data_dir, *args, env=None):
    """Runs `fstore keys ...` on the server's data dir."""
    return subprocess.run([FSTORE_BIN, "keys", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=clean_env(env), timeout=60)


def cli_key(data_dir, role, feature_sets=None, name=None):
    args = ["create", "--role", role]
    if feature_sets:
        args += ["--feature-sets", ",".join(feature_sets)]
    if name:
        args += ["--name", name]
    r = cli(data_dir, *args)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip().splitlines()[-1]  # the last line is the key
    assert secret.startswith("fsk_") and len(secret) == 64, r.stdout
    return secret


def key_id(secret):
    return "key_" + secret[4:20]


class Client:
    """Requests with one key (or none)."""

    def __init__(self, server, secret=None, header="bearer"):
        self.base = server.base_url
        self.headers = {}
        if secret is not None:
            self.headers = ({"Authorization": f"Bearer {secret}"} if header == "bearer"
                            else {"X-API-Key": secret})

    def call(self, method, path, body=None, headers=None, **kw):
        h = dict(self.headers)
        h.update(headers or {})
        if body is not None:
            kw["json"] = body
        return requests.request(method, self.base + path, headers=h, timeout=60, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)


def ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def world(fstore_bin, tmp_path_factory):
    """Two feature sets A and B on one source, materialized while no key
    exists; then keys of every kind from the CLI."""
    d = tmp_path_factory.mktemp("security")
    srv = FstoreServer(d / "data")
    anon = Client(srv)
    src = d / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array(["u1", "u2", "u1"]),
        "event_timestamp": pa.array([ts("2024-01-02T00:00:00Z"), ts("2024-01-03T00:00:00Z"),
                                     ts("2024-01-04T00:00:00Z")], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([11.5, 22.25, 33.75]),
    }), src)
    source = {"type": "file", "path": str(src), "format": "parquet"}
    a, b = uniq("sec_a"), uniq("sec_b")
    for name in (a, b):
        r = anon.post("/api/v1/feature-sets", {"name": name, "entities": ["user"],
                                               "source": source})
        assert r.status_code == 201, r.text
        r = anon.post("/api/v1/features", {"name": "amount", "feature_set_id": name,
                                           "data_type": "float"})
        assert r.status_code == 201, r.text
    # A derived feature of A whose input lives in B.
    r = anon.post("/api/v1/features", {"name": "b_twice", "feature_set_id": a,
                                       "data_type": "float", "transformation": "amount * 2",
                                       "source_features": [f"{b}:amount"]})
    assert r.status_code == 201, r.text
    for name in (a, b):
        r = anon.post(f"/api/v1/feature-sets/{name}/materialize",
                      {"start_date": "2024-01-01", "end_date": "2024-02-01", "wait": True})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    keys = {
        "admin": cli_key(srv.data_dir, "admin", name="ops"),
        "writer": cli_key(srv.data_dir, "writer"),
        "reader": cli_key(srv.data_dir, "reader"),
        "reader_a": cli_key(srv.data_dir, "reader", [a]),
        "writer_a": cli_key(srv.data_dir, "writer", [a]),
    }
    # The server picks the CLI's keys up within a second, but on a timer of
    # its own (ApiKeyStore reloads every 250 ms): a reload that lands between
    # two of the CLI calls above already turns authentication on, so an
    # anonymous 401 does not mean the keys created after it are loaded. Wait
    # until every key authenticates (the server's snapshots only grow here).
    assert wait_until(lambda: anon.get("/api/v1/entities").status_code == 401, timeout=3)
    for who, secret in keys.items():
        c = Client(srv, secret)
        assert wait_until(lambda: c.get("/api/v1/entities").status_code == 200, timeout=3), who
    yield {"server": srv, "a": a, "b": b, "src": src, "keys": keys, "dir": d}
    srv.stop()


def as_(world, who, header="bearer"):
    return Client(world["server"], world["keys"][who], header)


def entity_df():
    return {"columns": ["user_id", "event_timestamp"],
            "data": [["u1", "2024-01-05T00:00:00Z"], ["u2", "2024-01-05T00:00:00Z"]]}


# ------------------------------------------------------------ authentication

def test_no_key_is_401_with_challenge_and_health_stays_open(world):
    anon = Client(world["server"])
    r = anon.get("/api/v1/feature-sets")
    assert_error(r, 401, "unauthenticated", "Authorization")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    for path in ("/health", "/ready", "/openapi.json", "/docs", "/"):
        assert anon.get(path).status_code == 200, path
    assert_error(anon.post(ONLINE, {"feature_sets": [world["a"]],
                                    "entities": {"user": ["u1"]}}), 401, "unauthenticated")


def test_bearer_and_x_api_key_both_work(world):
    for header in ("bearer", "x-api-key"):
        r = as_(world, "reader", header).get("/api/v1/entities")
        assert r.status_code == 200, (header, r.text)


def test_bad_keys_are_401(world):
    srv = world["server"]
    good = world["keys"]["reader"]
    for secret in ("nonsense", good[:-1] + ("A" if good[-1] != "A" else "B"),
                   "fsk_0000000000000000_" + good[21:]):
        r = Client(srv, secret).get("/api/v1/entities")
        err = assert_error(r, 401, "unauthenticated", "Authorization")
        assert err["message"] == "invalid API key"
        assert secret not in r.text
    r = requests.get(srv.base_url + "/api/v1/entities", timeout=10,
                     headers={"Authorization": f"Basic {good}"})
    err = assert_error(r, 401, "unauthenticated", "Authorization")
    assert "Bearer" in err["message"] and good not in r.text
    r = requests.get(srv.base_url + "/api/v1/entities", timeout=10,
                     headers={"Authorization": "Bearer "})
    assert_error(r, 401, "unauthenticated", "Authorization")


def test_cli_revocation_takes_effect_within_a_second(world):
    srv = world["server"]
    secret = cli_key(srv.data_dir, "reader", name="short-lived")
    c = Client(srv, secret)
    assert wait_until(lambda: c.get("/api/v1/entities").status_code == 200, timeout=3)
    r = cli(srv.data_dir, "revoke", key_id(secret))
    assert r.returncode == 0, r.stderr
    assert key_id(secret) in r.stdout
    assert wait_until(lambda: c.get("/api/v1/entities").status_code == 401, timeout=3)
    err = assert_error(c.get("/api/v1/entities"), 401, "unauthenticated")
    assert "revoked" in err["message"]
    # Revoking again, or an unknown id: exit 2 with a message.
    again = cli(srv.data_dir, "revoke", key_id(secret))
    assert again.returncode == 2 and "already revoked" in again.stderr
    unknown = cli(srv.data_dir, "revoke", "key_ffffffffffffffff")
    assert unknown.returncode == 2 and "key_ffffffffffffffff" in unknown.stderr


def test_cli_bad_role_exit_2(world):
    r = cli(world["server"].data_dir, "create", "--role", "root")
    assert r.returncode == 2
    assert "role" in r.stderr and "root" in r.stderr


@pytest.mark.parametrize("sets", ["", " , ", "a,,b", "a,a"])
def test_cli_bad_feature_sets_exit_2(world, sets):
    """A limit that names nothing is refused, never taken as "every set"."""
    r = cli(world["server"].data_dir, "create", "--role", "reader", "--feature-sets", sets)
    assert r.returncode == 2, r.stdout
    assert "--feature-sets" in r.stderr
    assert "fsk_" not in r.stdout


def test_cli_list_shows_keys_without_secrets(world):
    r = cli(world["server"].data_dir, "list")
    assert r.returncode == 0, r.stderr
    for name, secret in world["keys"].items():
        assert key_id(secret) in r.stdout, name
        assert secret not in r.stdout and secret[21:] not in r.stdout
    line = next(l for l in r.stdout.splitlines() if key_id(world["keys"]["reader_a"]) in l)
    assert "reader" in line and world["a"] in line
    assert "ops" in r.stdout  # the admin key's name


def test_required_mode_without_keys(start_server):
    srv = start_server(env={"FSTORE_AUTH": "required"})
    anon = Client(srv)
    for path in ("/health", "/ready"):
        assert anon.get(path).status_code == 200
    assert_error(anon.get("/api/v1/entities"), 401, "unauthenticated")
    # The first key must come from the CLI.
    assert_error(anon.post("/api/v1/keys", {"role": "admin"}), 401, "unauthenticated")
    secret = cli_key(srv.data_dir, "admin")
    assert wait_until(lambda: Client(srv, secret).get("/api/v1/keys").status_code == 200,
                      timeout=3)


def test_auto_mode_first_key_from_the_api(start_server):
    srv = start_server()
    anon = Client(srv)
    assert anon.get("/api/v1/entities").status_code == 200  # no key yet: open
    r = anon.post("/api/v1/keys", {"role": "admin", "name": "bootstrap"})
    assert r.status_code == 201, r.text
    secret = r.json()["key"]
    assert_error(anon.get("/api/v1/entities"), 401, "unauthenticated")
    assert Client(srv, secret).get("/api/v1/entities").status_code == 200


# --------------------------------------------------------------------- roles

def test_reader_serves_but_cannot_define_or_materialize(world):
    reader = as_(world, "reader")
    r = reader.post(ONLINE, {"feature_sets": [world["a"]], "entities": {"user": ["u1"]},
                             "features": ["amount"]})
    assert r.status_code == 200, r.text
    assert r.json()["features"]["u1"]["amount"] == 33.75
    assert reader.get(f"/api/v1/feature-sets/{world['a']}").status_code == 200
    err = assert_error(reader.post("/api/v1/feature-sets", {"name": uniq("x"),
                                                             "entities": ["user"]}),
                       403, "permission_denied")
    assert "writer" in err["message"]
    assert_error(reader.post(f"/api/v1/feature-sets/{world['a']}/materialize", {}), 403,
                 "permission_denied")
    assert_error(reader.call("PATCH", f"/api/v1/feature-sets/{world['a']}",
                             {"description": "x"}), 403, "permission_denied")
    assert_error(reader.post("/api/v1/entities", {"name": uniq("e")}), 403,
                 "permission_denied")


def test_writer_defines_and_materializes_but_not_keys_or_audit(world):
    writer = as_(world, "writer")
    name = uniq("w")
    r = writer.post("/api/v1/feature-sets", {"name": name, "entities": ["user"],
                                             "source": {"type": "file", "path": str(world["src"]),
                                                        "format": "parquet"}})
    assert r.status_code == 201, r.text
    r = writer.post("/api/v1/features", {"name": "amount", "feature_set_id": name,
                                         "data_type": "float"})
    assert r.status_code == 201, r.text
    r = writer.post(f"/api/v1/feature-sets/{name}/materialize",
                    {"start_date": "2024-01-01", "end_date": "2024-02-01", "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    for method, path in (("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"),
                         ("DELETE", "/api/v1/keys/key_0000000000000000"),
                         ("GET", "/api/v1/audit")):
        body = {"role": "reader"} if method == "POST" else None
        err = assert_error(writer.call(method, path, body), 403, "permission_denied")
        assert "admin" in err["message"]


def test_admin_does_everything(world):
    admin = as_(world, "admin")
    assert admin.get("/api/v1/keys").status_code == 200
    assert admin.get("/api/v1/audit").status_code == 200
    assert admin.post(ONLINE, {"feature_sets": [world["b"]], "entities": {"user": ["u2"]},
                               "features": ["amount"]}).status_code == 200
    r = admin.call("PATCH", f"/api/v1/feature-sets/{world['b']}", {"description": "by admin"})
    assert r.status_code == 200, r.text


# ------------------------------------------------- feature-set limited keys

def forbidden_b(world, r):
    err = assert_error(r, 403, "permission_denied")
    assert world["b"] in err["message"], err
    return err


def test_limited_reader_online(world):
    c = as_(world, "reader_a")
    ok = c.post(ONLINE, {"feature_sets": [world["a"]], "entities": {"user": ["u1"]},
                         "features": ["amount"]})
    assert ok.status_code == 200, ok.text
    forbidden_b(world, c.post(ONLINE, {"feature_sets": [world["b"]],
                                       "entities": {"user": ["u1"]}, "features": ["amount"]}))
    forbidden_b(world, c.post(ONLINE, {"feature_sets": [world["a"]],
                                       "entities": {"user": ["u1"]},
                                       "features": [f"{world['b']}:amount"]}))
    # A derived feature of A whose input lives in B.
    forbidden_b(world, c.post(ONLINE, {"feature_sets": [world["a"]],
                                       "entities": {"user": ["u1"]}, "features": ["b_twice"]}))


def test_a_request_shape_served_to_one_key_is_still_checked_for_another(world):
    """Online serving resolves a request's sets and features once per shape
    and reuses that; who may read them is checked on every request."""
    body = {"feature_sets": [world["b"]], "entities": {"user": ["u2"]}, "features": ["amount"]}
    for _ in range(2):
        assert as_(world, "admin").post(ONLINE, body).status_code == 200
        forbidden_b(world, as_(world, "reader_a").post(ONLINE, body))


def test_limited_reader_historical_json_and_arrow(world):
    c = as_(world, "reader_a")
    ok = c.post(HIST, {"feature_sets": [world["a"]], "features": ["amount"],
                       "entity_df": entity_df()})
    assert ok.status_code == 200, ok.text
    forbidden_b(world, c.post(HIST, {"feature_sets": [world["b"]], "features": ["amount"],
                                     "entity_df": entity_df()}))
    forbidden_b(world, c.post(HIST, {"features": [f"{world['b']}:amount"],
                                     "entity_df": entity_df()}))
    forbidden_b(world, c.post(HIST, {"feature_sets": [world["a"]], "features": ["b_twice"],
                                     "entity_df": entity_df()}))
    table = pa.table({"user_id": pa.array(["u1"]),
                      "event_timestamp": pa.array([ts("2024-01-05T00:00:00Z")],
                                                  pa.timestamp("us", tz="UTC"))})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    headers = {"Content-Type": "application/vnd.apache.arrow.stream"}
    ok = c.call("POST", HIST, headers=headers, data=sink.getvalue(),
                params={"feature_sets": world["a"], "features": "amount"})
    assert ok.status_code == 200, ok.text
    forbidden_b(world, c.call("POST", HIST, headers=headers, data=sink.getvalue(),
                              params={"feature_sets": world["b"], "features": "amount"}))


def test_limited_reader_batch(world, tmp_path):
    c = as_(world, "reader_a")
    src = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"user_id": pa.array(["u1", "u2"]),
                             "event_timestamp": pa.array([ts("2024-01-05T00:00:00Z")] * 2,
                                                         pa.timestamp("us", tz="UTC"))}), src)
    body = {"entity_source": {"path": str(src), "format": "parquet"}, "wait": True}
    ok = c.post(BATCH, {**body, "feature_sets": [world["a"]], "features": ["amount"],
                        "output": {"path": str(tmp_path / "a.parquet")}})
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded", ok.text
    for extra in ({"feature_sets": [world["b"]], "features": ["amount"]},
                  {"feature_sets": [world["a"], world["b"]],
                   "features": [f"{world['a']}:amount", f"{world['b']}:amount"]},
                  {"feature_sets": [world["a"]], "features": ["b_twice"]}):
        out = tmp_path / f"{uniq('o')}.parquet"
        forbidden_b(world, c.post(BATCH, {**body, **extra, "output": {"path": str(out)}}))
        assert not out.exists()
    # A job of B, started by an unlimited key, is not visible to the limited one.
    other = as_(world, "reader").post(BATCH, {**body, "feature_sets": [world["b"]],
                                              "features": ["amount"],
                                              "output": {"path": str(tmp_path / "b.parquet")}})
    assert other.status_code == 200, other.text
    forbidden_b(world, c.get(f"{BATCH}/{other.json()['id']}"))
    assert c.get(f"{BATCH}/{ok.json()['id']}").status_code == 200


def test_limited_keys_definitions_and_materialization(world):
    reader, writer = as_(world, "reader_a"), as_(world, "writer_a")
    b = world["b"]
    forbidden_b(world, reader.get(f"/api/v1/feature-sets/{b}"))
    forbidden_b(world, reader.get(f"/api/v1/feature-sets/{b}/versions"))
    forbidden_b(world, reader.get(f"/api/v1/feature-sets/{b}/materialization-jobs"))
    forbidden_b(world, reader.get(f"/api/v1/features/{b}:amount"))
    forbidden_b(world, writer.call("PATCH", f"/api/v1/feature-sets/{b}", {"description": "x"}))
    forbidden_b(world, writer.call("PATCH", f"/api/v1/features/{b}:amount",
                                   {"description": "x"}))
    forbidden_b(world, writer.call("DELETE", f"/api/v1/features/{b}:amount"))
    forbidden_b(world, writer.post(f"/api/v1/feature-sets/{b}/materialize", {}))
    forbidden_b(world, writer.post("/api/v1/features", {"name": "n", "feature_set_id": b,
                                                        "data_type": "int"}))
    # B's materialization jobs, by id.
    jobs = as_(world, "admin").get(f"/api/v1/feature-sets/{b}/materialization-jobs").json()
    job_id = jobs["jobs"][0]["id"]
    forbidden_b(world, reader.get(f"/api/v1/materialization-jobs/{job_id}"))
    forbidden_b(world, writer.post(f"/api/v1/materialization-jobs/{job_id}/retry", {}))
    # Nothing of B changed.
    got = as_(world, "admin").get(f"/api/v1/feature-sets/{b}").json()
    assert got["description"] != "x"
    # A is reachable.
    assert reader.get(f"/api/v1/feature-sets/{world['a']}").status_code == 200
    r = writer.call("PATCH", f"/api/v1/feature-sets/{world['a']}", {"description": "mine"})
    assert r.status_code == 200, r.text


def test_limited_key_lists_are_filtered(world):
    reader = as_(world, "reader_a")
    sets = reader.get("/api/v1/feature-sets").json()
    assert [s["name"] for s in sets["feature_sets"]] == [world["a"]]
    assert sets["count"] == 1
    features = reader.get("/api/v1/features").json()
    names = {f["name"] for f in features["features"]}
    assert names == {"amount", "b_twice"} and features["count"] == 2
    a_id = sets["feature_sets"][0]["id"]
    assert all(f["feature_set_id"] == a_id for f in features["features"])
    hits = reader.get("/api/v1/search", params={"q": "sec_"}).json()
    kinds = {(h["kind"], h.get("feature_set", h["name"])) for h in hits["results"]}
    assert all(world["b"] not in str(k) for k in kinds), hits
    assert any(world["a"] in str(k) for k in kinds), hits
    # An unlimited reader sees both.
    names = {s["name"] for s in as_(world, "reader").get("/api/v1/feature-sets").json()
             ["feature_sets"]}
    assert {world["a"], world["b"]} <= names


# ------------------------------------------------------------ /api/v1/keys

def test_keys_api(world):
    admin = as_(world, "admin")
    r = admin.post("/api/v1/keys", {"role": "reader", "feature_sets": [world["a"]],
                                    "name": "model"})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert created["id"] == key_id(secret)
    assert created["role"] == "reader" and created["feature_sets"] == [world["a"]]
    assert created["revoked_at"] is None
    assert set(created) == {"id", "name", "role", "feature_sets", "created_at", "revoked_at",
                            "key"}
    c = Client(world["server"], secret)
    assert c.get(f"/api/v1/feature-sets/{world['a']}").status_code == 200
    forbidden_b(world, c.get(f"/api/v1/feature-sets/{world['b']}"))

    listed = admin.get("/api/v1/keys").json()
    assert listed["count"] == len(listed["keys"])
    assert created["id"] in {k["id"] for k in listed["keys"]}
    text = admin.get("/api/v1/keys").text
    for s in list(world["keys"].values()) + [secret]:
        assert s not in text and s[21:] not in text
    assert "hash" not in text and "salt" not in text

    r = admin.call("DELETE", f"/api/v1/keys/{created['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"], r.text
    assert_error(c.get(f"/api/v1/feature-sets/{world['a']}"), 401, "unauthenticated")
    assert_error(admin.call("DELETE", f"/api/v1/keys/{created['id']}"), 409, "conflict")
    assert_error(admin.call("DELETE", "/api/v1/keys/key_ffffffffffffffff"), 404, "not_found")


@pytest.mark.parametrize("body,field", [
    ({}, "role"),
    ({"role": "root"}, "role"),
    ({"role": 3}, "role"),
    ({"role": "reader", "feature_sets": "a"}, "feature_sets"),
    ({"role": "reader", "feature_sets": []}, "feature_sets"),
    ({"role": "reader", "feature_sets": ["a", 2]}, "feature_sets[1]"),
    ({"role": "reader", "feature_sets": ["a", ""]}, "feature_sets[1]"),
    ({"role": "reader", "feature_sets": ["a", "a"]}, "feature_sets[1]"),
    ({"role": "reader", "name": 5}, "name"),
    ({"role": "reader", "scopes": ["x"]}, "scopes"),
])
def test_keys_api_bad_input(world, body, field):
    assert_error(as_(world, "admin").post("/api/v1/keys", body), 400, "invalid_argument", field)


def test_keys_api_not_json(world):
    r = as_(world, "admin").call("POST", "/api/v1/keys", data="role=admin",
                                 headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_argument")


# ---------------------------------------------------------------------- SDK

def test_sdk_with_api_key(world):
    url = world["server"].base_url
    with FeatureStore(url, api_key=world["keys"]["reader_a"]) as fs:
        names = [s["name"] for s in fs.list_feature_sets()]
        assert names == [world["a"]]
        assert fs.get_feature_set(world["a"])["name"] == world["a"]
        with pytest.raises(fstore.errors.PermissionDeniedError) as e:
            fs.get_feature_set(world["b"])
        assert world["b"] in str(e.value)
    with FeatureStore(url) as fs:
        with pytest.raises(fstore.errors.AuthenticationError):
            fs.list_feature_sets()
    name = uniq("sdk")
    with FeatureStore(url, api_key=world["keys"]["reader"]) as fs:
        with pytest.raises(fstore.errors.PermissionDeniedError):
            fs.create_feature_set(name=name, entities=["user"])
    with FeatureStore(url, api_key=world["keys"]["writer"]) as fs:
        assert fs.create_feature_set(name=name, entities=["user"])["name"] == name


# ------------------------------------------------- the PostgreSQL registry

def test_keys_and_audit_on_a_postgres_registry(start_server, tmp_path):
    """The same keys, revocation and audit trail with DATABASE_URL: the CLI
    and the server share a PostgreSQL registry."""
    from backends import Postgres
    pg = Postgres(tmp_path / "pg")
    try:
        env = {"DATABASE_URL": pg.create_database("security")}
        srv = start_server(env=env)
        anon = Client(srv)
        assert anon.get("/api/v1/entities").status_code == 200

        def pg_cli(*args):
            r = subprocess.run([FSTORE_BIN, "keys", *args, "--data-dir", str(srv.data_dir)],
                               capture_output=True, text=True, env=clean_env(env), timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout

        secret = pg_cli("create", "--role", "writer", "--feature-sets", "pg_a").splitlines()[-1]
        assert wait_until(lambda: anon.get("/api/v1/entities").status_code == 401, timeout=3)
        c = Client(srv, secret)
        r = c.post("/api/v1/feature-sets", {"name": "pg_a", "entities": ["user"]})
        assert r.status_code == 201, r.text
        err = assert_error(c.post("/api/v1/feature-sets", {"name": "pg_b", "entities": ["user"]}),
                           403, "permission_denied")
        assert "pg_b" in err["message"]
        assert key_id(secret) in pg_cli("list")
        pg_cli("revoke", key_id(secret))
        assert wait_until(lambda: c.get("/api/v1/entities").status_code == 401, timeout=3)
        admin = pg_cli("create", "--role", "admin").splitlines()[-1]
        assert wait_until(lambda: Client(srv, admin).get("/api/v1/audit").status_code == 200,
                          timeout=3)
        entries = Client(srv, admin).get("/api/v1/audit").json()["entries"]
        # (The polls above left auth.denied entries between these.)
        got = [(e["action"], e["target"], e["outcome"]) for e in reversed(entries)
               if e["action"] != "auth.denied"]
        assert got[:4] == [("key.create", key_id(secret), "success"),
                           ("feature_set.create", "pg_a", "success"),
                           ("feature_set.create", "pg_b", "denied"),
                           ("key.revoke", key_id(secret), "success")], got
        assert secret not in Client(srv, admin).get("/api/v1/audit").text
        srv.stop()
    finally:
        pg.close()  # stops it and removes its data directory


def test_limited_key_monitoring(world):
    """Statistics are aggregates of feature values: a limited key sees its own
    sets' statistics and freshness only, and must name a set for usage."""
    c, b = as_(world, "reader_a"), world["b"]
    full = as_(world, "reader").get("/monitoring/statistics").json()
    assert {f["feature_set"] for f in full["features"]} >= {world["a"], b}
    stats = c.get("/monitoring/statistics").json()
    assert {f["feature_set"] for f in stats["features"]} == {world["a"]}
    assert stats["count"] == len(stats["features"])
    fresh = c.get("/monitoring/data-freshness").json()
    assert [f["feature_set"] for f in fresh["feature_sets"]] == [world["a"]]
    assert fresh["count"] == 1
    for path in ("/monitoring/statistics", "/monitoring/data-freshness", "/monitoring/usage"):
        forbidden_b(world, c.get(path, params={"feature_set": b}))
    err = assert_error(c.get("/monitoring/usage"), 403, "permission_denied", "feature_set")
    assert "feature_set" in err["message"]
    assert c.get("/monitoring/usage", params={"feature_set": world["a"]}).status_code == 200
    assert c.get("/monitoring/metrics").status_code == 200


def test_limited_key_lineage_leaves_other_sets_out(world):
    b_twice = f"{world['a']}:b_twice"
    full = as_(world, "reader").get(f"/api/v1/features/{b_twice}/lineage").json()
    assert [f["feature_set"] for f in full["upstream"]["source_features"]] == [world["b"]]
    limited = as_(world, "reader_a").get(f"/api/v1/features/{b_twice}/lineage")
    assert limited.status_code == 200, limited.text
    assert limited.json()["upstream"]["source_features"] == []
    assert world["b"] not in limited.text
    # And from B's side: 403.
    forbidden_b(world, as_(world, "reader_a").get(
        f"/api/v1/features/{world['b']}:amount/lineage"))
