"""The audit log: a scripted session (a key bootstrapped through the API,
definitions created, patched and materialized, refusals, key creation and
revocation by API and CLI) read back from GET /api/v1/audit entry by entry,
its filters and their bad inputs; and neither a key nor a feature value in it."""

from __future__ import annotations

import datetime as dt
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from conftest import FSTORE_BIN, assert_error, clean_env, uniq

AUDIT = "/api/v1/audit"
# A feature value and an entity key that must never reach the audit log.
VALUE = 987.654321
ENTITY = "user_audit_7f3e"


def call(srv, method, path, key=None, body=None, **kw):
    headers = {"X-API-Key": key} if key else {}
    if body is not None:
        kw["json"] = body
    return requests.request(method, srv.base_url + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def session(fstore_bin, tmp_path_factory):
    """Runs the session once; returns what the tests compare against."""
    from conftest import FstoreServer
    d = tmp_path_factory.mktemp("audit")
    srv = FstoreServer(d / "data")
    src = d / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([ENTITY]),
        "event_timestamp": pa.array([dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)],
                                    pa.timestamp("us", tz="UTC")),
        "amount": pa.array([VALUE]),
    }), src)
    fs = uniq("audited")
    steps = []

    def step(method, path, key=None, body=None, want=200):
        r = call(srv, method, path, key, body)
        assert r.status_code == want, (method, path, r.text)
        steps.append(r)
        return r

    # No key exists yet: the first one may come from the API.
    admin = step("POST", "/api/v1/keys", body={"role": "admin", "name": "root"}, want=201).json()
    a = admin["key"]
    step("POST", "/api/v1/entities", a, {"name": "user", "join_keys": ["user_id"]}, want=201)
    step("POST", "/api/v1/feature-sets", a,
         {"name": fs, "entities": ["user"],
          "source": {"type": "file", "path": str(src), "format": "parquet"}}, want=201)
    step("POST", "/api/v1/features", a,
         {"name": "amount", "feature_set_id": fs, "data_type": "float"}, want=201)
    step("PATCH", f"/api/v1/feature-sets/{fs}", a, {"description": "audited set"})
    job = step("POST", f"/api/v1/feature-sets/{fs}/materialize", a,
               {"start_date": "2024-01-01", "end_date": "2024-02-01", "wait": True}).json()
    assert job["status"] == "succeeded", job
    reader = step("POST", "/api/v1/keys", a, {"role": "reader"}, want=201).json()
    r = reader["key"]
    served = step("POST", "/api/v1/serving/online", r,
                  {"feature_sets": [fs], "entities": {"user": [ENTITY]}, "features": ["amount"]})
    assert served.json()["features"][ENTITY]["amount"] == VALUE
    step("PATCH", f"/api/v1/feature-sets/{fs}", r, {"description": "no"}, want=403)
    step("GET", AUDIT, r, want=403)
    step("GET", "/api/v1/entities", None, want=401)
    step("PATCH", f"/api/v1/feature-sets/{fs}", a, {"ttl": "forever"}, want=400)
    step("DELETE", f"/api/v1/keys/{reader['id']}", a)
    cli = subprocess.run([FSTORE_BIN, "keys", "create", "--role", "writer", "--data-dir",
                          str(srv.data_dir)], capture_output=True, text=True, env=clean_env(),
                         timeout=60)
    assert cli.returncode == 0, cli.stderr
    cli_secret = cli.stdout.strip().splitlines()[-1]
    cli_revoke = subprocess.run([FSTORE_BIN, "keys", "revoke", "key_" + cli_secret[4:20],
                                 "--data-dir", str(srv.data_dir)], capture_output=True,
                                text=True, env=clean_env(), timeout=60)
    assert cli_revoke.returncode == 0, cli_revoke.stderr
    yield {"srv": srv, "admin": admin, "reader": reader, "fs": fs, "job": job,
           "cli_id": "key_" + cli_secret[4:20], "secrets": [a, r, cli_secret]}
    srv.stop()


def audit(session, **params):
    r = call(session["srv"], "GET", AUDIT, session["admin"]["key"], params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_trail_of_the_session_entry_by_entry(session):
    admin, reader, fs = session["admin"]["id"], session["reader"]["id"], session["fs"]
    body = audit(session)
    entries = list(reversed(body["entries"]))  # oldest first
    assert body["count"] == len(entries)
    got = [(e["action"], e["target"], e["outcome"], e["status"], e["key_id"]) for e in entries]
    assert got == [
        ("key.create", admin, "success", 201, ""),  # authentication was still off
        ("entity.create", "user", "success", 201, admin),
        ("feature_set.create", fs, "success", 201, admin),
        ("feature.create", f"{fs}:amount", "success", 201, admin),
        ("feature_set.update", fs, "success", 200, admin),
        ("materialize", fs, "success", 200, admin),
        ("key.create", reader, "success", 201, admin),
        # Serving is not audited (monitoring counts it).
        ("feature_set.update", fs, "denied", 403, reader),
        ("auth.denied", "GET /api/v1/audit", "denied", 403, reader),
        ("auth.denied", "GET /api/v1/entities", "denied", 401, ""),
        ("feature_set.update", fs, "failure", 400, admin),
        ("key.revoke", reader, "success", 200, admin),
        ("key.create", session["cli_id"], "success", 0, ""),
        ("key.revoke", session["cli_id"], "success", 0, ""),
    ]
    materialize = entries[5]
    assert session["job"]["id"] in materialize["detail"]
    assert "succeeded" in materialize["detail"]
    assert entries[7]["detail"].startswith("permission_denied")
    assert "writer" in entries[7]["detail"]
    assert entries[10]["detail"] == "invalid_argument (ttl)"
    assert entries[12]["detail"] == "cli"
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    times = [dt.datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in entries]
    assert times == sorted(times)
    assert set(entries[0]) == {"seq", "time", "key_id", "action", "target", "outcome", "status",
                               "detail"}


def test_no_key_and_no_feature_value_in_the_log(session):
    text = call(session["srv"], "GET", AUDIT, session["admin"]["key"],
                params={"limit": 1000}).text
    for secret in session["secrets"]:
        assert secret not in text and secret[21:] not in text
    assert str(VALUE) not in text and "987.65" not in text
    assert ENTITY not in text
    assert "forever" not in text and "audited set" not in text  # no request bodies


def test_filters(session):
    admin, reader, fs = session["admin"]["id"], session["reader"]["id"], session["fs"]
    actions = [e["action"] for e in audit(session, action="feature_set.")["entries"]]
    assert actions == ["feature_set.update"] * 3 + ["feature_set.create"]
    assert [e["action"] for e in audit(session, action="materialize")["entries"]] == \
        ["materialize"]
    denied = audit(session, outcome="denied")["entries"]
    assert [e["status"] for e in denied] == [401, 403, 403]
    by_reader = audit(session, key_id=reader)["entries"]
    assert [e["action"] for e in by_reader] == ["auth.denied", "feature_set.update"]
    on_reader = audit(session, target=reader)["entries"]
    assert [e["action"] for e in on_reader] == ["key.revoke", "key.create"]
    on_fs = audit(session, target=fs)["entries"]
    assert len(on_fs) == 5 and all(e["target"] == fs for e in on_fs)
    newest = audit(session, limit=2)["entries"]
    assert [e["action"] for e in newest] == ["key.revoke", "key.create"]
    everything = audit(session)["entries"]
    middle = everything[len(everything) // 2]["time"]
    later = audit(session, since=middle)["entries"]
    earlier = audit(session, until=middle)["entries"]
    assert len(later) + len(earlier) == len(everything)
    assert all(e["time"] >= middle for e in later) and all(e["time"] < middle for e in earlier)
    assert audit(session, since="2999-01-01T00:00:00Z")["entries"] == []
    assert audit(session, key_id=admin, outcome="failure")["count"] == 1


@pytest.mark.parametrize("params,field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "x"}, "limit"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2024-13-01"}, "until"),
    ({"outcome": "maybe"}, "outcome"),
    ({"actor": "me"}, "actor"),
])
def test_bad_filters_are_400(session, params, field):
    r = call(session["srv"], "GET", AUDIT, session["admin"]["key"], params=params)
    assert_error(r, 400, "invalid_argument", field)
