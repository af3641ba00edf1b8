"""Batch serving: POST /api/v1/serving/batch runs historical retrieval over a
Parquet entity source as a job that writes Parquet. Checked against
POST /api/v1/serving/historical for the same rows (the output must be the same
table), over several record batches, waiting and polling, with as_of, over
directories, and for the bad inputs (each a 4xx naming its field) and a job
that fails on a row."""

from __future__ import annotations

import datetime as dt
import os
import random

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import Api, assert_error, uniq, wait_until

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
END = dt.datetime(2024, 1, 6, tzinfo=UTC)
BATCH = "/api/v1/serving/batch"
HIST = "/api/v1/serving/historical"
ARROW = {"Accept": "application/vnd.apache.arrow.stream"}


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    api = Api(server)
    d = tmp_path_factory.mktemp("batch-src")
    rnd = random.Random(5)
    events = {}
    while len(events) < 300:
        u = f"u{rnd.randrange(6)}"
        t = START + dt.timedelta(seconds=rnd.randrange(5 * 86400), microseconds=77)
        events[(u, t)] = None if rnd.random() < 0.1 else round(rnd.uniform(0, 50), 2)
    src = d / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([k[0] for k in events], pa.string()),
        "event_timestamp": pa.array([k[1] for k in events], pa.timestamp("us", tz="UTC")),
        "amount": pa.array(list(events.values()), pa.float64()),
    }), src)
    source = {"type": "file", "path": str(src), "format": "parquet"}
    a = api.create_feature_set(name=uniq("batch_a"), entities=["user"], source=source)
    api.create_feature(a["id"], name="amount", data_type="float", default_value=-1.0)
    api.create_feature(a["id"], name="amount_x2", data_type="float", transformation="amount * 2")
    api.create_feature(a["id"], name="n_6h", data_type="int", window_size="6h",
                       transformation="COUNT(*)")
    b = api.create_feature_set(name=uniq("batch_b"), entities=["user"], source=source, ttl="12h")
    api.create_feature(b["id"], name="amount", data_type="float")
    for fs in (a, b):
        r = api.post(f"/api/v1/feature-sets/{fs['name']}/materialize",
                     {"start_date": iso(START), "end_date": iso(END), "wait": True})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return {"api": api, "a": a["name"], "b": b["name"], "dir": d, "users": sorted({k[0] for k in events})}


def entity_rows(seed, n):
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        u = f"u{rnd.randrange(8)}"  # u6, u7: unknown entities
        t = START - dt.timedelta(hours=6) + dt.timedelta(
            microseconds=rnd.randrange(6 * 86400 * 10**6))
        rows.append((u, t, i % 3))
    return rows


def write_entities(path, rows, row_group_size=None, time_column="event_timestamp"):
    table = pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        time_column: pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "label": pa.array([r[2] for r in rows], pa.int64()),
    })
    pq.write_table(table, path, row_group_size=row_group_size)
    return table


def historical(world, rows, features, sets, **extra):
    body = {"feature_sets": sets, "features": features,
            "entity_df": {"columns": ["user_id", "event_timestamp", "label"],
                          "data": [[u, iso(t), label] for u, t, label in rows]}}
    body.update(extra)
    r = world["api"].post(HIST, body, headers=ARROW)
    assert r.status_code == 200, r.text
    return ipc.open_stream(r.content).read_all()


def submit(world, **body):
    return world["api"].post(BATCH, body)


def assert_same_table(got: pa.Table, want: pa.Table):
    assert got.column_names == want.column_names
    assert [f.type for f in got.schema] == [f.type for f in want.schema], (got.schema, want.schema)
    assert got.to_pylist() == want.to_pylist()


def leftovers(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_wait_matches_historical_over_several_batches(world, tmp_path):
    rows = entity_rows(1, 400) + entity_rows(1, 7)  # duplicate rows are kept
    src = tmp_path / "entities.parquet"
    write_entities(src, rows, row_group_size=100)
    out = tmp_path / "out" / "train.parquet"  # its directory is created
    features = [f"{world['a']}:amount", "amount_x2", "n_6h", f"{world['b']}:amount"]
    r = submit(world, feature_sets=[world["a"], world["b"]], features=features,
               entity_source={"path": str(src), "format": "parquet"},
               output={"path": str(out)}, batch_rows=64, wait=True)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    assert job["rows_read"] == job["rows_written"] == len(rows)
    assert job["batches"] >= 7, job  # 64-row batches within 100-row groups
    assert job["output"] == str(out) and job["error"] is None
    assert job["finished_at"] and job["duration_seconds"] >= 0
    got = pq.read_table(out)
    want = historical(world, rows, features, [world["a"], world["b"]])
    assert_same_table(got, want)
    # The data exercise matches and misses.
    values = got.column(f"{world['a']}:amount").to_pylist()
    assert values.count(-1.0) > 10 and len(set(values)) > 50
    assert leftovers(out.parent) == []
    assert sorted(os.listdir(out.parent)) == ["train.parquet"]
    r = world["api"].get(f"{BATCH}/{job['id']}")
    assert r.status_code == 200 and r.json() == job


def test_without_wait_poll_until_succeeded(world, tmp_path):
    rows = entity_rows(2, 3000)
    src = tmp_path / "entities.parquet"
    write_entities(src, rows, row_group_size=500)
    out = tmp_path / "out.parquet"
    r = submit(world, feature_sets=[world["a"]], features=["amount", "n_6h"],
               entity_source={"path": str(src)}, output={"path": str(out)}, batch_rows=200)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running"), job
    assert job["rows_written"] <= len(rows)
    seen_statuses = set()

    def ended():
        # Whenever the final name exists, it holds the whole output.
        if out.exists():
            assert pq.read_table(out).num_rows == len(rows)
        j = world["api"].get(f"{BATCH}/{job['id']}").json()
        seen_statuses.add(j["status"])
        return j["status"] in ("succeeded", "failed")

    assert wait_until(ended, timeout=60)
    j = world["api"].get(f"{BATCH}/{job['id']}").json()
    assert j["status"] == "succeeded", j
    assert j["rows_written"] == len(rows) and j["batches"] >= 15
    assert_same_table(pq.read_table(out), historical(world, rows, ["amount", "n_6h"], [world["a"]]))
    assert leftovers(tmp_path) == []


def test_as_of(world, tmp_path):
    rows = entity_rows(3, 50)
    src = tmp_path / "e.parquet"
    write_entities(src, rows)
    for as_of in ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"):
        out = tmp_path / f"out-{as_of[:4]}.parquet"
        r = submit(world, feature_sets=[world["a"]], features=["amount", "n_6h"],
                   entity_source={"path": str(src)}, output={"path": str(out)}, as_of=as_of,
                   wait=True)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        assert r.json()["as_of"].startswith(as_of[:4])
        got = pq.read_table(out)
        assert_same_table(got, historical(world, rows, ["amount", "n_6h"], [world["a"]],
                                          as_of=as_of))
        if as_of.startswith("2000"):  # nothing had been materialized then
            assert set(got.column("amount").to_pylist()) == {-1.0}


def test_directory_source_timestamp_column_and_directory_output(world, tmp_path):
    src = tmp_path / "entities"
    src.mkdir()
    first, second = entity_rows(4, 30), entity_rows(5, 20)
    write_entities(src / "part-0.parquet", first, time_column="timestamp")
    write_entities(src / "part-1.parquet", second, time_column="timestamp")
    (src / "_SUCCESS").write_text("")  # skipped, like hidden files
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    r = submit(world, feature_sets=[world["a"]], features=["amount"],
               entity_source={"path": str(src)}, output={"path": str(out_dir)}, wait=True)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    assert job["output"] == str(out_dir / f"{job['id']}.parquet")
    got = pq.read_table(job["output"])
    assert got.column_names == ["user_id", "timestamp", "label", "amount"]
    want = historical(world, first + second, ["amount"], [world["a"]])
    assert got.column("amount").to_pylist() == want.column("amount").to_pylist()
    assert got.column("user_id").to_pylist() == [r[0] for r in first + second]
    # A glob, ISO 8601 string times and integer labels as int32 pass through.
    g = tmp_path / "glob"
    g.mkdir()
    rows = entity_rows(6, 10)
    pq.write_table(pa.table({"user_id": [r[0] for r in rows],
                             "event_timestamp": [iso(r[1]) for r in rows],
                             "label": pa.array([r[2] for r in rows], pa.int32())}),
                   g / "a.parquet")
    r = submit(world, feature_sets=[world["a"]], features=["amount"],
               entity_source={"path": str(g / "*.parquet")},
               output={"path": str(tmp_path / "g-out") + "/"}, wait=True)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    got = pq.read_table(r.json()["output"])
    assert got.schema.field("event_timestamp").type == pa.string()
    assert got.schema.field("label").type == pa.int32()
    assert got.column("amount").to_pylist() == \
        historical(world, rows, ["amount"], [world["a"]]).column("amount").to_pylist()


def test_empty_source_writes_the_columns(world, tmp_path):
    src = tmp_path / "empty.parquet"
    write_entities(src, [])
    out = tmp_path / "empty-out.parquet"
    r = submit(world, feature_sets=[world["a"]], features=["amount", "n_6h"],
               entity_source={"path": str(src)}, output={"path": str(out)}, wait=True)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    got = pq.read_table(out)
    assert got.num_rows == 0
    assert got.column_names == ["user_id", "event_timestamp", "label", "amount", "n_6h"]
    assert got.schema.field("n_6h").type == pa.int64()


def test_overwrite(world, tmp_path):
    src = tmp_path / "e.parquet"
    write_entities(src, entity_rows(7, 5))
    out = tmp_path / "o.parquet"
    out.write_bytes(b"not parquet")
    body = dict(feature_sets=[world["a"]], features=["amount"],
                entity_source={"path": str(src)}, output={"path": str(out)}, wait=True)
    assert_error(submit(world, **body), 409, "conflict", "output.path")
    assert out.read_bytes() == b"not parquet"
    r = submit(world, overwrite=True, **body)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert pq.read_table(out).num_rows == 5


def test_failing_job_reports_the_row(world, tmp_path):
    rows = entity_rows(8, 300)
    times = [iso(r[1]) for r in rows]
    times[250] = "not a time"
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user_id": [r[0] for r in rows], "event_timestamp": times}), src,
                   row_group_size=100)
    out = tmp_path / "bad-out.parquet"
    r = submit(world, feature_sets=[world["a"]], features=["amount"],
               entity_source={"path": str(src)}, output={"path": str(out)}, batch_rows=100,
               wait=True)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "failed", job
    assert "row 250" in job["error"] and "not a time" in job["error"], job
    assert job["rows_written"] == 200 and job["finished_at"]
    assert not out.exists() and leftovers(tmp_path) == []
    # Null join keys fail too, naming the row.
    src2 = tmp_path / "null-key.parquet"
    pq.write_table(pa.table({"user_id": ["u1", None], "event_timestamp": times[:2]}), src2)
    r = submit(world, feature_sets=[world["a"]], features=["amount"],
               entity_source={"path": str(src2)}, output={"path": str(out)}, wait=True)
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    assert "row 1" in r.json()["error"] and "null" in r.json()["error"]


@pytest.fixture(scope="module")
def files(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("batch-bad")
    good = d / "good.parquet"
    write_entities(good, entity_rows(9, 3))
    no_key = d / "no-key.parquet"
    pq.write_table(pa.table({"uid": ["u1"], "event_timestamp": ["2024-01-02T00:00:00"]}), no_key)
    no_ts = d / "no-ts.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "ts": ["2024-01-02T00:00:00"]}), no_ts)
    float_key = d / "float-key.parquet"
    pq.write_table(pa.table({"user_id": [1.5], "event_timestamp": ["2024-01-02T00:00:00"]}),
                   float_key)
    a_file = d / "a-file"
    a_file.write_text("x")
    existing = d / "existing.parquet"
    existing.write_text("x")
    return {"dir": d, "good": str(good), "no_key": str(no_key), "no_ts": str(no_ts),
            "float_key": str(float_key), "a_file": str(a_file), "existing": str(existing)}


def good_body(world, files, **overrides):
    body = {"feature_sets": [world["a"]], "features": ["amount"],
            "entity_source": {"path": files["good"], "format": "parquet"},
            "output": {"path": str(files["dir"] / f"{uniq('out')}.parquet")}}
    body.update(overrides)
    return body


def without(key):
    return lambda w, f: {k: v for k, v in good_body(w, f).items() if k != key}


BAD = [
    ("no-entity-source", without("entity_source"), 400, "invalid_argument", "entity_source"),
    ("entity-source-string", lambda w, f: good_body(w, f, entity_source=f["good"]),
     400, "invalid_argument", "entity_source"),
    ("no-entity-source-path", lambda w, f: good_body(w, f, entity_source={"format": "parquet"}),
     400, "invalid_argument", "entity_source.path"),
    ("missing-file", lambda w, f: good_body(w, f, entity_source={"path": f["good"] + ".nope"}),
     400, "invalid_argument", "entity_source.path"),
    ("relative-source", lambda w, f: good_body(w, f, entity_source={"path": "good.parquet"}),
     400, "invalid_argument", "entity_source.path"),
    ("csv-source", lambda w, f: good_body(w, f, entity_source={"path": f["good"], "format": "csv"}),
     400, "invalid_argument", "entity_source.format"),
    ("not-parquet", lambda w, f: good_body(w, f, entity_source={"path": f["a_file"]}),
     422, "unprocessable", "entity_source.path"),
    ("missing-join-key", lambda w, f: good_body(w, f, entity_source={"path": f["no_key"]}),
     400, "invalid_argument", "entity_source.path"),
    ("missing-timestamp", lambda w, f: good_body(w, f, entity_source={"path": f["no_ts"]}),
     400, "invalid_argument", "entity_source.path"),
    ("float-join-key", lambda w, f: good_body(w, f, entity_source={"path": f["float_key"]}),
     400, "invalid_argument", "entity_source.path"),
    ("no-output", without("output"), 400, "invalid_argument", "output"),
    ("relative-output", lambda w, f: good_body(w, f, output={"path": "out.parquet"}),
     400, "invalid_argument", "output.path"),
    ("output-under-a-file", lambda w, f: good_body(w, f, output={"path": f["a_file"] + "/o.parquet"}),
     400, "invalid_argument", "output.path"),
    ("output-dir-uncreatable", lambda w, f: good_body(w, f, output={"path": "/proc/nope/o.parquet"}),
     400, "invalid_argument", "output.path"),
    ("existing-output", lambda w, f: good_body(w, f, output={"path": f["existing"]}),
     409, "conflict", "output.path"),
    ("output-format", lambda w, f: good_body(w, f, output={"path": "/tmp/x.csv", "format": "csv"}),
     400, "invalid_argument", "output.format"),
    ("unknown-feature-set", lambda w, f: good_body(w, f, feature_sets=["nope_" + uniq()]),
     404, "not_found", None),
    ("unknown-feature", lambda w, f: good_body(w, f, features=["nope"]),
     400, "invalid_argument", "features[0]"),
    ("feature-named-like-a-column", lambda w, f: good_body(w, f, features=["amount", "label"]),
     400, "invalid_argument", "features[1]"),
    ("empty-features", lambda w, f: good_body(w, f, features=[]),
     400, "invalid_argument", "features"),
    ("bad-as-of", lambda w, f: good_body(w, f, as_of="yesterday"),
     400, "invalid_argument", "as_of"),
    ("batch-rows-zero", lambda w, f: good_body(w, f, batch_rows=0),
     400, "invalid_argument", "batch_rows"),
    ("wait-string", lambda w, f: good_body(w, f, wait="yes"), 400, "invalid_argument", "wait"),
    ("unknown-field", lambda w, f: good_body(w, f, entity_df={}),
     400, "invalid_argument", "entity_df"),
]


@pytest.mark.parametrize("name,make,status,code,field", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(world, files, name, make, status, code, field):
    before = sorted(os.listdir(files["dir"]))
    r = world["api"].post(BATCH, make(world, files))
    assert_error(r, status, code, field)
    assert sorted(os.listdir(files["dir"])) == before  # nothing written, no job queued


def test_missing_join_key_message_names_the_columns(world, files):
    r = world["api"].post(BATCH, good_body(world, files, entity_source={"path": files["no_key"]}))
    err = assert_error(r, 400, "invalid_argument", "entity_source.path")
    assert "user_id" in err["message"] and "uid" in err["message"], err


def test_unknown_job_is_404(world):
    assert_error(world["api"].get(f"{BATCH}/{uniq('job')}"), 404, "not_found")


def long_job(world, tmp_path, name):
    """A job of many small batches (seconds of work), not waited for."""
    src = tmp_path / f"{name}.parquet"
    if not src.exists():
        write_entities(src, entity_rows(9, 200_000))
    r = submit(world, feature_sets=[world["a"]], features=["amount", "n_6h"],
               entity_source={"path": str(src)}, output={"path": str(tmp_path / f"{name}.out")},
               batch_rows=100)
    assert r.status_code == 202, r.text
    return r.json()


def test_cancel_a_queued_and_a_running_job_and_list_jobs(world, tmp_path):
    api = world["api"]
    # Two workers: the first two run, the third waits in the queue.
    first, second, third = (long_job(world, tmp_path, n) for n in ("one", "two", "three"))
    wait_until(lambda: api.get(f"{BATCH}/{first['id']}").json()["status"] == "running", 20)
    r = api.get(f"{BATCH}/{third['id']}")
    assert r.json()["status"] == "queued", r.text

    listed = api.get(BATCH, params={"status": "queued"}).json()
    assert third["id"] in [j["id"] for j in listed["jobs"]]
    assert all(j["status"] == "queued" for j in listed["jobs"])

    r = api.post(f"{BATCH}/{third['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert (cancelled["status"], cancelled["cancelled"]) == ("failed", True)
    assert "cancelled before it started" in cancelled["error"]

    r = api.post(f"{BATCH}/{first['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    assert wait_until(lambda: api.get(f"{BATCH}/{first['id']}").json()["status"] == "failed", 30)
    stopped = api.get(f"{BATCH}/{first['id']}").json()
    assert stopped["cancelled"] is True and stopped["error"].startswith("cancelled after"), stopped
    assert stopped["rows_written"] < 200_000
    # Nothing of a cancelled job is left: no output, no temporary file.
    assert not (tmp_path / "one.out").exists() and not (tmp_path / "three.out").exists()
    assert [n for n in leftovers(tmp_path) if not n.startswith(".two.")] == []

    # Cancelling an ended job is a conflict; the other job runs to the end.
    r = api.post(f"{BATCH}/{third['id']}/cancel")
    assert_error(r, 409, "conflict")
    assert wait_until(lambda: api.get(f"{BATCH}/{second['id']}").json()["status"] == "succeeded",
                      120)
    assert pq.read_table(tmp_path / "two.out").num_rows == 200_000
    assert leftovers(tmp_path) == []

    # The list: newest first, limited, filtered by status.
    everything = api.get(BATCH, params={"limit": 1000}).json()
    ids = [j["id"] for j in everything["jobs"]]
    assert everything["count"] == len(ids)
    assert ids.index(third["id"]) < ids.index(second["id"]) < ids.index(first["id"])
    assert api.get(BATCH, params={"limit": 2}).json()["count"] == 2
    failed = api.get(BATCH, params={"status": "failed"}).json()["jobs"]
    assert {first["id"], third["id"]} <= {j["id"] for j in failed}
    assert second["id"] not in {j["id"] for j in failed}


@pytest.mark.parametrize("params, field", [
    ({"status": "paused"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
    ({"sort": "asc"}, "sort")])
def test_list_bad_parameters(world, params, field):
    assert_error(world["api"].get(BATCH, params=params), 400, "invalid_argument", field)


def test_cancel_unknown_job_is_404(world):
    assert_error(world["api"].post(f"{BATCH}/no-such-job/cancel"), 404, "not_found")
