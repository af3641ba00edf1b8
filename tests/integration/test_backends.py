"""The production backends end to end, against real servers started here on
127.0.0.1 (tests/integration/backends.py): the same flow -- define,
materialize, serve online, historical retrieval, batch serving -- on

  * everything embedded (SQLite, RocksDB, local Parquet),
  * PostgreSQL registry + Redis + S3 offline store,
  * PostgreSQL registry + Redis Cluster (3 masters) + S3 offline store,

and each configuration must give exactly the answers Python computes from the
source rows (hence the same answers as each other). Also: two `fstore serve`
replicas sharing one PostgreSQL registry see each other's changes.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import random

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from backends import Postgres, Redis, RedisCluster, S3Server
from conftest import Api, uniq, wait_until

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 4
USERS = 40
ARROW = {"Accept": "application/vnd.apache.arrow.stream"}


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    base = tmp_path_factory.mktemp("backends")
    made = []
    try:
        pg = Postgres(base); made.append(pg)
        redis = Redis(base); made.append(redis)
        cluster = RedisCluster(base); made.append(cluster)
        s3 = S3Server(base); made.append(s3)
        yield {"pg": pg, "redis": redis, "cluster": cluster, "s3": s3}
    finally:
        for m in reversed(made):
            m.close()


def config_env(name: str, infra, tag: str) -> dict:
    if name == "embedded":
        return {}
    env = {"DATABASE_URL": infra["pg"].create_database(f"reg_{tag}")}
    env.update(infra["s3"].env(f"fstore-{tag}".replace("_", "-")))
    env["REDIS_URL"] = infra["redis" if name == "postgres-redis-s3" else "cluster"].url
    return env


def source_rows(seed: int = 11):
    rng = random.Random(seed)
    rows = []
    for i in range(USERS * DAYS * 6):
        user = f"u{rng.randrange(USERS):03d}"
        t = T0 + dt.timedelta(microseconds=rng.randrange(DAYS * 86_400_000_000))
        rows.append((user, t, round(rng.uniform(0, 100), 2)))
    return rows


def write_source(path: pathlib.Path, rows) -> pathlib.Path:
    pq.write_table(pa.table({
        "user_id": pa.array([r[0] for r in rows]),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
    }), path)
    return path


def expected_at(rows, user: str, t: dt.datetime):
    """(amount, count of events in [t - 1 day, t]) as of t, point in time."""
    mine = [r for r in rows if r[0] == user and r[1] <= t]
    if not mine:
        return None, None
    latest = max(mine, key=lambda r: r[1])
    n = sum(1 for r in mine if r[1] >= t - dt.timedelta(days=1))
    return latest[2], n


def define(api: Api, source: pathlib.Path) -> str:
    fs = api.create_feature_set(name=uniq("purchases"), entities=["user"],
                                source={"type": "file", "path": str(source),
                                        "format": "parquet"})
    api.create_feature(fs["id"], name="amount", data_type="float")
    api.create_feature(fs["id"], name="amount_x2", data_type="float",
                       transformation="amount * 2")
    api.create_feature(fs["id"], name="n_1d", data_type="int", window_size="1d",
                       transformation="COUNT(*)")
    return fs["name"]


def materialize(api: Api, name: str, **body):
    body.setdefault("start_date", iso(T0))
    body.setdefault("end_date", iso(T0 + dt.timedelta(days=DAYS)))
    body["wait"] = True
    r = api.post(f"/api/v1/feature-sets/{name}/materialize", body)
    assert r.status_code == 200, r.text
    return r.json()


def entity_rows(seed: int = 5, n: int = 300):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = f"u{rng.randrange(USERS + 5):03d}"  # some unknown users
        t = T0 + dt.timedelta(microseconds=rng.randrange((DAYS + 1) * 86_400_000_000))
        out.append((user, t))
    return out


def historical(api: Api, name: str, rows):
    r = api.post("/api/v1/serving/historical", {
        "feature_sets": [name], "features": ["amount", "amount_x2", "n_1d"],
        "entity_df": {"columns": ["user_id", "event_timestamp"],
                      "data": [[u, iso(t)] for u, t in rows]}})
    assert r.status_code == 200, r.text
    return r.json()


def online(api: Api, name: str, users):
    r = api.post("/api/v1/serving/online", {
        "feature_sets": [name], "entities": {"user": users},
        "features": ["amount", "amount_x2", "n_1d"]})
    assert r.status_code == 200, r.text
    return r.json()


def s3_fs(s3: S3Server) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(access_key=s3.ACCESS_KEY, secret_key=s3.SECRET_KEY,
                             region=s3.REGION, endpoint_override=s3.endpoint,
                             scheme="http")


def committed_offline_files(s3: S3Server, bucket: str, fs_name: str) -> list[str]:
    """The data files the newest commit marker of each date partition lists."""
    best: dict[str, tuple[int, str]] = {}
    for key in s3.keys(bucket, f"{fs_name}/"):
        d, _, base = key.rpartition("/")
        if base.startswith("_generation-") and base.endswith(".json"):
            g = int(base.split("-")[1])
            if d not in best or g > best[d][0]:
                best[d] = (g, key)
    files = []
    client = s3.client()
    for d, (_, key) in sorted(best.items()):
        marker = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        files += [f"{bucket}/{d}/{f}" for f in marker["files"] if f.endswith(".parquet")]
    return files


@pytest.mark.parametrize("config", ["embedded", "postgres-redis-s3",
                                    "postgres-redis-cluster-s3"])
def test_end_to_end(config, infra, start_server, tmp_path):
    tag = uniq("e2e")
    env = config_env(config, infra, tag)
    srv = start_server(env=env)
    api = Api(srv)
    assert api.get("/ready").status_code == 200, api.get("/ready").text
    rows = source_rows()
    name = define(api, write_source(tmp_path / "src.parquet", rows))

    job = materialize(api, name)
    assert job["status"] == "succeeded", job
    assert job["rows_read"] == len(rows), job

    # Online: the latest values at the run's end, for every user.
    end = T0 + dt.timedelta(days=DAYS)
    users = [f"u{i:03d}" for i in range(USERS)] + ["nobody"]
    got = online(api, name, users)
    for u in users:
        amount, n = expected_at(rows, u, end)
        want = ({"amount": amount, "amount_x2": amount * 2, "n_1d": n} if amount is not None
                else {"amount": None, "amount_x2": None, "n_1d": None})
        assert got["features"][u] == want, u
    assert got["metadata"]["missing_entities"] == {name: ["nobody"]}

    # Historical: point in time at each entity row's time, in request order.
    erows = entity_rows()
    hist = historical(api, name, erows)
    assert hist["columns"] == ["user_id", "event_timestamp", "amount", "amount_x2", "n_1d"]
    assert len(hist["data"]) == len(erows)
    for (u, t), row in zip(erows, hist["data"]):
        amount, n = expected_at(rows, u, t)
        assert row[0] == u
        assert row[2] == amount and row[3] == (None if amount is None else amount * 2), (u, t)
        # A window with no events counts 0; before an entity's first event
        # (no live row) it is null, as online serves an entity it lacks.
        assert row[4] == n, (u, t, row)

    # Batch serving writes Parquet to the offline backend's kind of storage.
    entities = tmp_path / "entities.parquet"
    pq.write_table(pa.table({
        "user_id": [u for u, _ in erows],
        "event_timestamp": pa.array([t for _, t in erows], pa.timestamp("us", tz="UTC"))}),
        entities)
    if config == "embedded":
        out = str(tmp_path / "out" / "train.parquet")
    else:
        out = f"s3://{env['S3_BUCKET']}/exports/train.parquet"
    r = api.post("/api/v1/serving/batch", {
        "feature_sets": [name], "features": ["amount", "amount_x2", "n_1d"],
        "entity_source": {"path": str(entities)}, "output": {"path": out}, "wait": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded", r.json()
    if config == "embedded":
        table = pq.read_table(out)
    else:
        table = pq.read_table(out[len("s3://"):], filesystem=s3_fs(infra["s3"]))
    assert table.column("amount").to_pylist() == [row[2] for row in hist["data"]]
    assert table.column("n_1d").to_pylist() == [row[4] for row in hist["data"]]

    if config != "embedded":
        # The offline rows are in the bucket, in the documented layout, and
        # are exactly the source's (one per user and event time).
        files = committed_offline_files(infra["s3"], env["S3_BUCKET"], name)
        assert files and all("/v1/date=2024-03-0" in f for f in files), files
        offline = pa.concat_tables(
            [pq.read_table(f, filesystem=s3_fs(infra["s3"])) for f in files])
        got_rows = sorted(zip(offline.column("user_id").to_pylist(),
                              offline.column("amount").to_pylist()))
        assert got_rows == sorted((u, a) for u, _, a in rows)
        assert infra["pg"].psql("SELECT 1", db=f"reg_{tag}").strip() == "1"


def test_replicas_sharing_a_postgres_registry_see_each_others_changes(
        infra, start_server, tmp_path):
    tag = uniq("rep")
    env = config_env("postgres-redis-s3", infra, tag)
    a = Api(start_server(env=env))
    b = Api(start_server(env=env))
    rows = source_rows(seed=3)
    name = define(a, write_source(tmp_path / "src.parquet", rows))
    # B reads the definition A just wrote.
    r = b.get(f"/api/v1/feature-sets/{name}")
    assert r.status_code == 200, r.text
    assert sorted(f["name"] for f in r.json()["features"]) == ["amount", "amount_x2", "n_1d"]
    assert materialize(a, name)["status"] == "succeeded"
    # B serves it online once its snapshot has caught up (polled every second).
    assert wait_until(lambda: b.post("/api/v1/serving/online", {
        "feature_sets": [name], "entities": {"user": ["u001"]},
        "features": ["amount"]}).status_code == 200, timeout=10)
    amount, _ = expected_at(rows, "u001", T0 + dt.timedelta(days=DAYS))
    assert online(b, name, ["u001"])["features"]["u001"]["amount"] == amount
    # A change on B reaches A's served definitions: a new default for unknown users.
    fid = next(f["id"] for f in b.get(f"/api/v1/feature-sets/{name}").json()["features"]
               if f["name"] == "amount")
    assert b.patch(f"/api/v1/features/{fid}", {"default_value": -1.0}).status_code == 200
    assert wait_until(lambda: online(a, name, ["nobody"])["features"]["nobody"]["amount"] == -1.0,
                      timeout=10)


def test_a_materialization_by_one_replica_reaches_the_others_serving_cache(
        infra, start_server, tmp_path):
    """Two servers on one registry and one Redis, each with a serving cache: a
    materialization run by one reaches the other's answers within its poll
    (about a second), not after SERVING_CACHE_TTL (an hour here)."""
    tag = uniq("cache")
    env = config_env("postgres-redis-s3", infra, tag)
    env.update({"SERVING_CACHE_ENABLED": "true", "SERVING_CACHE_TTL": "3600"})
    a = Api(start_server(env=env))
    b = Api(start_server(env=env))
    rows = source_rows(seed=29)
    name = define(a, write_source(tmp_path / "src.parquet", rows))
    mid, end = T0 + dt.timedelta(days=DAYS // 2), T0 + dt.timedelta(days=DAYS)
    assert materialize(a, name, end_date=iso(mid))["status"] == "succeeded"
    # Users whose latest amount changes in the second half of the range.
    changed = sorted({u for u, _, _ in rows
                      if expected_at(rows, u, mid)[0] is not None
                      and expected_at(rows, u, mid)[0] != expected_at(rows, u, end)[0]})
    assert len(changed) >= 3, changed
    users = changed[:3]
    assert wait_until(lambda: b.post("/api/v1/serving/online", {
        "feature_sets": [name], "entities": {"user": users},
        "features": ["amount"]}).status_code == 200, timeout=10)
    first = online(b, name, users)
    assert [first["features"][u]["amount"] for u in users] == \
        [expected_at(rows, u, mid)[0] for u in users]
    assert online(b, name, users)["metadata"]["cache_hit"] is True

    assert materialize(a, name, start_date=iso(mid))["status"] == "succeeded"
    want = [expected_at(rows, u, end)[0] for u in users]
    assert wait_until(lambda: [online(b, name, users)["features"][u]["amount"]
                               for u in users] == want, timeout=10)
    # And B caches the new records again.
    assert online(b, name, users)["metadata"]["cache_hit"] is True


def test_servers_starting_at_once_on_a_new_postgres_registry_all_come_up(
        infra, fstore_bin, tmp_path):
    # Their migrations race on an empty database: an advisory lock orders
    # them, and every server ends ready on the same schema.
    import threading
    from conftest import FstoreServer, _stop_and_check
    url = infra["pg"].create_database(uniq("race"))
    servers, errors = [], []

    def start(i):
        try:
            servers.append(FstoreServer(tmp_path / f"d{i}", env={"DATABASE_URL": url}))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        for s in servers:
            assert Api(s).get("/ready").status_code == 200
        name = uniq("ent")
        assert Api(servers[0]).post("/api/v1/entities", {"name": name}).status_code == 201
        for s in servers[1:]:
            assert Api(s).get(f"/api/v1/entities/{name}").status_code == 200
        dbname = url.rsplit("/", 1)[1]
        # Each migration recorded once, none skipped.
        assert infra["pg"].psql("SELECT count(*) = count(DISTINCT version) AND "
                                "count(*) = max(version) FROM schema_migrations",
                                db=dbname).strip() == "t"
    finally:
        for s in servers:
            _stop_and_check(s)
