"""Historical (point-in-time) retrieval: POST /api/v1/serving/historical over
materialized feature sets, checked on randomized data against DuckDB (ASOF
JOIN for plain features, a RANGE window for windowed ones, evaluated at the
entity rows' times), the response shapes (JSON and Arrow IPC), the bad inputs,
and training-serving consistency with online serving."""

from __future__ import annotations

import datetime as dt
import math
import random

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import Api, assert_error, uniq

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
END = dt.datetime(2024, 1, 11, tzinfo=UTC)  # the materialization's [START, END)
HIST = "/api/v1/serving/historical"


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def make_events(seed=11, users=8, n=600):
    """(user, time, amount) with distinct (user, time) except deliberate
    exact duplicates; times carry microseconds so none lies on a whole second."""
    rnd = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        u = f"u{rnd.randrange(users)}"
        t = START + dt.timedelta(seconds=rnd.randrange(10 * 86400), microseconds=123)
        if (u, t) in seen:
            continue
        seen.add((u, t))
        a = None if rnd.random() < 0.07 else round(rnd.uniform(0, 100), 2)
        rows.append((u, t, a))
    rows += rows[:5]  # identical duplicates: peers in windows, one row offline
    return rows


def materialize(api: Api, name: str):
    r = api.post(f"/api/v1/feature-sets/{name}/materialize",
                 {"start_date": iso(START), "end_date": iso(END), "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    api = Api(server)
    d = tmp_path_factory.mktemp("hist-src")
    events = make_events()
    src = d / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([e[0] for e in events], pa.string()),
        "event_timestamp": pa.array([e[1] for e in events], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([e[2] for e in events], pa.float64()),
    }), src)
    source = {"type": "file", "path": str(src), "format": "parquet"}
    a = api.create_feature_set(name=uniq("hist_a"), entities=["user"], source=source)
    api.create_feature(a["id"], name="amount", data_type="float", default_value=-1.0)
    api.create_feature(a["id"], name="amount_x2", data_type="float", transformation="amount * 2")
    api.create_feature(a["id"], name="n_6h", data_type="int", window_size="6h",
                       transformation="COUNT(*)")
    api.create_feature(a["id"], name="spend_6h", data_type="float",
                       transformation="SUM(amount) OVER (PARTITION BY user_id ORDER BY "
                                      "event_timestamp RANGE BETWEEN INTERVAL '6 hours' "
                                      "PRECEDING AND CURRENT ROW)")
    b = api.create_feature_set(name=uniq("hist_b"), entities=["user"], source=source, ttl="12h")
    api.create_feature(b["id"], name="amount", data_type="float")
    api.create_feature(b["id"], name="plus_one", data_type="float", transformation="amount + 1")
    off = api.create_feature_set(name=uniq("hist_off"), entities=["user"], source=source,
                                 offline_enabled=False)
    api.create_feature(off["id"], name="amount", data_type="float")
    materialize(api, a["name"])
    materialize(api, b["name"])

    con = duckdb.connect()
    con.register("events_arrow", pa.table({
        "user_id": [e[0] for e in events],
        "ts": pa.array([e[1].replace(tzinfo=None) for e in events], pa.timestamp("us")),
        "amount": pa.array([e[2] for e in events], pa.float64()),
    }))
    # The offline store keeps one row per (entity, event time).
    con.execute("CREATE TABLE events AS SELECT DISTINCT * FROM events_arrow")
    con.execute("CREATE TABLE events_all AS SELECT * FROM events_arrow")
    return {"api": api, "a": a["name"], "b": b["name"], "off": off["name"], "events": events,
            "events_path": str(src),
            "con": con}


def random_entity_rows(world, seed=3, n=400):
    rnd = random.Random(seed)
    events = world["events"]
    rows = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.25:  # exactly at an event, or just before it
            u, t, _ = rnd.choice(events)
            t = t if rnd.random() < 0.5 else t - US
        else:
            u = f"u{rnd.randrange(10)}"  # u8, u9: unknown entities
            t = START - dt.timedelta(days=1) + dt.timedelta(
                microseconds=rnd.randrange(12 * 86400 * 10**6))
        rows.append([u, iso(t)])
    rows += rows[:7]  # duplicates are kept
    return rows


def duckdb_expected(world, rows):
    con = world["con"]
    con.execute("DROP TABLE IF EXISTS q")
    con.execute("CREATE TABLE q (idx INTEGER, user_id VARCHAR, t TIMESTAMP)")
    con.executemany("INSERT INTO q VALUES (?, ?, ?)",
                    [(i, u, parse(t).replace(tzinfo=None)) for i, (u, t) in enumerate(rows)])
    asof = con.execute("""
        SELECT q.idx, e.ts, e.amount FROM q ASOF LEFT JOIN events e
          ON q.user_id = e.user_id AND q.t >= e.ts ORDER BY q.idx""").fetchall()
    # Windows with PostgreSQL's RANGE frame, at the query times: the query
    # rows are put among the events (amount NULL, not counted) and read back.
    windows = con.execute("""
        WITH u AS (
          SELECT user_id, ts, amount, 1 AS is_event, NULL AS idx FROM events_all
          UNION ALL SELECT user_id, t, NULL, 0, idx FROM q),
        w AS (
          SELECT idx, is_event,
                 SUM(is_event) OVER r AS n, SUM(amount) OVER r AS spend
          FROM u WINDOW r AS (PARTITION BY user_id ORDER BY ts
                              RANGE BETWEEN INTERVAL 6 HOURS PRECEDING AND CURRENT ROW))
        SELECT idx, n, spend FROM w WHERE is_event = 0 ORDER BY idx""").fetchall()
    return asof, windows


def events_feature_set(world, prefix):
    """A new feature set (user entity) over the module's events file."""
    return world["api"].create_feature_set(
        name=uniq(prefix), entities=["user"],
        source={"type": "file", "path": world["events_path"], "format": "parquet"})


def post_hist(api, body, **kw):
    return api.post(HIST, body, **kw)


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_matches_duckdb_on_random_rows(world):
    rows = random_entity_rows(world)
    a, b = world["a"], world["b"]
    features = [f"{a}:amount", "amount_x2", "n_6h", "spend_6h", f"{b}:amount", "plus_one"]
    r = post_hist(world["api"], {"feature_sets": [a, b],
                                 "entity_df": {"columns": ["user_id", "event_timestamp"],
                                               "data": rows},
                                 "features": features})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["user_id", "event_timestamp", *features]
    assert len(body["data"]) == len(rows)
    asof, windows = duckdb_expected(world, rows)
    # The data exercise every case: no match, a match, one too old for the
    # ttl, empty and non-empty windows.
    ts_of = [parse(r[1] + "Z").replace(tzinfo=None) for r in rows]
    assert sum(e[1] is None for e in asof) > 10
    assert sum(e[1] is not None for e in asof) > 100
    assert sum(e[1] is not None and e[1] < t - dt.timedelta(hours=12)
               for e, t in zip(asof, ts_of)) > 10
    assert sum(w[1] > 1 for w in windows) > 10
    # Empty windows of entities with a live row (0), and without one (null).
    assert sum(w[1] == 0 and e[1] is not None for w, e in zip(windows, asof)) > 10
    assert sum(w[1] == 0 and e[1] is None for w, e in zip(windows, asof)) > 10
    for i, (row, got) in enumerate(zip(rows, body["data"])):
        assert got[0] == row[0]
        assert parse(got[1]) == parse(row[1] + "Z")
        t = parse(row[1] + "Z").replace(tzinfo=None)
        _, ev, amount = asof[i]
        if ev is None:
            want_a, want_x2 = -1.0, None  # default_value, else null
        else:
            want_a, want_x2 = amount, None if amount is None else amount * 2
        assert close(got[2], want_a), (i, row, got, asof[i])
        assert close(got[3], want_x2), (i, row, got, asof[i])
        _, n, spend = windows[i]
        if ev is None:  # no live row: null, as online serves an entity it lacks
            n = spend = None
        assert got[4] == n, (i, row, got, windows[i])
        assert close(got[5], spend), (i, row, got, windows[i])
        # Feature set b: ttl 12h, no default.
        fresh = ev is not None and ev >= t - dt.timedelta(hours=12)
        want_b = amount if fresh else None
        assert close(got[6], want_b), (i, row, got, asof[i])
        assert close(got[7], None if want_b is None else want_b + 1), (i, row, got)


def test_arrow_stream_response(world):
    rows = random_entity_rows(world, seed=9, n=50)
    body = {"feature_sets": [world["a"]],
            "entity_df": {"columns": ["user_id", "event_timestamp", "label"],
                          "data": [r + [i % 2 == 0] for i, r in enumerate(rows)]},
            "features": ["amount", "n_6h"]}
    js = post_hist(world["api"], body).json()
    r = post_hist(world["api"], body, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/vnd.apache.arrow.stream")
    table = ipc.open_stream(r.content).read_all()
    assert table.column_names == ["user_id", "event_timestamp", "label", "amount", "n_6h"]
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("n_6h").type == pa.int64()
    assert table.schema.field("label").type == pa.bool_()
    got = table.to_pylist()
    assert len(got) == len(js["data"])
    for rec, row in zip(got, js["data"]):
        assert rec["user_id"] == row[0]
        assert rec["event_timestamp"] == parse(row[1])
        assert rec["label"] == row[2]
        assert close(rec["amount"], row[3]) and rec["n_6h"] == row[4]


def test_seed_shape_timestamp_column_and_as_of(world):
    api, a = world["api"], world["a"]
    u, t, amount = world["events"][0]
    r = post_hist(api, {"feature_sets": [a],
                        "entity_df": {"columns": ["timestamp", "user_id"],
                                      "data": [[iso(t), u], [iso(t - US), u]]},
                        "features": ["amount"]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data[0] == [iso(t) + "Z", u, amount]
    # as_of before anything was materialized: nothing is visible.
    r = post_hist(api, {"feature_sets": [a], "as_of": "2000-01-01T00:00:00Z",
                        "entity_df": {"columns": ["user_id", "event_timestamp"],
                                      "data": [[u, iso(t)]]},
                        "features": ["amount", "n_6h"]})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0][2] == -1.0
    assert r.json()["data"][0][3] is None  # the window too: the store knew nothing
    assert r.text.endswith('Z",-1.0,null]]}'), r.text  # not Boost.JSON's -1E0
    # An empty entity_df gives an empty table.
    r = post_hist(api, {"feature_sets": [a], "entity_df": {"columns": ["user_id", "event_timestamp"],
                                                           "data": []},
                        "features": ["amount"]})
    assert r.status_code == 200 and r.json() == {"columns": ["user_id", "event_timestamp", "amount"],
                                                 "data": []}


def test_training_serving_consistency(world):
    """Historical at the materialization's end equals what online serves,
    also for the entities the store does not have (u8, u9)."""
    api, a = world["api"], world["a"]
    users = [f"u{i}" for i in range(10)]
    on = api.post("/api/v1/serving/online", {"feature_sets": [a], "entities": {"user": users},
                                             "features": ["amount", "amount_x2", "n_6h",
                                                          "spend_6h"]})
    if on.status_code == 501:
        pytest.skip("online serving is not built")
    assert on.status_code == 200, on.text
    online = on.json()["features"]
    hist = post_hist(api, {"feature_sets": [a],
                           "entity_df": {"columns": ["user_id", "event_timestamp"],
                                         "data": [[u, iso(END - US)] for u in users] +
                                                 [[u, iso(END)] for u in users]},
                           "features": ["amount", "amount_x2", "n_6h", "spend_6h"]}).json()
    for i, u in enumerate(users):
        before_end = hist["data"][i]
        at_end = hist["data"][len(users) + i]
        # At the job's end time (its range is [START, END), and no event lies
        # on END or END - 6h: times carry microseconds), and 1 us before it
        # for the plain features.
        assert close(at_end[2], online[u]["amount"]), (u, at_end, online[u])
        assert close(at_end[3], online[u]["amount_x2"]), (u, at_end, online[u])
        assert at_end[4] == online[u]["n_6h"], (u, at_end, online[u])
        assert close(at_end[5], online[u]["spend_6h"]), (u, at_end, online[u])
        assert close(before_end[2], online[u]["amount"]), (u, before_end, online[u])
        assert close(before_end[3], online[u]["amount_x2"]), (u, before_end, online[u])
    assert on.json()["metadata"]["missing_entities"] == {a: ["u8", "u9"]}
    assert online["u8"] == {"amount": -1.0, "amount_x2": None, "n_6h": None, "spend_6h": None}


def good_body(world, **overrides):
    body = {"feature_sets": [world["a"]],
            "entity_df": {"columns": ["user_id", "event_timestamp"],
                          "data": [["u1", "2024-01-05T00:00:00"]]},
            "features": ["amount"]}
    body.update(overrides)
    return body


# The last element is a text the error message must contain: the column,
# value or name at fault, or the rule broken.
BAD = [
    ("no-entity-df", lambda w: {k: v for k, v in good_body(w).items() if k != "entity_df"},
     400, "invalid_argument", "entity_df", "required"),
    ("entity-df-not-object", lambda w: good_body(w, entity_df=[["u1"]]),
     400, "invalid_argument", "entity_df", "object"),
    ("columns-not-list", lambda w: good_body(w, entity_df={"columns": "user_id", "data": []}),
     400, "invalid_argument", "entity_df.columns", "column names"),
    ("data-not-list", lambda w: good_body(w, entity_df={"columns": ["user_id", "event_timestamp"],
                                                        "data": {}}),
     400, "invalid_argument", "entity_df.data", "rows"),
    ("row-not-list", lambda w: good_body(w, entity_df={"columns": ["user_id", "event_timestamp"],
                                                       "data": ["u1"]}),
     400, "invalid_argument", "entity_df.data[0]", "array"),
    ("row-length", lambda w: good_body(w, entity_df={"columns": ["user_id", "event_timestamp"],
                                                     "data": [["u1", "2024-01-01", 3]]}),
     400, "invalid_argument", "entity_df.data[0]", "3 values"),
    ("missing-join-key", lambda w: good_body(w, entity_df={"columns": ["uid", "event_timestamp"],
                                                           "data": [["u1", "2024-01-01"]]}),
     400, "invalid_argument", "entity_df.columns", "'user_id'"),
    ("missing-timestamp", lambda w: good_body(w, entity_df={"columns": ["user_id", "ts"],
                                                            "data": [["u1", "2024-01-01"]]}),
     400, "invalid_argument", "entity_df.columns", "'event_timestamp'"),
    ("bad-timestamp", lambda w: good_body(w, entity_df={"columns": ["user_id", "event_timestamp"],
                                                        "data": [["u1", "2024-01-01"],
                                                                 ["u1", "2024-02-30T00:00:00"]]}),
     400, "invalid_argument", "entity_df.data[1][1] (event_timestamp)", "'2024-02-30T00:00:00'"),
    ("unknown-feature-set", lambda w: good_body(w, feature_sets=["nope_" + uniq()]),
     404, "not_found", None, "'nope_"),
    ("unknown-feature", lambda w: good_body(w, features=["nope"]),
     400, "invalid_argument", "features[0]", "'nope'"),
    ("ambiguous-feature", lambda w: good_body(w, feature_sets=[w["a"], w["b"]],
                                              features=["plus_one", "amount"]),
     400, "invalid_argument", "features[1]", "ambiguous feature 'amount'"),
    ("empty-feature-sets", lambda w: good_body(w, feature_sets=[]),
     400, "invalid_argument", "feature_sets", "at least one"),
    ("empty-features", lambda w: good_body(w, features=[]),
     400, "invalid_argument", "features", "at least one"),
    ("bad-as-of", lambda w: good_body(w, as_of="yesterday"),
     400, "invalid_argument", "as_of", "'yesterday'"),
    ("offline-disabled", lambda w: good_body(w, feature_sets=[w["off"]]),
     422, "unprocessable", "feature_sets", "offline_enabled false"),
    ("unknown-set-of-qualified-feature",
     lambda w: {k: v for k, v in good_body(w, features=["no_such_set:x"]).items()
                if k != "feature_sets"},
     400, "invalid_argument", "features[0]", "no_such_set"),
]


@pytest.mark.parametrize("name,make,status,code,field,says", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(world, name, make, status, code, field, says):
    r = post_hist(world["api"], make(world))
    err = assert_error(r, status, code, field)
    assert says in err["message"], err


def test_empty_body_is_a_400_naming_features(world):
    err = assert_error(post_hist(world["api"], {}), 400, "invalid_argument", "features")
    assert "required" in err["message"], err


def test_bad_body_is_refused(world):
    r = world["api"].session.post(world["api"].base + HIST, data="[1, 2",
                                  headers={"Content-Type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500


def test_clock_reading_feature_is_evaluated_at_each_row_time(world):
    api = world["api"]
    c = events_feature_set(world, "hist_clock")
    api.create_feature(c["id"], name="age_s", data_type="float",
                       transformation="EXTRACT(EPOCH FROM now() - event_timestamp)")
    api.create_feature(c["id"], name="amount_if_recent", data_type="float",
                       transformation="CASE WHEN event_timestamp > now() - INTERVAL '1 hour' "
                                      "THEN amount END")
    materialize(api, c["name"])
    rows = random_entity_rows(world, seed=21, n=120)
    r = post_hist(api, {"feature_sets": [c["name"]],
                        "entity_df": {"columns": ["user_id", "event_timestamp"], "data": rows},
                        "features": ["age_s", "amount_if_recent"]})
    assert r.status_code == 200, r.text
    asof, _ = duckdb_expected(world, rows)
    for row, got, (_, ev, amount) in zip(rows, r.json()["data"], asof):
        t = parse(row[1] + "Z").replace(tzinfo=None)
        if ev is None:
            assert got[2] is None and got[3] is None, (row, got)
            continue
        assert close(got[2], (t - ev).total_seconds()), (row, got, ev)
        recent = ev > t - dt.timedelta(hours=1)
        assert close(got[3], amount if recent else None), (row, got, ev)


def _entity_table(rows, label=True):
    cols = {"user_id": pa.array([r[0] for r in rows], pa.string()),
            "event_timestamp": pa.array([parse(r[1]) for r in rows], pa.timestamp("us", tz="UTC"))}
    if label:
        cols["label"] = pa.array([i % 3 for i in range(len(rows))], pa.int64())
    return pa.table(cols)


def _ipc_bytes(table):
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _parquet_bytes(table):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_entity_rows_as_arrow_or_parquet_body(world):
    """An entity_df may be sent as an Arrow IPC stream or a Parquet body (the
    features in the query string): the same answer as the JSON form."""
    api = world["api"]
    rows = random_entity_rows(world, seed=21, n=120)
    js = post_hist(api, {"feature_sets": [world["a"], world["b"]],
                         "entity_df": {"columns": ["user_id", "event_timestamp", "label"],
                                       "data": [r + [i % 3] for i, r in enumerate(rows)]},
                         "features": [f"{world['a']}:amount", "n_6h", "plus_one"]}).json()
    table = _entity_table(rows)
    query = {"feature_sets": f"{world['a']},{world['b']}",
             "features": f"{world['a']}:amount,n_6h,plus_one"}
    for ctype, payload in (("application/vnd.apache.arrow.stream", _ipc_bytes(table)),
                           ("application/vnd.apache.parquet", _parquet_bytes(table))):
        r = api.session.post(api.base + "/api/v1/serving/historical", params=query,
                             data=payload, headers={"Content-Type": ctype}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["columns"] == js["columns"]
        assert len(got["data"]) == len(js["data"]) == len(rows)
        for a, b in zip(got["data"], js["data"]):
            assert a[:3] == b[:3]
            assert all(close(x, y) for x, y in zip(a[3:], b[3:])), (a, b)
    # And the Arrow stream back.
    r = api.session.post(api.base + "/api/v1/serving/historical", params=query,
                         data=_ipc_bytes(table),
                         headers={"Content-Type": "application/vnd.apache.arrow.stream",
                                  "Accept": "application/vnd.apache.arrow.stream"}, timeout=30)
    assert r.status_code == 200, r.text
    assert ipc.open_stream(r.content).read_all().num_rows == len(rows)


def test_feature_sets_may_be_left_out_when_every_feature_names_its_set(world):
    api = world["api"]
    rows = random_entity_rows(world, seed=22, n=40)
    features = [f"{world['a']}:amount", f"{world['b']}:amount", f"{world['a']}:n_6h"]
    full = post_hist(api, {"feature_sets": [world["a"], world["b"]], "features": features,
                           "entity_df": {"columns": ["user_id", "event_timestamp"],
                                         "data": rows}}).json()
    short = post_hist(api, {"features": features,
                            "entity_df": {"columns": ["user_id", "event_timestamp"],
                                          "data": rows}}).json()
    assert short == full
    table = _entity_table(rows, label=False)
    r = api.session.post(api.base + "/api/v1/serving/historical",
                         params={"features": ",".join(features)}, data=_ipc_bytes(table),
                         headers={"Content-Type": "application/vnd.apache.arrow.stream"},
                         timeout=30)
    assert r.status_code == 200, r.text
    assert [row[2:] for row in r.json()["data"]] == [row[2:] for row in full["data"]]
    # A bare name still needs feature_sets.
    r = api.post("/api/v1/serving/historical", {
        "features": [f"{world['a']}:amount", "n_6h"],
        "entity_df": {"columns": ["user_id", "event_timestamp"], "data": rows}})
    assert_error(r, 400, "invalid_argument", "feature_sets")


def test_bad_arrow_and_parquet_bodies(world):
    api = world["api"]
    url = api.base + "/api/v1/serving/historical"
    good = _entity_table([["u1", "2024-01-05T00:00:00Z"]], label=False)
    q = {"feature_sets": world["a"], "features": "amount"}
    arrow_type = {"Content-Type": "application/vnd.apache.arrow.stream"}
    cases = [
        (q, b"not arrow at all", arrow_type, 400, "invalid_argument", "entity_df"),
        (q, _ipc_bytes(good)[:40], arrow_type, 400, "invalid_argument", "entity_df"),
        (q, b"PAR1garbage", {"Content-Type": "application/vnd.apache.parquet"}, 400,
         "invalid_argument", "entity_df"),
        ({"features": "amount"}, _ipc_bytes(good), arrow_type, 400, "invalid_argument",
         "feature_sets"),
        ({**q, "zzz": "1"}, _ipc_bytes(good), arrow_type, 400, "invalid_argument", "zzz"),
        ({**q, "feature_sets": "no_such_set"}, _ipc_bytes(good), arrow_type, 404, "not_found",
         None),
        (q, _ipc_bytes(pa.table({"event_timestamp": good["event_timestamp"]})), arrow_type, 400,
         "invalid_argument", "entity_df"),
        (q, _ipc_bytes(pa.table({"user_id": good["user_id"]})), arrow_type, 400,
         "invalid_argument", "entity_df"),
        (q, _ipc_bytes(pa.table({"user_id": pa.array([None], pa.string()),
                                 "event_timestamp": good["event_timestamp"]})), arrow_type, 400,
         "invalid_argument", "entity_df"),
        (q, _ipc_bytes(pa.table({"user_id": good["user_id"],
                                 "event_timestamp": pa.array(["yesterday"])})), arrow_type, 400,
         "invalid_argument", "entity_df"),
        (q, b"a,b\n", {"Content-Type": "text/csv"}, 415, "unsupported_media_type", None),
    ]
    for params, payload, headers, status, code, field in cases:
        r = api.session.post(url, params=params, data=payload, headers=headers, timeout=30)
        assert_error(r, status, code, field)


def test_derived_feature_over_other_sets(world):
    """A derived feature whose inputs live in other feature sets is computed
    from those inputs' point-in-time values (their ttl and defaults too)."""
    api = world["api"]
    c = events_feature_set(world, "hist_c")
    api.create_feature(c["id"], name="amount", data_type="float")
    api.create_feature(c["id"], name="gap", data_type="float",
                       source_features=[f"{world['a']}:amount_x2", f"{world['b']}:plus_one"],
                       transformation="amount_x2 - plus_one")
    materialize(api, c["name"])
    rows = random_entity_rows(world, seed=33, n=150)
    entity_df = {"columns": ["user_id", "event_timestamp"], "data": rows}
    got = post_hist(api, {"feature_sets": [c["name"]], "entity_df": entity_df,
                          "features": ["gap"]}).json()
    inputs = post_hist(api, {"feature_sets": [world["a"], world["b"]], "entity_df": entity_df,
                             "features": ["amount_x2", "plus_one"]}).json()
    assert got["columns"] == ["user_id", "event_timestamp", "gap"]
    checked = 0
    for g, i in zip(got["data"], inputs["data"]):
        x2, p1 = i[2], i[3]
        want = None if x2 is None or p1 is None else x2 - p1
        assert close(g[2], want), (g, i)
        checked += want is not None
    assert checked > 10


def test_derived_feature_over_other_sets_reading_the_clock(world):
    """A derived feature over other sets that reads the clock is evaluated
    with the clock at each entity row's time."""
    api = world["api"]
    c = events_feature_set(world, "hist_cc")
    api.create_feature(c["id"], name="amount", data_type="float")
    api.create_feature(c["id"], name="x2_plus_days", data_type="float",
                       source_features=[f"{world['a']}:amount_x2"],
                       transformation="amount_x2 + EXTRACT(EPOCH FROM now()) / 86400")
    materialize(api, c["name"])
    rows = random_entity_rows(world, seed=34, n=120)
    entity_df = {"columns": ["user_id", "event_timestamp"], "data": rows}
    r = post_hist(api, {"feature_sets": [c["name"]], "entity_df": entity_df,
                        "features": ["x2_plus_days"]})
    assert r.status_code == 200, r.text
    inputs = post_hist(api, {"feature_sets": [world["a"]], "entity_df": entity_df,
                             "features": ["amount_x2"]}).json()
    checked = 0
    for row, g, i in zip(rows, r.json()["data"], inputs["data"]):
        days = parse(row[1] + "Z").timestamp() / 86400
        want = None if i[2] is None else i[2] + days
        assert close(g[2], want), (row, g, i)
        checked += want is not None
    assert checked > 10


def test_windowed_feature_reading_the_clock_is_exact_at_each_row_time(world):
    """A window whose argument reads the clock: the argument is evaluated with
    the clock at the entity row's time, then aggregated over the window
    ending there (also between events)."""
    api = world["api"]
    c = events_feature_set(world, "hist_wclock")
    recent = "CASE WHEN event_timestamp > now() - INTERVAL '1 hour' THEN {} END"
    api.create_feature(c["id"], name="spend_last_hour", data_type="float", window_size="6h",
                       transformation=f"SUM({recent.format('amount')})")
    api.create_feature(c["id"], name="n_last_hour", data_type="int", window_size="6h",
                       transformation=f"COUNT({recent.format('1')})")
    materialize(api, c["name"])
    rows = random_entity_rows(world, seed=35, n=150)
    r = post_hist(api, {"feature_sets": [c["name"]],
                        "entity_df": {"columns": ["user_id", "event_timestamp"], "data": rows},
                        "features": ["spend_last_hour", "n_last_hour"]})
    assert r.status_code == 200, r.text
    nonzero = 0
    for row, got in zip(rows, r.json()["data"]):
        t = parse(row[1] + "Z")
        seen = [e for e in world["events"]
                if e[0] == row[0] and t - dt.timedelta(hours=1) < e[1] <= t]
        amounts = [e[2] for e in seen if e[2] is not None]
        live = any(e[0] == row[0] and e[1] <= t for e in world["events"])
        assert close(got[2], sum(amounts) if amounts else None), (row, got, seen)
        assert got[3] == (len(seen) if live else None), (row, got, seen)
        nonzero += len(seen) > 0
    assert nonzero > 10


def test_time_travel_sees_a_superseded_version(server, tmp_path):
    """A corrected row (same entity and event time, a later created time)
    re-materialized over the old one: the current answer is the correction,
    a request as_of before it gets the value the store had then."""
    api = Api(server)
    src = tmp_path / "versions.parquet"
    t1 = START + dt.timedelta(hours=5)
    c1, c2 = START + dt.timedelta(hours=6), START + dt.timedelta(days=2)

    def write(rows):
        pq.write_table(pa.table({
            "user_id": pa.array([r[0] for r in rows], pa.string()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "created": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r[3] for r in rows], pa.float64())}), src)

    write([("u1", t1, c1, 1.0), ("u2", t1, c1, 2.0), ("u3", t1, c1, 3.0)])
    fs = api.create_feature_set(name=uniq("hist_versions"), entities=["user"],
                                source={"type": "file", "path": str(src), "format": "parquet"},
                                created_timestamp_field="created")
    api.create_feature(fs["id"], name="amount", data_type="float")
    materialize(api, fs["name"])
    # The source is corrected in place: u1 gets a new version, u3 is removed.
    write([("u1", t1, c2, 10.0), ("u2", t1, c1, 2.0)])
    materialize(api, fs["name"])

    def ask(as_of=None):
        body = {"feature_sets": [fs["name"]],
                "entity_df": {"columns": ["user_id", "event_timestamp"],
                              "data": [[u, iso(t1 + dt.timedelta(hours=1))]
                                       for u in ("u1", "u2", "u3")]},
                "features": ["amount"]}
        if as_of is not None:
            body["as_of"] = iso(as_of)
        r = post_hist(api, body)
        assert r.status_code == 200, r.text
        return [row[2] for row in r.json()["data"]]

    assert ask() == [10.0, 2.0, None]
    assert ask(c2) == [10.0, 2.0, None]
    assert ask(c2 - US) == [1.0, 2.0, None]  # u3 was deleted by the re-run
    assert ask(c1 - US) == [None, None, None]
    # Both versions of u1 are in the offline store.
    root = server.data_dir / "offline" / fs["name"] / "v1"
    table = pq.ParquetDataset(sorted(str(p) for p in root.rglob("part-*.parquet"))).read()
    versions = sorted((r["user_id"], r["amount"]) for r in table.to_pylist())
    assert versions == [("u1", 1.0), ("u1", 10.0), ("u2", 2.0)]


def test_time_travel_rebuilds_a_training_set_across_a_backfill(server, tmp_path):
    """Without a created_timestamp_field the created time is when the store
    learned the rows (the wall clock as the run writes them), not the run's
    range: a training set built before a backfill is rebuilt exactly with
    as_of = the time it was built, though the backfill re-ran the same range
    (a corrected value and a late-arriving row). An unchanged row brought
    again keeps its first version."""
    api = Api(server)
    src = tmp_path / "backfill.parquet"
    t1 = START + dt.timedelta(hours=5)

    def write(rows):
        pq.write_table(pa.table({
            "user_id": pa.array([r[0] for r in rows], pa.string()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r[2] for r in rows], pa.float64())}), src)

    write([("u1", t1, 1.0), ("u2", t1, 2.0)])
    fs = api.create_feature_set(name=uniq("hist_backfill"), entities=["user"],
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="amount", data_type="float")
    before = dt.datetime.now(UTC)
    materialize(api, fs["name"])
    built = dt.datetime.now(UTC)  # a training set is built now
    entity_df = {"columns": ["user_id", "event_timestamp"],
                 "data": [[u, iso(t1 + dt.timedelta(hours=1))] for u in ("u1", "u2", "u3")]}

    def ask(as_of=None):
        body = {"feature_sets": [fs["name"]], "entity_df": entity_df, "features": ["amount"]}
        if as_of is not None:
            body["as_of"] = iso(as_of)
        r = post_hist(api, body)
        assert r.status_code == 200, r.text
        return [row[2] for row in r.json()["data"]]

    training = ask()
    assert training == [1.0, 2.0, None]
    # Later: the source is corrected (u1) and a late row arrives (u3); the
    # same range is materialized again.
    write([("u1", t1, 10.0), ("u2", t1, 2.0), ("u3", t1 - dt.timedelta(minutes=1), 3.0)])
    materialize(api, fs["name"])
    after = dt.datetime.now(UTC)
    assert ask() == [10.0, 2.0, 3.0]
    assert ask(built) == training  # rebuilt exactly as it was
    assert ask(after) == [10.0, 2.0, 3.0]
    assert ask(before - US) == [None, None, None]
    root = server.data_dir / "offline" / fs["name"] / "v1"
    rows = pq.ParquetDataset(sorted(str(p) for p in root.rglob("part-*.parquet"))).read().to_pylist()
    # The created times lie within the runs, not at the range's end.
    for r in rows:
        assert before <= r["created_timestamp"] <= after, r
    # u2 came again unchanged: one version, from the first run.
    u2 = [r for r in rows if r["user_id"] == "u2"]
    assert len(u2) == 1 and u2[0]["created_timestamp"] <= built, u2
    assert sorted((r["user_id"], r["amount"]) for r in rows) == [
        ("u1", 1.0), ("u1", 10.0), ("u2", 2.0), ("u3", 3.0)]
