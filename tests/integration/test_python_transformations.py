"""Python transformations (issue #6) over HTTP against the real server: a
feature set whose source rows go through a Python function before its
features are computed; its definition checks at registration; a failing or
runaway function failing its job without blocking the server or other jobs."""

from __future__ import annotations

import datetime as dt
import math
import pathlib
import threading
import time

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import assert_error, uniq

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
END = dt.datetime(2024, 1, 6, tzinfo=UTC)

CODE = """\
import pyarrow as pa
import pyarrow.compute as pc

def transform(batch):
    amount = batch.column("amount")
    tripled = pc.multiply(amount, 3)
    bucket = pc.if_else(pc.greater(amount, 50), "high", "low")
    return pa.RecordBatch.from_arrays([tripled, bucket], names=["amount_x3", "bucket"])
"""


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events():
    rows = []
    for i in range(60):
        user = f"u{i % 4}"
        t = START + dt.timedelta(hours=2 * i, microseconds=7)
        amount = None if i % 11 == 5 else float((i * 37) % 100)
        rows.append((user, t, amount))
    return rows


def write_events(path: pathlib.Path, rows):
    pq.write_table(pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
    }), path)
    return path


def python_fs(api, src, code=CODE, name=None, input="pyarrow", **extra):
    body = {
        "name": name or uniq("py"), "entities": ["user"],
        "source": {"type": "file", "path": str(src), "format": "parquet"},
        "python_transformation": {
            "code": code, "function": "transform", "input": input, "timeout": "30s",
            "output_columns": {"amount_x3": "float", "bucket": "string"},
        },
    }
    body.update(extra)
    return api.post("/api/v1/feature-sets", body)


def materialize(api, name, wait=True):
    r = api.post(f"/api/v1/feature-sets/{name}/materialize",
                 {"start_date": iso(START), "end_date": iso(END), "wait": wait})
    assert r.status_code in (200, 202), r.text
    return r.json()


def window_sum(rows, user, t, window=dt.timedelta(hours=12)):
    """SUM(amount_x3) over [t - window, t] (PostgreSQL's RANGE frame); None when empty."""
    values = [a * 3 for (u, t2, a) in rows if u == user and t - window <= t2 <= t and a is not None]
    return sum(values) if values else None


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture
def src(tmp_path):
    return write_events(tmp_path / "events.parquet", events())


def test_materialized_online_and_historical_values(api, src):
    r = python_fs(api, src)
    assert r.status_code == 201, r.text
    fs = r.json()
    assert fs["python_transformation"]["output_columns"] == {"amount_x3": "float",
                                                             "bucket": "string"}
    assert fs["python_transformation"]["timeout"] == "30s"
    # Features read the function's output columns as they read source columns.
    api.create_feature(fs["id"], name="amount_x3", data_type="float")
    api.create_feature(fs["id"], name="bucket", data_type="string")
    api.create_feature(fs["id"], name="x3_plus_one", data_type="float",
                       transformation="amount_x3 + 1")
    api.create_feature(fs["id"], name="x3_12h", data_type="float", window_size="12h",
                       transformation="SUM(amount_x3)")
    # A source column the function did not return is still there (same rows).
    api.create_feature(fs["id"], name="amount", data_type="float")
    job = materialize(api, fs["name"])
    assert job["status"] == "succeeded", job
    rows = events()
    assert job["rows_written_offline"] == len(rows)

    def expected(a):
        if a is None:
            return None, None
        return a * 3, "high" if a > 50 else "low"

    # Offline rows.
    root = api.server.data_dir / "offline" / fs["name"] / "v1"
    table = pads.dataset(sorted(str(p) for p in root.rglob("*.parquet")),
                         format="parquet").to_table()
    got = {(r["user_id"], r["event_timestamp"]): r for r in table.to_pylist()}
    assert len(got) == len(rows)
    for (u, t, a) in rows:
        rec = got[(u, t)]
        x3, bucket = expected(a)
        assert close(rec["amount_x3"], x3) and rec["bucket"] == bucket, rec
        assert close(rec["x3_plus_one"], None if x3 is None else x3 + 1), rec
        assert close(rec["amount"], a), rec
        assert close(rec["x3_12h"], window_sum(rows, u, t)), rec

    # Online: each user's latest row, windows at the run's end.
    r = api.post("/api/v1/serving/online", {
        "feature_sets": [fs["name"]], "entities": {"user": ["u0", "u1", "u2", "u3"]},
        "features": ["amount_x3", "bucket", "x3_plus_one", "x3_12h"]})
    assert r.status_code == 200, r.text
    online = r.json()["features"]
    for u in ["u0", "u1", "u2", "u3"]:
        latest = max((row for row in rows if row[0] == u), key=lambda row: row[1])
        x3, bucket = expected(latest[2])
        assert close(online[u]["amount_x3"], x3), (u, online[u])
        assert online[u]["bucket"] == bucket, (u, online[u])
        assert close(online[u]["x3_12h"], window_sum(rows, u, END)), (u, online[u])

    # Historical: point-in-time values of the materialized features.
    entity_rows = [[u, iso(t + dt.timedelta(minutes=30))] for (u, t, _) in rows[::7]]
    r = api.post("/api/v1/serving/historical", {
        "feature_sets": [fs["name"]],
        "entity_df": {"columns": ["user_id", "event_timestamp"], "data": entity_rows},
        "features": ["amount_x3", "bucket"]})
    assert r.status_code == 200, r.text
    for (u, t, a), got_row in zip(rows[::7], r.json()["data"]):
        x3, bucket = expected(a)
        assert close(got_row[2], x3) and got_row[3] == bucket, (u, t, got_row)
    # Windows over the Python step's output: recomputed at each entity row's
    # time from the source run through the step (also between events).
    between = [[u, iso(t - dt.timedelta(minutes=17))] for (u, t, _) in rows[3::5]]
    r = api.post("/api/v1/serving/historical", {
        "feature_sets": [fs["name"]],
        "entity_df": {"columns": ["user_id", "event_timestamp"], "data": entity_rows + between},
        "features": ["x3_12h"]})
    assert r.status_code == 200, r.text
    times = [t + dt.timedelta(minutes=30) for (_, t, _) in rows[::7]] + \
            [t - dt.timedelta(minutes=17) for (_, t, _) in rows[3::5]]
    for (u, _), t, got_row in zip(entity_rows + between, times, r.json()["data"]):
        assert close(got_row[2], window_sum(rows, u, t)), (u, t, got_row)


def test_pandas_input(api, src):
    code = ("def transform(df):\n"
            "    df['amount_x3'] = df['amount'] * 3\n"
            "    df['bucket'] = (df['amount'] > 50).map({True: 'high', False: 'low'})\n"
            "    return df[['amount_x3', 'bucket']]\n")
    r = python_fs(api, src, code=code, input="pandas")
    if r.status_code != 201 and "No module named 'pandas'" in r.text:
        pytest.skip("pandas is not installed: " + r.text)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["python_transformation"]["input"] == "pandas"
    # Given a RecordBatch instead, this DataFrame code fails the empty-batch check.
    r = api.patch(f"/api/v1/feature-sets/{body['id']}",
                  {"python_transformation": {"input": "pyarrow"}})
    err = assert_error(r, 422, "unprocessable", "python_transformation.code")
    assert "RecordBatch" in err["message"], err
    api.create_feature(body["id"], name="amount_x3", data_type="float")
    job = materialize(api, body["name"])
    assert job["status"] == "succeeded", job
    r = api.post("/api/v1/serving/online", {
        "feature_sets": [body["name"]], "entities": {"user": ["u1"]}, "features": ["amount_x3"]})
    latest = max((row for row in events() if row[0] == "u1"), key=lambda row: row[1])
    assert close(r.json()["features"]["u1"]["amount_x3"], latest[2] * 3), r.text


def test_bad_definitions(api, src):
    bad = "import pyarrow as pa\n\ndef transform(batch):\n    return batch +\n"
    err = assert_error(python_fs(api, src, code=bad), 400, "invalid_argument",
                       "python_transformation.code")
    assert "line 4" in err["message"], err

    r = python_fs(api, src, code=CODE.replace("def transform", "def transfrom"))
    err = assert_error(r, 422, "unprocessable", "python_transformation.function")
    assert "transfrom" in err["message"], err

    body = {
        "name": uniq("py"), "entities": ["user"],
        "source": {"type": "file", "path": str(src), "format": "parquet"},
        "python_transformation": {"code": CODE,
                                  "output_columns": {"amount_x3": "float", "missing": "int"}},
    }
    err = assert_error(api.post("/api/v1/feature-sets", body), 422, "unprocessable",
                       "python_transformation.output_columns")
    assert "missing" in err["message"], err

    body["python_transformation"] = {"code": CODE, "output_columns": {"amount_x3": "bool"}}
    assert_error(api.post("/api/v1/feature-sets", body), 422, "unprocessable",
                 "python_transformation.output_columns")

    body["python_transformation"] = {"code": CODE, "output_columns": {"amount_x3": "float"},
                                     "language": "python"}
    assert_error(api.post("/api/v1/feature-sets", body), 400, "invalid_argument",
                 "python_transformation.language")

    body["python_transformation"] = {"code": CODE, "output_columns": {"amount_x3": "float"},
                                     "input": "polars"}
    assert_error(api.post("/api/v1/feature-sets", body), 400, "invalid_argument",
                 "python_transformation.input")

    # A feature on a column neither the source nor the function has.
    fs = python_fs(api, src).json()
    r = api.post("/api/v1/features", {"name": "amount_x4", "feature_set_id": fs["id"],
                                      "data_type": "float"})
    assert r.status_code == 422, r.text

    # PATCH removes it (null): its output columns go with it.
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"python_transformation": None})
    assert r.status_code == 200, r.text
    assert r.json()["python_transformation"] is None


def test_raising_function_fails_the_job_with_its_traceback(api, src):
    code = CODE.replace("    amount = batch.column(\"amount\")\n",
                        "    amount = batch.column(\"amount\")\n"
                        "    if batch.num_rows > 0:\n"
                        "        raise RuntimeError('no amounts today')\n")
    r = python_fs(api, src, code=code)
    assert r.status_code == 201, r.text  # the empty-batch check passes
    fs = r.json()
    api.create_feature(fs["id"], name="amount_x3", data_type="float")
    job = materialize(api, fs["name"])
    assert job["status"] == "failed", job
    assert "Traceback (most recent call last)" in job["error"], job["error"]
    assert "RuntimeError: no amounts today" in job["error"], job["error"]
    assert "raise RuntimeError('no amounts today')" in job["error"], job["error"]


def test_runaway_function_is_stopped_and_blocks_nothing(api, src, tmp_path):
    code = CODE.replace("    amount = batch.column(\"amount\")\n",
                        "    while batch.num_rows > 0:\n"
                        "        pass\n"
                        "    amount = batch.column(\"amount\")\n")
    r = python_fs(api, src, code=code)
    assert r.status_code == 201, r.text
    fs = r.json()
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"python_transformation": {"timeout": "1s"}})
    assert r.status_code == 200 and r.json()["python_transformation"]["timeout"] == "1s", r.text
    api.create_feature(fs["id"], name="amount_x3", data_type="float")

    plain = api.create_feature_set(
        name=uniq("plain"), entities=["user"],
        source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(plain["id"], name="amount", data_type="float")

    runaway = materialize(api, fs["name"], wait=False)
    # Meanwhile the server answers and a job without Python runs to the end.
    health = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            health.append(api.get("/health").status_code)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        other = materialize(api, plain["name"])
        assert other["status"] == "succeeded", other
        deadline = time.monotonic() + 60
        while True:
            job = api.get(f"/api/v1/materialization-jobs/{runaway['id']}").json()
            if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        poller.join()
    assert job["status"] == "failed", job
    assert "timeout (1s)" in job["error"] and "TransformationTimeout" in job["error"], job["error"]
    assert health and all(code == 200 for code in health), health
