"""Monitoring over HTTP on a real server (issue #7): GET /monitoring/metrics
parsed as Prometheus text (requests counted under their route, histograms that
add up, serving cache hits), /monitoring/statistics of materialized data
against numpy, drift after a shifted batch, /monitoring/data-freshness of a
fresh and a stale feature set, /monitoring/usage after a known sequence of
online, historical and batch requests, and the bad parameters."""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Api, assert_error, uniq

UTC = dt.timezone.utc


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).replace(tzinfo=None).isoformat()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str):
    """Exposition text -> ({(name, frozenset(labels)): value}, {name: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def metrics(api):
    r = api.get("/monitoring/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(r.text)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def write_source(path, rows):
    pq.write_table(pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
        "category": pa.array([r[3] for r in rows], pa.string()),
    }), path)


def define(api, src, **fields):
    fs = api.create_feature_set(
        name=uniq("mon"), entities=["user"],
        source={"type": "file", "path": str(src), "format": "parquet"}, **fields)
    api.create_feature(fs["id"], name="amount_f", data_type="float", transformation="amount")
    api.create_feature(fs["id"], name="cat", data_type="string", transformation="category")
    return fs


def materialize(api, fs, start, end):
    r = api.post(f"/api/v1/feature-sets/{fs['id']}/materialize",
                 {"start_date": iso(start), "end_date": iso(end), "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    return job


NOW = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY1 = NOW - dt.timedelta(days=3)
DAY2 = NOW - dt.timedelta(days=2)
DAY3 = NOW - dt.timedelta(days=1)


def batch(start, n, shift, seed):
    rnd = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = start + dt.timedelta(seconds=30 * i)
        amount = None if i % 10 == 3 else float(round(rnd.normal(50 + shift, 10), 3))
        category = ["a", "a", "b", "c"][i % 4] if not shift else ["c", "c", "c", "d"][i % 4]
        rows.append((f"u{i % 7}", t, amount, category))
    return rows


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    api = Api(server)
    d = tmp_path_factory.mktemp("monitoring")
    first = batch(DAY1, 200, 0, 1)
    second = batch(DAY2, 200, 40, 2)
    src = d / "events.parquet"
    write_source(src, first + second)
    fs = define(api, src)
    job1 = materialize(api, fs, DAY1, DAY2)
    job2 = materialize(api, fs, DAY2, DAY3)
    return {"api": api, "fs": fs, "first": first, "second": second, "jobs": [job1, job2],
            "dir": d}


def test_job_cost_is_in_the_job_and_the_metrics(world):
    api = world["api"]
    for job in world["jobs"]:
        assert job["cpu_seconds"] > 0 and job["bytes_read"] > 0 and job["bytes_written"] > 0, job
        assert job["max_event_time_offline"] is not None
    samples, types = metrics(api)
    assert types["fstore_materialization_cpu_seconds_total"] == "counter"
    assert value(samples, "fstore_materialization_jobs_total", outcome="succeeded") >= 2
    assert value(samples, "fstore_materialization_bytes_read_total") >= sum(
        j["bytes_read"] for j in world["jobs"])
    assert value(samples, "fstore_materialization_bytes_written_total") >= sum(
        j["bytes_written"] for j in world["jobs"])
    assert value(samples, "fstore_materialization_rows_total", store="offline") >= sum(
        j["rows_written_offline"] for j in world["jobs"])
    assert value(samples, "fstore_materialization_rows_per_second",
                 feature_set=world["fs"]["name"]) > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_start_time_seconds") > 1.6e9


def test_requests_are_counted_under_their_route(world):
    api = world["api"]
    before, _ = metrics(api)
    for _ in range(3):
        assert api.get("/health").status_code == 200
    assert api.get("/api/v1/feature-sets/no_such_set").status_code == 404
    assert api.get("/no/such/path").status_code == 404
    after, types = metrics(api)
    assert types["fstore_http_requests_total"] == "counter"
    assert types["fstore_http_request_duration_seconds"] == "histogram"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fstore_http_requests_total", method="GET", route="/health", status="200") == 3
    assert delta("fstore_http_requests_total", method="GET",
                 route="/api/v1/feature-sets/{id}", status="404") == 1
    assert delta("fstore_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # Histograms add up: cumulative buckets, +Inf == _count == requests of the route.
    routes = {dict(labels)["route"] for (name, labels) in after
              if name == "fstore_http_request_duration_seconds_count"}
    assert "/health" in routes
    for route in routes:
        buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                          if name == "fstore_http_request_duration_seconds_bucket"
                          and dict(labels)["route"] == route and dict(labels)["method"] == "GET"))
        if not buckets:
            continue
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), route
        assert buckets[-1][0] == math.inf
        count = value(after, "fstore_http_request_duration_seconds_count", method="GET", route=route)
        assert buckets[-1][1] == count
        requests = sum(v for (name, labels), v in after.items()
                       if name == "fstore_http_requests_total" and dict(labels)["route"] == route
                       and dict(labels)["method"] == "GET")
        # The metrics request being answered is counted after it renders.
        assert requests == count, route


def expected_numeric(values):
    arr = np.array([v for v in values if v is not None], dtype=float)
    return arr


def test_statistics_match_numpy_and_drift_is_flagged(world):
    api = world["api"]
    fs = world["fs"]
    r = api.get("/monitoring/statistics", params={"days": 7, "feature_set": fs["name"]})
    assert r.status_code == 200, r.text
    body = r.json()
    stats = {f["feature"]: f for f in body["features"]}
    assert set(stats) == {"amount_f", "cat"}
    amount = stats["amount_f"]
    rows = world["first"] + world["second"]
    arr = expected_numeric([row[2] for row in rows])
    assert amount["runs"] == 2
    assert amount["count"] == len(rows)
    assert amount["null_count"] == sum(1 for row in rows if row[2] is None)
    assert amount["null_rate"] == pytest.approx(amount["null_count"] / len(rows))
    assert amount["min"] == pytest.approx(arr.min())
    assert amount["max"] == pytest.approx(arr.max())
    assert amount["mean"] == pytest.approx(arr.mean(), rel=1e-12)
    assert amount["stddev"] == pytest.approx(arr.std(ddof=1), rel=1e-9)
    assert abs(amount["distinct_estimate"] - len(set(arr))) <= 0.05 * len(set(arr))
    # Quantiles and histogram: of the latest run.
    latest = expected_numeric([row[2] for row in world["second"]])
    for name, q in [("p01", 1), ("p25", 25), ("p50", 50), ("p95", 95), ("p99", 99)]:
        assert amount["quantiles"][name] == pytest.approx(np.percentile(latest, q)), name
    counts, edges = np.histogram(latest, bins=10)
    assert amount["histogram"]["counts"] == counts.tolist()
    assert amount["histogram"]["edges"] == pytest.approx(edges.tolist())
    assert amount["latest_job_id"] == world["jobs"][1]["id"]
    # The second batch is shifted by 4 standard deviations: drifted.
    assert amount["drift"]["previous_job_id"] == world["jobs"][0]["id"]
    assert amount["drift"]["psi"] > 0.2 and amount["drift"]["drifted"] is True

    cat = stats["cat"]
    assert cat["type"] == "categorical" and cat["count"] == len(rows) and cat["null_count"] == 0
    assert cat["distinct_estimate"] == 4
    assert cat["top_values"][0] == {"value": "c", "count": 150}
    assert cat["drift"]["drifted"] is True
    # A threshold above the psi: not flagged.
    r = api.get("/monitoring/statistics",
                params={"feature_set": fs["name"], "psi_threshold": 1e9})
    assert all(not f["drift"]["drifted"] for f in r.json()["features"])


def test_statistics_of_an_identical_rerun_do_not_drift(world, tmp_path):
    api = world["api"]
    rows = batch(DAY1, 100, 0, 5)
    src = tmp_path / "same.parquet"
    write_source(src, rows)
    fs = define(api, src)
    materialize(api, fs, DAY1, DAY2)
    materialize(api, fs, DAY1, DAY2)  # the same rows again
    r = api.get("/monitoring/statistics", params={"feature_set": fs["name"]})
    amount = {f["feature"]: f for f in r.json()["features"]}["amount_f"]
    assert amount["runs"] == 2 and amount["count"] == 200
    assert amount["drift"]["psi"] == pytest.approx(0, abs=1e-12)
    assert amount["drift"]["drifted"] is False


def test_data_freshness_of_fresh_and_stale_sets(world, tmp_path):
    api = world["api"]
    now = dt.datetime.now(UTC).replace(microsecond=0)
    fresh_rows = [("u1", now - dt.timedelta(minutes=30), 1.0, "a"),
                  ("u2", now - dt.timedelta(minutes=20), 2.0, "b")]
    stale_rows = [("u1", now - dt.timedelta(days=5), 1.0, "a"),
                  ("u2", now - dt.timedelta(days=4, hours=1), 2.0, "b")]
    write_source(tmp_path / "fresh.parquet", fresh_rows)
    write_source(tmp_path / "stale.parquet", stale_rows)
    fresh = define(api, tmp_path / "fresh.parquet", materialization_schedule="0 * * * *")
    stale = define(api, tmp_path / "stale.parquet", materialization_schedule="0 * * * *")
    unscheduled = define(api, tmp_path / "stale.parquet")
    fresh_job = materialize(api, fresh, now - dt.timedelta(days=1), now)
    materialize(api, stale, now - dt.timedelta(days=6), now)
    materialize(api, unscheduled, now - dt.timedelta(days=6), now)

    r = api.get("/monitoring/data-freshness")
    assert r.status_code == 200, r.text
    sets = {s["feature_set"]: s for s in r.json()["feature_sets"]}
    f = sets[fresh["name"]]
    newest = iso(fresh_rows[1][1]) + "Z"
    assert f["offline"]["newest_event_time"] == newest
    assert f["online"]["newest_event_time"] == newest
    assert 20 * 60 <= f["age_seconds"] < 20 * 60 + 600
    assert f["expected_interval_seconds"] == 3600
    assert f["stale_after_seconds"] == 7200
    assert f["stale"] is False
    # The scheduler may add a run of its own at the top of the hour: ours or a later one.
    jobs = api.get(f"/api/v1/feature-sets/{fresh['name']}/materialization-jobs").json()["jobs"]
    succeeded = [j for j in jobs if j["status"] == "succeeded"]
    assert fresh_job["id"] in [j["id"] for j in succeeded]
    assert f["last_successful_run"]["job_id"] == max(
        succeeded, key=lambda j: j["finished_at"])["id"]
    assert f["watermark"] >= iso(now) + "Z"

    s = sets[stale["name"]]
    assert s["offline"]["newest_event_time"] == iso(stale_rows[1][1]) + "Z"
    assert s["stale"] is True and "two schedule intervals" in s["reason"]
    u = sets[unscheduled["name"]]
    assert u["stale"] is False and u["stale_after_seconds"] is None

    one = api.get("/monitoring/data-freshness", params={"feature_set": stale["name"]}).json()
    assert [x["feature_set"] for x in one["feature_sets"]] == [stale["name"]]


def test_usage_after_a_known_sequence(fresh_api, tmp_path):
    api = fresh_api
    rows = batch(DAY1, 50, 0, 9)  # users u0..u6
    src = tmp_path / "events.parquet"
    write_source(src, rows)
    fs = define(api, src)
    materialize(api, fs, DAY1, DAY2)
    name = fs["name"]
    user = "user"

    def online(entities, features):
        r = api.post("/api/v1/serving/online", {"feature_sets": [name],
                                                "entities": {user: entities},
                                                "features": features})
        assert r.status_code == 200, r.text

    online(["u1", "u2", "nobody"], ["amount_f"])      # 3 asked, 2 found
    online(["u1"], ["amount_f", "cat"])
    online(["u3"], ["amount_f", "cat"])
    r = api.post("/api/v1/serving/historical", {
        "feature_sets": [name], "features": ["amount_f"],
        "entity_df": {"columns": ["user_id", "event_timestamp"],
                      "data": [["u1", iso(DAY2)], ["u2", iso(DAY2)], ["u9", iso(DAY2)],
                               ["u1", iso(DAY1)]]}})
    assert r.status_code == 200, r.text
    entities = tmp_path / "entities.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([f"u{i}" for i in range(5)], pa.string()),
        "event_timestamp": pa.array([DAY2] * 5, pa.timestamp("us", tz="UTC"))}), entities)
    r = api.post("/api/v1/serving/batch", {
        "feature_sets": [name], "features": ["cat"],
        "entity_source": {"path": str(entities), "format": "parquet"},
        "output": {"path": str(tmp_path / "out.parquet")}, "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    # A failed request is not usage.
    r = api.post("/api/v1/serving/online", {"feature_sets": [name], "entities": {user: ["u1"]},
                                            "features": ["nope"]})
    assert r.status_code == 400

    today = dt.datetime.now(UTC).date().isoformat()
    r = api.get("/monitoring/usage", params={"start_date": today})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["start_date"] == today
    assert [d["date"] for d in body["days"]] == [today]
    day = body["days"][0]
    assert day["requests"] == 5
    assert day["api_keys"] == {"anonymous": 5}
    assert day["features"] == {f"{name}:amount_f": 4, f"{name}:cat": 3}
    s = day["feature_sets"][name]
    assert s["requests"] == 5
    assert s["entities_requested"] == 3 + 1 + 1 + 4 + 5
    assert s["online_entities_requested"] == 5
    assert s["entities_found"] == 4
    assert s["coverage"] == pytest.approx(0.8)
    assert body["totals"]["features"] == day["features"]

    # Filters and an empty period.
    other = api.get("/monitoring/usage", params={"start_date": today,
                                                 "feature_set": "other"}).json()
    assert other["days"] == [] and other["totals"]["requests"] == 0
    past = api.get("/monitoring/usage", params={"start_date": "2020-01-01",
                                                "end_date": "2020-01-31"}).json()
    assert past["days"] == []

    # The online coverage counters.
    samples, _ = metrics(api)
    assert value(samples, "fstore_serving_entities_requested_total") == 5
    assert value(samples, "fstore_serving_entities_found_total") == 4
    assert value(samples, "fstore_online_store_read_duration_seconds_count") == 3


def test_serving_cache_hits_are_counted(start_server, tmp_path):
    srv = start_server(env={"SERVING_CACHE_ENABLED": "true"})
    api = Api(srv)
    rows = batch(DAY1, 20, 0, 3)
    src = tmp_path / "events.parquet"
    write_source(src, rows)
    fs = define(api, src)
    materialize(api, fs, DAY1, DAY2)
    body = {"feature_sets": [fs["name"]], "entities": {"user": ["u1", "u2"]},
            "features": ["amount_f"]}
    for _ in range(3):
        assert api.post("/api/v1/serving/online", body).status_code == 200
    samples, _ = metrics(api)
    hits = value(samples, "fstore_serving_cache_hits_total")
    misses = value(samples, "fstore_serving_cache_misses_total")
    assert hits + misses == 6
    assert hits >= 2 and misses >= 2


@pytest.mark.parametrize("path,params,field", [
    ("/monitoring/statistics", {"days": "0"}, "days"),
    ("/monitoring/statistics", {"days": "366"}, "days"),
    ("/monitoring/statistics", {"days": "seven"}, "days"),
    ("/monitoring/statistics", {"psi_threshold": "-1"}, "psi_threshold"),
    ("/monitoring/statistics", {"psi_threshold": "high"}, "psi_threshold"),
    ("/monitoring/statistics", {"bogus": "1"}, "bogus"),
    ("/monitoring/usage", {"start_date": "2026-13-01"}, "start_date"),
    ("/monitoring/usage", {"start_date": "2026-02-30"}, "start_date"),
    ("/monitoring/usage", {"start_date": "yesterday"}, "start_date"),
    ("/monitoring/usage", {"end_date": "2026-1-1"}, "end_date"),
    ("/monitoring/usage", {"start_date": "2026-03-02", "end_date": "2026-03-01"}, "end_date"),
    ("/monitoring/usage", {"limit": "1"}, "limit"),
    ("/monitoring/data-freshness", {"x": "1"}, "x"),
    ("/monitoring/metrics", {"format": "json"}, "format"),
])
def test_bad_parameters(api, path, params, field):
    r = api.get(path, params=params)
    err = assert_error(r, 400, "invalid_argument", field)
    assert err["message"]


def test_unknown_feature_set_is_404(api):
    for path in ("/monitoring/statistics", "/monitoring/data-freshness"):
        r = api.get(path, params={"feature_set": "no_such_set"})
        assert r.status_code == 404, (path, r.text)


def test_statistics_are_sealed_under_encryption_at_rest(start_server, tmp_path):
    data = tmp_path / "data"
    srv = start_server(env={"FSTORE_ENCRYPTION_KEY": "ab" * 32}, data_dir=data)
    api = Api(srv)
    rows = batch(DAY1, 40, 0, 4)
    src = tmp_path / "events.parquet"
    write_source(src, rows)
    fs = define(api, src)
    materialize(api, fs, DAY1, DAY2)
    r = api.get("/monitoring/statistics", params={"feature_set": fs["name"]})
    assert r.status_code == 200, r.text
    stats = {f["feature"]: f for f in r.json()["features"]}
    arr = expected_numeric([row[2] for row in rows])
    assert stats["amount_f"]["count"] == 40
    assert stats["amount_f"]["mean"] == pytest.approx(arr.mean())
    assert stats["cat"]["top_values"][0] == {"value": "a", "count": 20}
    # The registry holds no statistics body in clear.
    files = sorted(data.glob("registry.db*"))  # the database and its WAL
    registry = b"".join(f.read_bytes() for f in files)
    assert fs["name"].encode() in registry  # the definitions are there, in clear
    assert b'"top_values"' not in registry and b'"quantiles"' not in registry


def test_statistics_and_usage_on_a_postgres_registry(start_server, tmp_path):
    """The same records through the PostgreSQL registry (a real server)."""
    from backends import Postgres
    pg = Postgres(tmp_path / "pg")
    try:
        srv = start_server(env={"DATABASE_URL": pg.create_database("monitoring")})
        api = Api(srv)
        first, second = batch(DAY1, 60, 0, 6), batch(DAY2, 60, 40, 7)
        src = tmp_path / "events.parquet"
        write_source(src, first + second)
        fs = define(api, src)
        materialize(api, fs, DAY1, DAY2)
        materialize(api, fs, DAY2, DAY3)
        stats = {f["feature"]: f for f in api.get(
            "/monitoring/statistics", params={"feature_set": fs["name"]}).json()["features"]}
        arr = expected_numeric([row[2] for row in first + second])
        assert stats["amount_f"]["runs"] == 2 and stats["amount_f"]["count"] == 120
        assert stats["amount_f"]["stddev"] == pytest.approx(arr.std(ddof=1), rel=1e-9)
        assert stats["amount_f"]["drift"]["drifted"] is True
        body = {"feature_sets": [fs["name"]], "entities": {"user": ["u1", "zz"]},
                "features": ["amount_f"]}
        for _ in range(2):
            assert api.post("/api/v1/serving/online", body).status_code == 200
        usage = api.get("/monitoring/usage").json()
        s = usage["totals"]["feature_sets"][fs["name"]]
        assert s["requests"] == 2 and s["entities_requested"] == 4 and s["coverage"] == 0.5
        fresh = api.get("/monitoring/data-freshness", params={"feature_set": fs["name"]}).json()
        newest = max(r[1] for r in second)
        assert fresh["feature_sets"][0]["offline"]["newest_event_time"] == iso(newest) + "Z"
        assert srv.stop() == 0, srv.output()
    finally:
        pg.close()
