"""Faults in the production backends, with real servers: Redis killed and
restarted while serving, PostgreSQL restarted under the registry, the S3
server stopped in the middle of a materialization. While a dependency is down
the server answers 503 (never hangs) and /health stays up while /ready says
which one is down; it recovers without a restart, and no materialized data is
lost or duplicated: re-running the job finishes it.

The S3 server "stops" with SIGSTOP: it keeps its connections and objects (moto
holds them in memory) but answers nothing, the nastiest way for a server to
go away; SIGCONT brings it back.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backends import Postgres, Redis, S3Server
from conftest import Api, assert_error, uniq, wait_until
from test_backends import (DAYS, T0, committed_offline_files, define, expected_at, iso,
                           materialize, online, s3_fs, source_rows, write_source)

# A request must come back well before this (the server's own deadlines are
# far shorter); a hang fails the test instead of blocking the suite.
CLIENT_TIMEOUT = 20


def post(api: Api, path: str, body):
    return api.session.post(api.base + path, json=body, timeout=CLIENT_TIMEOUT)


def get(api: Api, path: str):
    return api.session.get(api.base + path, timeout=CLIENT_TIMEOUT)


def test_redis_killed_and_restarted_while_serving(start_server, tmp_path):
    redis = Redis(tmp_path)
    try:
        api = Api(start_server(env={"REDIS_URL": redis.url}))
        rows = source_rows(seed=21)
        name = define(api, write_source(tmp_path / "src.parquet", rows))
        assert materialize(api, name)["status"] == "succeeded"
        end = T0 + dt.timedelta(days=DAYS)
        want = online(api, name, ["u001", "u002"])["features"]
        assert want["u001"]["amount"] == expected_at(rows, "u001", end)[0]

        redis.kill()
        body = {"feature_sets": [name], "entities": {"user": ["u001", "u002"]},
                "features": ["amount", "amount_x2", "n_1d"]}
        for _ in range(3):  # every request fails fast, none hangs
            assert_error(post(api, "/api/v1/serving/online", body), 503, "unavailable")
        assert get(api, "/health").status_code == 200
        r = get(api, "/ready")
        assert r.status_code == 503 and "redis" in r.text.lower(), r.text
        # Definitions do not need Redis.
        assert get(api, f"/api/v1/feature-sets/{name}").status_code == 200

        redis.start()  # same port, same append-only file
        assert wait_until(lambda: post(api, "/api/v1/serving/online", body).status_code == 200,
                          timeout=15)
        assert online(api, name, ["u001", "u002"])["features"] == want
        assert get(api, "/ready").status_code == 200
    finally:
        redis.close()


def test_materialization_into_a_down_redis_fails_and_a_rerun_completes(start_server, tmp_path):
    redis = Redis(tmp_path)
    try:
        api = Api(start_server(env={"REDIS_URL": redis.url}))
        rows = source_rows(seed=22)
        name = define(api, write_source(tmp_path / "src.parquet", rows))
        redis.kill()
        job = materialize(api, name)
        assert job["status"] == "failed", job
        assert job["error"], job
        redis.start()
        assert wait_until(lambda: get(api, "/ready").status_code == 200, timeout=15)
        job = materialize(api, name)
        assert job["status"] == "succeeded", json.dumps(job)
        end = T0 + dt.timedelta(days=DAYS)
        got = online(api, name, ["u003"])["features"]["u003"]
        assert got["amount"] == expected_at(rows, "u003", end)[0]
    finally:
        redis.close()


def test_postgres_restarted_under_the_registry(start_server, tmp_path):
    pg = Postgres(tmp_path)
    try:
        api = Api(start_server(env={"DATABASE_URL": pg.url()}))
        rows = source_rows(seed=23)
        name = define(api, write_source(tmp_path / "src.parquet", rows))
        assert materialize(api, name)["status"] == "succeeded"
        served = online(api, name, ["u004"])

        pg.stop()
        assert_error(get(api, "/api/v1/feature-sets"), 503, "unavailable")
        assert_error(post(api, "/api/v1/entities", {"name": uniq("ent")}), 503, "unavailable")
        assert get(api, "/health").status_code == 200
        assert get(api, "/ready").status_code == 503
        # Online serving keeps answering from its in-memory snapshot.
        assert online(api, name, ["u004"]) ["features"] == served["features"]

        pg.start()
        assert wait_until(lambda: get(api, "/api/v1/feature-sets").status_code == 200,
                          timeout=15)
        assert get(api, "/ready").status_code == 200
        ent = uniq("ent")
        r = post(api, "/api/v1/entities", {"name": ent})
        assert r.status_code == 201, r.text
        names = [s["name"] for s in get(api, "/api/v1/feature-sets").json()["feature_sets"]]
        assert name in names
    finally:
        pg.close()


def test_s3_stopped_in_the_middle_of_a_materialization(start_server, tmp_path):
    s3 = S3Server(tmp_path)
    try:
        bucket = "fstore-" + uniq("fault").replace("_", "-")
        api = Api(start_server(env=s3.env(bucket)))
        # Many small days, so that the job writes many date partitions.
        days = 40
        rows = [(f"u{i % 30:03d}", T0 + dt.timedelta(hours=7 * i), float(i))
                for i in range(days * 24 // 7)]
        name = define(api, write_source(tmp_path / "src.parquet", rows))
        r = api.post(f"/api/v1/feature-sets/{name}/materialize",
                     {"start_date": iso(T0), "end_date": iso(T0 + dt.timedelta(days=days))})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        # Stop the S3 server once the first data file is in the bucket.
        assert wait_until(lambda: any(k.endswith(".parquet") for k in s3.keys(bucket, name + "/")),
                          timeout=60, interval=0.01)
        s3.pause()
        try:
            def job():
                return get(api, f"/api/v1/materialization-jobs/{job_id}").json()
            assert wait_until(lambda: job()["status"] in ("failed", "succeeded"), timeout=120)
            j = job()
            assert j["status"] == "failed", j
            assert j["error"], j
            assert get(api, "/health").status_code == 200
            assert get(api, "/ready").status_code == 503
        finally:
            s3.resume()
        assert wait_until(lambda: get(api, "/ready").status_code == 200, timeout=30)

        # What the failed run committed is whole: every committed file reads.
        for f in committed_offline_files(s3, bucket, name):
            pq.read_table(f, filesystem=s3_fs(s3))

        rerun = materialize(api, name, start_date=iso(T0),
                            end_date=iso(T0 + dt.timedelta(days=days)))
        assert rerun["status"] == "succeeded", rerun
        files = committed_offline_files(s3, bucket, name)
        offline = pa.concat_tables([pq.read_table(f, filesystem=s3_fs(s3)) for f in files])
        got = sorted(zip(offline.column("user_id").to_pylist(),
                         offline.column("amount").to_pylist()))
        assert got == sorted((u, a) for u, _, a in rows)  # nothing lost, nothing twice
    finally:
        s3.close()
