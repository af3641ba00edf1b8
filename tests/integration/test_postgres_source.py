"""PostgreSQL as a feature set source, over HTTP against a real PostgreSQL:
definitions (query and table forms, every refusal naming its field),
materialization into the offline and online stores, historical retrieval
(windows included) and pushdown of row transformations giving the same values
as the embedded engine."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from backends import Postgres
from conftest import Api, assert_error, uniq

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, tzinfo=UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    server = Postgres(tmp_path_factory.mktemp("pgsrc"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def events(pg):
    """A table of 600 events of 20 users over 3 days (amount NULL now and then)."""
    rng = random.Random(3)
    rows = []
    for i in range(600):
        user = f"u{rng.randrange(20):02d}"
        t = T0 + dt.timedelta(seconds=rng.randrange(3 * 86400), microseconds=rng.randrange(10**6))
        amount = None if i % 37 == 0 else round(rng.uniform(-50, 150), 2)
        rows.append((user, t, amount))
    table = uniq("events")
    values = ",".join(
        f"('{u}', '{iso(t)}', {'NULL' if a is None else a})" for u, t, a in rows)
    pg.psql(f"CREATE TABLE {table} (user_id text, event_timestamp timestamptz, "
            f"amount double precision); INSERT INTO {table} VALUES {values};")
    return {"table": table, "rows": rows}


def define(api: Api, pg: Postgres, events, pushdown: bool, form: str = "table"):
    source = {"type": "postgres", "connection": pg.url(), "pushdown": pushdown}
    if form == "table":
        source["table"] = events["table"]
    else:
        source["query"] = f"SELECT user_id, event_timestamp, amount FROM {events['table']}"
    fs = api.create_feature_set(name=uniq("pg_fs"), entities=["user"], source=source)
    api.create_feature(fs["id"], name="amount", data_type="float")
    api.create_feature(fs["id"], name="bucket", data_type="string",
                       transformation="CASE WHEN amount > 100 THEN 'high' "
                                      "WHEN amount < 0 THEN 'neg' ELSE 'mid' END")
    api.create_feature(fs["id"], name="cents", data_type="int",
                       transformation="COALESCE(ROUND(amount * 100), -1)")
    api.create_feature(fs["id"], name="hour", data_type="int",
                       transformation="EXTRACT(HOUR FROM event_timestamp)")
    api.create_feature(fs["id"], name="n_12h", data_type="int", window_size="12h",
                       transformation="COUNT(*)")
    return fs


def materialize(api: Api, name: str):
    r = api.post(f"/api/v1/feature-sets/{name}/materialize",
                 {"start_date": iso(T0), "end_date": iso(T0 + dt.timedelta(days=3)),
                  "wait": True})
    assert r.status_code == 200, r.text
    return r.json()


def entity_df(events, n=200):
    rng = random.Random(9)
    return [(f"u{rng.randrange(22):02d}",
             T0 + dt.timedelta(seconds=rng.randrange(3 * 86400 + 3600))) for _ in range(n)]


def historical(api: Api, name: str, erows):
    r = api.post("/api/v1/serving/historical", {
        "feature_sets": [name], "features": ["amount", "bucket", "cents", "hour", "n_12h"],
        "entity_df": {"columns": ["user_id", "event_timestamp"],
                      "data": [[u, iso(t)] for u, t in erows]}})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def expected(rows, user, t):
    mine = [r for r in rows if r[0] == user and r[1] <= t]
    n = sum(1 for r in mine if r[1] >= t - dt.timedelta(hours=12))
    if not mine:  # no live row: the window is null too, as online
        return [None, None, None, None, None]
    _, et, a = max(mine, key=lambda r: r[1])
    # SQL: NULL > 100 and NULL < 0 are not true, so a NULL amount is 'mid'.
    bucket = "mid" if a is None else ("high" if a > 100 else "neg" if a < 0 else "mid")
    cents = -1 if a is None else int(round(a * 100))
    return [a, bucket, cents, et.hour, n]


@pytest.mark.parametrize("pushdown", [False, True])
def test_materialize_and_serve_from_a_postgres_table(api, pg, events, pushdown):
    fs = define(api, pg, events, pushdown)
    got = api.get(f"/api/v1/feature-sets/{fs['id']}").json()
    assert got["source"]["pushdown"] is pushdown and got["source"]["table"] == events["table"]
    job = materialize(api, fs["name"])
    assert job["status"] == "succeeded", job
    assert job["rows_read"] == len(events["rows"])
    erows = entity_df(events)
    data = historical(api, fs["name"], erows)
    for (u, t), row in zip(erows, data):
        want = expected(events["rows"], u, t)
        # amount * 100 is inexact in binary; Python's round may fall on the
        # other side of a .5 than the engine's: cents may differ by one.
        assert row[2:4] == want[0:2] and row[5:] == want[3:], (u, t, row, want)
        assert row[4] == want[2] or abs(row[4] - want[2]) <= 1, (u, t, row, want)
    r = api.post("/api/v1/serving/online", {"feature_sets": [fs["name"]],
                                            "entities": {"user": ["u01", "u02"]},
                                            "features": ["amount", "bucket"]})
    assert r.status_code == 200, r.text
    end = T0 + dt.timedelta(days=3)
    for u in ("u01", "u02"):
        want = expected(events["rows"], u, end)
        assert r.json()["features"][u] == {"amount": want[0], "bucket": want[1]}


def test_pushdown_gives_the_engines_values_and_query_form_the_tables(api, pg, events):
    plain = define(api, pg, events, pushdown=False)
    pushed = define(api, pg, events, pushdown=True, form="query")
    for fs in (plain, pushed):
        assert materialize(api, fs["name"])["status"] == "succeeded"
    erows = entity_df(events, n=300)
    assert historical(api, plain["name"], erows) == historical(api, pushed["name"], erows)


def good_source(pg, events, **over):
    s = {"type": "postgres", "connection": pg.url(), "table": events["table"]}
    s.update(over)
    return {k: v for k, v in s.items() if v is not None}


BAD_SOURCES = [
    ("no-connection", {"connection": None}, 400, "invalid_argument", "source.connection"),
    ("mysql-url", {"connection": "mysql://x@127.0.0.1/db"}, 400, "invalid_argument",
     "source.connection"),
    ("query-and-table", {"query": "SELECT 1"}, 400, "invalid_argument", "source"),
    ("neither", {"table": None}, 400, "invalid_argument", "source"),
    ("delete", {"table": None, "query": "DELETE FROM t"}, 400, "invalid_argument",
     "source.query"),
    ("two-statements", {"table": None, "query": "SELECT 1; SELECT 2"}, 400,
     "invalid_argument", "source.query"),
    ("syntax", {"table": None, "query": "SELEC user_id FROM t"}, 400, "invalid_argument",
     "source.query"),
    ("bad-table-name", {"table": "a b"}, 400, "invalid_argument", "source.table"),
    ("unknown-field", {"dsn": "x"}, 400, "invalid_argument", "source.dsn"),
    ("pushdown-not-bool", {"pushdown": "yes"}, 400, "invalid_argument", "source.pushdown"),
    ("missing-table", {"table": "no_such_table_here"}, 422, "unprocessable", "source.table"),
]


@pytest.mark.parametrize("case, over, status, code, field", BAD_SOURCES,
                         ids=[c[0] for c in BAD_SOURCES])
def test_bad_postgres_sources_are_refused(api, pg, events, case, over, status, code, field):
    name = uniq("bad_pg")
    r = api.post("/api/v1/feature-sets", {"name": name, "entities": ["user"],
                                          "source": good_source(pg, events, **over)})
    assert_error(r, status, code, field)
    assert api.get(f"/api/v1/feature-sets/{name}").status_code == 404


def test_pushdown_on_a_file_source_is_refused(api, tmp_path):
    r = api.post("/api/v1/feature-sets", {
        "name": uniq("bad_pg"), "entities": ["user"],
        "source": {"type": "file", "path": str(tmp_path / "x.parquet"), "pushdown": True}})
    assert_error(r, 400, "invalid_argument", "source.pushdown")


def test_unknown_column_in_a_feature_is_refused(api, pg, events):
    fs = api.create_feature_set(name=uniq("pg_fs"), entities=["user"],
                                source=good_source(pg, events))
    r = api.post("/api/v1/features", {"name": "x", "feature_set_id": fs["id"],
                                      "data_type": "float", "transformation": "no_such * 2"})
    assert_error(r, 422, "unprocessable", "transformation")


def test_unreachable_server_is_accepted_at_definition_and_503_at_materialize(api):
    fs = api.create_feature_set(name=uniq("pg_fs"), entities=["user"], source={
        "type": "postgres", "connection": "postgresql://reader:hunter2@127.0.0.1:1/db",
        "table": "events"})
    api.create_feature(fs["id"], name="amount", data_type="float")
    r = api.post(f"/api/v1/feature-sets/{fs['name']}/materialize",
                 {"start_date": iso(T0), "end_date": iso(T0 + dt.timedelta(days=1)),
                  "wait": True})
    assert_error(r, 503, "unavailable")
    assert "hunter2" not in r.text
