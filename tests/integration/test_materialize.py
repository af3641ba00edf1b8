"""Materialization over HTTP on the embedded stores: POST .../materialize, the
job API, the offline Parquet layout and its contents (checked against values
computed here independently), incremental runs, and the bad inputs."""

from __future__ import annotations

import datetime as dt
import pathlib
import random

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import assert_error, uniq

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def write_events(path: pathlib.Path, rows):
    table = pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
    })
    pq.write_table(table, path)


def random_events(seed=7, users=20, n=400, start=ts("2024-01-01T00:00:00Z"), days=20):
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        t = start + dt.timedelta(seconds=rnd.randrange(days * 86400))
        t = t.replace(microsecond=0)
        amount = None if rnd.random() < 0.05 else round(rnd.uniform(0, 100), 2)
        rows.append((f"u{rnd.randrange(users)}", t, amount))
    # Duplicated instants on purpose: peers in windows.
    rows += [(u, t, a) for (u, t, a) in rows[:10]]
    return rows


def expected_offline(rows, start, end, window=dt.timedelta(days=7)):
    """(user_id, event_time) -> (amount_x2, n_7d, spend_7d) for rows in [start, end)."""
    out = {}
    for (u, t, a) in rows:
        if not (start <= t < end):
            continue
        frame = [r for r in rows if r[0] == u and t - window <= r[1] <= t]
        n = len(frame)
        spend_vals = [r[2] for r in frame if r[2] is not None]
        spend = sum(spend_vals) if spend_vals else None
        out[(u, t)] = (None if a is None else a * 2, n, spend)
    return out


def define(api, source_path, name=None, **fs_fields):
    fs = api.create_feature_set(
        name=name or uniq("txn"), entities=["user"],
        source={"type": "file", "path": str(source_path), "format": "parquet"}, **fs_fields)
    api.create_feature(fs["id"], name="amount_x2", data_type="float", transformation="amount * 2")
    api.create_feature(fs["id"], name="n_7d", data_type="int", window_size="7d",
                       transformation="COUNT(*)")
    api.create_feature(fs["id"], name="spend_7d", data_type="float", window_size="7d",
                       transformation="SUM(amount)")
    return fs


def read_offline(data_dir: pathlib.Path, fs_name: str) -> pa.Table:
    root = data_dir / "offline" / fs_name / "v1"
    files = sorted(str(p) for p in root.rglob("part-*.parquet"))
    assert files, f"no offline files under {root}"
    return pads.dataset(files, format="parquet").to_table()


def test_materialize_end_to_end(fresh_api, tmp_path):
    rows = random_events()
    src = tmp_path / "events.parquet"
    write_events(src, rows)
    fs = define(fresh_api, src)
    start, end = ts("2024-01-05T00:00:00Z"), ts("2024-01-15T00:00:00Z")

    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-05T00:00:00", "end_date": "2024-01-15T00:00:00",
                        "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    assert job["start_date"] == "2024-01-05T00:00:00Z" and job["end_date"] == "2024-01-15T00:00:00Z"
    exp = expected_offline(rows, start, end)
    # Rows are unique per (entity, event time) in the offline store.
    assert job["rows_written_offline"] >= len(exp)
    assert job["rows_written_online"] > 0
    assert job["duration_seconds"] >= 0 and job["cpu_seconds"] >= 0
    assert job["bytes_read"] > 0 and job["bytes_written"] > 0

    # The layout: <root>/<fs>/v1/date=YYYY-MM-DD/part-<job>-<n>.parquet
    root = fresh_api.server.data_dir / "offline" / fs["name"] / "v1"
    dates = sorted(p.name for p in root.iterdir() if p.name.startswith("date="))
    expected_dates = sorted({f"date={t.date().isoformat()}" for (_, t) in exp})
    assert dates == expected_dates
    for part in root.rglob("*.parquet"):
        assert part.name.startswith(f"part-{job['id']}-"), part

    table = read_offline(fresh_api.server.data_dir, fs["name"])
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    got = {}
    for rec in table.to_pylist():
        key = (rec["user_id"], rec["event_timestamp"])
        assert key not in got, f"duplicate row {key}"
        got[key] = (rec["amount_x2"], rec["n_7d"], rec["spend_7d"])
    assert set(got) == set(exp)
    for key, (x2, n, spend) in exp.items():
        gx2, gn, gspend = got[key]
        assert gn == n, key
        assert (gx2 is None) == (x2 is None) and (x2 is None or abs(gx2 - x2) < 1e-9), key
        assert (gspend is None) == (spend is None), key
        if spend is not None:
            assert abs(gspend - spend) < 1e-6, key
    # Sorted by entity key then event time within each file.
    for part in root.rglob("*.parquet"):
        t = pq.read_table(part)
        keys = list(zip(t.column("user_id").to_pylist(), t.column("event_timestamp").to_pylist()))
        assert keys == sorted(keys), part

    # The job API.
    again = fresh_api.get(f"/api/v1/materialization-jobs/{job['id']}")
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    listed = fresh_api.get(f"/api/v1/feature-sets/{fs['name']}/materialization-jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]


def test_rerun_of_a_range_replaces_it(fresh_api, tmp_path):
    rows = random_events(seed=3)
    src = tmp_path / "events.parquet"
    write_events(src, rows)
    fs = define(fresh_api, src)
    body = {"start_date": "2024-01-02", "end_date": "2024-01-09", "wait": True}
    for _ in range(2):
        r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize", body)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    table = read_offline(fresh_api.server.data_dir, fs["name"])
    keys = list(zip(table.column("user_id").to_pylist(),
                    table.column("event_timestamp").to_pylist()))
    assert len(keys) == len(set(keys))
    exp = expected_offline(rows, ts("2024-01-02T00:00:00Z"), ts("2024-01-09T00:00:00Z"))
    assert set(keys) == set(exp)


def test_incremental_runs_follow_the_watermark(fresh_api, tmp_path):
    rows = random_events(seed=5)
    src = tmp_path / "events.parquet"
    write_events(src, rows)
    fs = define(fresh_api, src)
    first = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                           {"start_date": "2024-01-01", "end_date": "2024-01-10", "wait": True})
    assert first.json()["status"] == "succeeded", first.text
    second = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize", {"wait": True})
    assert second.status_code == 200, second.text
    job = second.json()
    assert job["status"] == "succeeded", job
    assert job["incremental"] is True
    assert job["start_date"] == "2024-01-10T00:00:00Z"  # the previous run's end
    table = read_offline(fresh_api.server.data_dir, fs["name"])
    assert len(table) == len({(u, t) for (u, t, _) in rows})  # everything, once


def test_async_submit_answers_202_and_the_job_finishes(fresh_api, tmp_path):
    src = tmp_path / "events.parquet"
    write_events(src, random_events(seed=11))
    fs = define(fresh_api, src)
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['name']}/materialize",
                       {"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-21T00:00:00Z"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded")
    import time
    deadline = time.time() + 60
    while time.time() < deadline:
        state = fresh_api.get(f"/api/v1/materialization-jobs/{job['id']}").json()
        if state["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert state["status"] == "succeeded", state
    assert state["completed_until"] == "2024-01-21T00:00:00Z"


def test_validation_failure_fails_the_job_with_a_report(fresh_api, tmp_path):
    src = tmp_path / "events.parquet"
    write_events(src, [("u1", ts("2024-01-01T10:00:00Z"), 5.0),
                       ("u2", ts("2024-01-01T11:00:00Z"), 500.0)])
    fs = fresh_api.create_feature_set(name=uniq("val"), entities=["user"],
                                      source={"type": "file", "path": str(src)})
    fresh_api.create_feature(fs["id"], name="amount", data_type="float",
                             validation_rules={"max_value": 100})
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "failed"
    assert "validation" in job["error"]
    report = job["quality_report"]["amount"]["max_value"]
    assert report["count"] == 1
    assert report["samples"][0]["user_id"] == "u2"
    # Nothing was written and the watermark did not move.
    assert not (fresh_api.server.data_dir / "offline" / fs["name"]).exists() or \
        not list((fresh_api.server.data_dir / "offline" / fs["name"]).rglob("part-*.parquet"))


@pytest.mark.parametrize("body,field", [
    ({"start_date": "2024-01-10", "end_date": "2024-01-01"}, "end_date"),
    ({"start_date": "2024-01-10", "end_date": "2024-01-10"}, "end_date"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": "2024-13-01"}, "start_date"),
    ({"end_date": 20240101}, "end_date"),
    ({"wait": "yes"}, "wait"),
    ({"start": "2024-01-01"}, "start"),
])
def test_bad_materialize_requests(fresh_api, tmp_path, body, field):
    src = tmp_path / "events.parquet"
    write_events(src, [("u1", ts("2024-01-01T10:00:00Z"), 5.0)])
    fs = define(fresh_api, src)
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize", body)
    assert_error(r, 400, "invalid_argument", field)
    assert fresh_api.get(f"/api/v1/feature-sets/{fs['id']}/materialization-jobs").json()["count"] == 0


def test_materialize_refusals(fresh_api, tmp_path):
    assert_error(fresh_api.post("/api/v1/feature-sets/nope/materialize", {}), 404, "not_found")
    # No source at all.
    bare = fresh_api.create_feature_set(name=uniq("bare"))
    fresh_api.create_feature(bare["id"], name="x", data_type="int")
    assert_error(fresh_api.post(f"/api/v1/feature-sets/{bare['id']}/materialize", {}),
                 422, "unprocessable", "source")
    # A source path with no file (yet).
    missing = fresh_api.create_feature_set(
        name=uniq("missing"), source={"type": "file", "path": str(tmp_path / "none.parquet")})
    fresh_api.create_feature(missing["id"], name="x", data_type="int")
    assert_error(fresh_api.post(f"/api/v1/feature-sets/{missing['id']}/materialize", {}),
                 422, "unprocessable", "source.path")
    # Both stores disabled.
    src = tmp_path / "events.parquet"
    write_events(src, [("u1", ts("2024-01-01T10:00:00Z"), 5.0)])
    off = define(fresh_api, src, offline_enabled=False, online_enabled=False)
    assert_error(fresh_api.post(f"/api/v1/feature-sets/{off['id']}/materialize", {}),
                 422, "unprocessable", "offline_enabled")
    # A feature set without features.
    empty = fresh_api.create_feature_set(name=uniq("empty"),
                                         source={"type": "file", "path": str(src)})
    assert_error(fresh_api.post(f"/api/v1/feature-sets/{empty['id']}/materialize", {}),
                 422, "unprocessable", "features")
    # Unknown job.
    assert_error(fresh_api.get("/api/v1/materialization-jobs/00000000-0000-0000-0000-000000000000"),
                 404, "not_found")


def test_unreadable_source_fails_cleanly(fresh_api, tmp_path):
    src = tmp_path / "events.parquet"
    write_events(src, [("u1", ts("2024-01-01T10:00:00Z"), 5.0)])
    fs = define(fresh_api, src)
    src.write_bytes(b"this is not parquet any more")
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["status"] == "failed" and r.json()["error"]
    else:
        assert_error(r, 422, "unprocessable", "source.path")
    assert not list((fresh_api.server.data_dir / "offline").rglob("part-*.parquet"))


def test_source_that_lost_a_column_is_refused(fresh_api, tmp_path):
    src = tmp_path / "events.parquet"
    write_events(src, [("u1", ts("2024-01-01T10:00:00Z"), 5.0)])
    fs = define(fresh_api, src)
    # The source changes after the definition: `amount` is gone.
    pq.write_table(pa.table({
        "user_id": pa.array(["u1"]),
        "event_timestamp": pa.array([ts("2024-01-01T10:00:00Z")], pa.timestamp("us", tz="UTC")),
    }), src)
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    err = assert_error(r, 422, "unprocessable")
    assert "amount" in err["message"]
    assert fresh_api.get(f"/api/v1/feature-sets/{fs['id']}/materialization-jobs").json()["count"] == 0


def test_timestamp_column_of_the_wrong_type_is_refused(fresh_api, tmp_path):
    src = tmp_path / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array(["u1", "u2"]),
        "event_timestamp": pa.array([1, 2], pa.int64()),
        "amount": pa.array([1.0, 2.0]),
    }), src)
    fs = fresh_api.create_feature_set(name=uniq("badts"), entities=["user"],
                                      source={"type": "file", "path": str(src)})
    fresh_api.create_feature(fs["id"], name="amount", data_type="float")
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    # Refused before anything is written: a failed job naming the column, or a 422.
    if r.status_code == 200:
        job = r.json()
        assert job["status"] == "failed" and "event_timestamp" in job["error"], job
    else:
        err = assert_error(r, 422, "unprocessable")
        assert "event_timestamp" in err["message"]
    assert not list((fresh_api.server.data_dir / "offline").rglob("part-*.parquet"))


def test_csv_source_materializes(fresh_api, tmp_path):
    src = tmp_path / "events.csv"
    src.write_text("user_id,event_timestamp,amount\n"
                   "u1,2024-01-01T10:00:00,1.5\n"
                   "u1,2024-01-01T12:00:00,2.5\n"
                   "u2,2024-01-01T11:00:00,\n")
    fs = fresh_api.create_feature_set(name=uniq("csv"), entities=["user"],
                                      source={"type": "file", "path": str(src)})
    fresh_api.create_feature(fs["id"], name="amount", data_type="float")
    fresh_api.create_feature(fs["id"], name="n_1d", data_type="int", window_size="1d",
                             transformation="COUNT(amount)")
    r = fresh_api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    table = read_offline(fresh_api.server.data_dir, fs["name"])
    rows = sorted((r["user_id"], r["amount"], r["n_1d"]) for r in table.to_pylist())
    assert rows == [("u1", 1.5, 1), ("u1", 2.5, 2), ("u2", None, 0)]
