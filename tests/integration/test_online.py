"""Online serving: POST /api/v1/serving/online on the embedded stores -- the
seed's request and response, names bare or qualified, defaults and missing
entities, ttl, feature sets keyed by several entities (entity_rows), the
serving cache and its invalidation, definitions refreshed without a restart,
training-serving consistency with the offline store, and the bad inputs."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
import time

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import Api, assert_error, uniq

UTC = dt.timezone.utc


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write(path: pathlib.Path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path


def materialize(api: Api, fs_name: str, start: str, end: str):
    r = api.post(f"/api/v1/feature-sets/{fs_name}/materialize",
                 {"start_date": start, "end_date": end, "wait": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded", r.json()
    return r.json()


def online(api: Api, body, status=200):
    r = api.post("/api/v1/serving/online", body)
    assert r.status_code == status, r.text
    return r.json()


def small_set(api: Api, tmp_path: pathlib.Path, rows, **fields):
    """A new entity and a feature set keyed by it with one int feature x
    (default -1), its rows (key, event time, x) materialized: returns
    (entity name, feature set name)."""
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    src = write(tmp_path / f"{user}.parquet", {
        f"{user}_id": pa.array([r[0] for r in rows]),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "x": pa.array([r[2] for r in rows], pa.int64())})
    fs = api.create_feature_set(name=uniq("small"), entities=[user], **fields,
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="x", data_type="int", default_value=-1)
    times = [r[1] for r in rows]
    materialize(api, fs["name"], iso(min(times) - dt.timedelta(minutes=1)),
                iso(max(times) + dt.timedelta(minutes=1)))
    return user, fs["name"]


@pytest.fixture(scope="module")
def seed(server, tmp_path_factory):
    """The seed's two feature sets, materialized over January 2024."""
    api = Api(server)
    d = tmp_path_factory.mktemp("online-src")
    user = uniq("user")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="string")
    key = f"{user}_id"
    profile = write(d / "profile.parquet", {
        key: pa.array(["user_123", "user_456", "user_123"]),
        "event_timestamp": pa.array([ts("2024-01-10T00:00:00Z"), ts("2024-01-14T09:15:00Z"),
                                     ts("2024-01-15T14:30:00Z")], pa.timestamp("us", tz="UTC")),
        "user_age": pa.array([27, 35, 28], pa.int64()),
        "last_login": pa.array([ts("2024-01-10T00:00:00Z"), ts("2024-01-14T09:15:00Z"),
                                ts("2024-01-15T14:30:00Z")], pa.timestamp("us", tz="UTC")),
    })
    events = write(d / "events.parquet", {
        key: pa.array(["user_123"] * 3 + ["user_456"] * 2),
        "event_timestamp": pa.array([ts("2024-01-02T00:00:00Z"), ts("2024-01-20T00:00:00Z"),
                                     ts("2024-01-30T00:00:00Z"), ts("2024-01-05T00:00:00Z"),
                                     ts("2024-01-06T00:00:00Z")], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([10.0, 20.0, 30.0, 5.0, 7.0]),
    })
    p = api.create_feature_set(name=uniq("user_profile"), entities=[user],
                               source={"type": "file", "path": str(profile), "format": "parquet"})
    api.create_feature(p["id"], name="user_age", data_type="int", default_value=0)
    api.create_feature(p["id"], name="last_login", data_type="timestamp")
    a = api.create_feature_set(name=uniq("user_activity"), entities=[user],
                               source={"type": "file", "path": str(events), "format": "parquet"})
    api.create_feature(a["id"], name="purchase_count", data_type="int", window_size="30d",
                       transformation="COUNT(*)")
    api.create_feature(a["id"], name="spend_30d", data_type="float", window_size="30d",
                       transformation="SUM(amount)")
    api.create_feature(a["id"], name="amount", data_type="float", default_value=-1.0)
    materialize(api, p["name"], "2024-01-01", "2024-02-01")
    materialize(api, a["name"], "2024-01-01", "2024-02-01")
    return {"api": api, "user": user, "key": key, "profile": p["name"], "activity": a["name"],
            "dir": d}


def test_seed_request_and_response_shape(seed):
    body = online(seed["api"], {
        "feature_sets": [seed["profile"], seed["activity"]],
        "entities": {seed["user"]: ["user_123", "user_456"]},
        "features": ["user_age", "purchase_count", "last_login"],
    })
    assert set(body) == {"features", "metadata"}
    assert body["features"] == {
        "user_123": {"user_age": 28, "purchase_count": 3,
                     "last_login": "2024-01-15T14:30:00Z"},
        # user_456's events of Jan 5 and 6 are in the 30-day window at the
        # run's end (Feb 1): [Jan 2, Feb 1].
        "user_456": {"user_age": 35, "purchase_count": 2,
                     "last_login": "2024-01-14T09:15:00Z"},
    }
    meta = body["metadata"]
    assert isinstance(meta["latency_ms"], float) and 0 <= meta["latency_ms"] < 1000
    assert meta["cache_hit"] is False
    assert meta["missing_entities"] == {}


def test_numbers_are_written_as_the_seed_writes_them(seed):
    """"latency_ms": 5.2, as in the product description, not 5.2E0 (Boost.JSON's
    own serializer); a float default -1.0 likewise."""
    r = seed["api"].post("/api/v1/serving/online", {
        "feature_sets": [seed["activity"]], "entities": {seed["user"]: ["user_123"]},
        "features": ["spend_30d"]})
    assert r.status_code == 200, r.text
    assert re.search(r'"latency_ms":[0-9]+\.[0-9]+[,}]', r.text), r.text
    assert '"spend_30d":60.0' in r.text, r.text
    assert "E0" not in r.text and "E-" not in r.text, r.text


def test_entity_key_may_be_given_by_join_key_name(seed):
    body = online(seed["api"], {"feature_sets": [seed["profile"]],
                                "entities": {seed["key"]: ["user_456"]},
                                "features": ["user_age"]})
    assert body["features"] == {"user_456": {"user_age": 35}}


def test_all_features_when_none_listed(seed):
    body = online(seed["api"], {"feature_sets": [seed["activity"]],
                                "entities": {seed["user"]: ["user_123"]}})
    assert body["features"]["user_123"] == {"amount": 30.0, "purchase_count": 3,
                                            "spend_30d": 60.0}


def test_qualified_names_and_sets_from_them(seed):
    q = f"{seed['activity']}:spend_30d"
    body = online(seed["api"], {"entities": {seed["user"]: ["user_123"]}, "features": [q]})
    assert body["features"] == {"user_123": {q: 60.0}}


def test_missing_entity_gets_default_or_null_and_is_reported(seed):
    body = online(seed["api"], {
        "feature_sets": [seed["profile"], seed["activity"]],
        "entities": {seed["user"]: ["user_123", "nobody"]},
        "features": ["user_age", "last_login", "amount", "purchase_count"],
    })
    assert body["features"]["nobody"] == {"user_age": 0, "last_login": None, "amount": -1.0,
                                          "purchase_count": None}
    assert body["features"]["user_123"]["amount"] == 30.0
    assert body["metadata"]["missing_entities"] == {seed["profile"]: ["nobody"],
                                                    seed["activity"]: ["nobody"]}


def test_duplicate_keys_in_request_are_served_once_each(seed):
    body = online(seed["api"], {"feature_sets": [seed["profile"]],
                                "entities": {seed["user"]: ["user_123", "user_123"]},
                                "features": ["user_age"]})
    assert body["features"] == {"user_123": {"user_age": 28}}


def test_bare_name_in_two_sets_is_ambiguous(seed, tmp_path):
    api = seed["api"]
    other = api.create_feature_set(name=uniq("other"), entities=[seed["user"]],
                                   source={"type": "file", "path": str(seed["dir"] / "profile.parquet"),
                                           "format": "parquet"})
    api.create_feature(other["id"], name="user_age", data_type="int")
    r = api.post("/api/v1/serving/online", {
        "feature_sets": [seed["profile"], other["name"]],
        "entities": {seed["user"]: ["user_123"]}, "features": ["user_age"]})
    err = assert_error(r, 400, "invalid_argument", "features[0]")
    assert "ambiguous" in err["message"] and other["name"] in err["message"]
    # Qualified, both are served.
    body = online(api, {"feature_sets": [seed["profile"], other["name"]],
                        "entities": {seed["user"]: ["user_123"]},
                        "features": [f"{seed['profile']}:user_age", f"{other['name']}:user_age"]})
    assert body["features"]["user_123"] == {f"{seed['profile']}:user_age": 28,
                                            f"{other['name']}:user_age": None}
    assert body["metadata"]["missing_entities"] == {other["name"]: ["user_123"]}


def test_ttl_serves_old_values_as_missing(api, tmp_path):
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="int")
    src = write(tmp_path / "s.parquet", {
        f"{user}_id": pa.array([1, 2], pa.int64()),
        # One value from 2024 (long expired under a 1-day ttl), one from now.
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z"),
                                     dt.datetime.now(UTC) - dt.timedelta(hours=1)],
                                    pa.timestamp("us", tz="UTC")),
        "v": pa.array([10, 20], pa.int64()),
    })
    fs = api.create_feature_set(name=uniq("ttl"), entities=[user], ttl="1d",
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="v", data_type="int", default_value=-1)
    now = dt.datetime.now(UTC)
    materialize(api, fs["name"], "2024-01-01", iso(now + dt.timedelta(minutes=1)))
    body = online(api, {"feature_sets": [fs["name"]], "entities": {user: [1, 2]},
                        "features": ["v"]})
    assert body["features"] == {"1": {"v": -1}, "2": {"v": 20}}
    assert body["metadata"]["missing_entities"] == {fs["name"]: ["1"]}
    # Without the ttl the old value is served (definitions refresh at once).
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"ttl": None})
    assert r.status_code == 200, r.text
    body = online(api, {"feature_sets": [fs["name"]], "entities": {user: ["1", 2]},
                        "features": ["v"]})
    assert body["features"] == {"1": {"v": 10}, "2": {"v": 20}}


def test_feature_set_keyed_by_two_entities_uses_entity_rows(api, tmp_path):
    user, merchant = uniq("user"), uniq("merchant")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="string")
    api.create_entity(name=merchant, join_keys=[f"{merchant}_id"], value_type="int")
    uk, mk = f"{user}_id", f"{merchant}_id"
    src = write(tmp_path / "pairs.parquet", {
        uk: pa.array(["u1", "u1", "u2", "u1"]),
        mk: pa.array([7, 8, 7, 7], pa.int64()),
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z"), ts("2024-01-02T00:00:00Z"),
                                     ts("2024-01-03T00:00:00Z"), ts("2024-01-04T00:00:00Z")],
                                    pa.timestamp("us", tz="UTC")),
        "amount": pa.array([1.0, 2.0, 3.0, 4.0]),
    })
    pairs = api.create_feature_set(name=uniq("pairs"), entities=[user, merchant],
                                   source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(pairs["id"], name="amount", data_type="float")
    api.create_feature(pairs["id"], name="n_7d", data_type="int", window_size="7d",
                       transformation="COUNT(*)")
    materialize(api, pairs["name"], "2024-01-01", "2024-01-05")
    body = online(api, {"feature_sets": [pairs["name"]], "features": ["amount", "n_7d"],
                        "entity_rows": [{uk: "u1", mk: 7}, {uk: "u1", mk: 8}, {uk: "u2", mk: 7},
                                        {uk: "u2", mk: 8}, {uk: "u1", mk: 7}]})
    assert body["rows"] == [
        {uk: "u1", mk: 7, "amount": 4.0, "n_7d": 2},
        {uk: "u1", mk: 8, "amount": 2.0, "n_7d": 1},
        {uk: "u2", mk: 7, "amount": 3.0, "n_7d": 1},
        {uk: "u2", mk: 8, "amount": None, "n_7d": None},
        {uk: "u1", mk: 7, "amount": 4.0, "n_7d": 2},
    ]
    assert body["metadata"]["missing_entities"] == {pairs["name"]: ["u2,8"]}
    # The seed form cannot name a pair.
    r = api.post("/api/v1/serving/online", {"feature_sets": [pairs["name"]],
                                            "entities": {user: ["u1"]}, "features": ["amount"]})
    err = assert_error(r, 400, "invalid_argument", "entities")
    assert "entity_rows" in err["message"]


def test_keys_and_values_needing_escapes_come_back_as_given(api, tmp_path):
    """The response is written as JSON text directly (not through a JSON
    tree): entity keys and string values with quotes, backslashes, control
    characters and non-ASCII text come back exactly, in both request forms."""
    user = uniq("user")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="string")
    key = f"{user}_id"
    odd = ['a"b', "back\\slash", "tab\tnew\nline", "caf\u00e9 \u2603", "ctl\u0001"]
    # Numbers are written directly too: floats stay floats (2.0 is not 2),
    # every digit round-trips, ints are exact to 64 bits.
    scores = [0.0, 2.0, -1.5e-300, 1e21, 0.1]
    counts = [0, -7, 2**62 + 1, -(2**63), 2**63 - 1]
    src = write(tmp_path / "odd.parquet", {
        key: pa.array(odd),
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z")] * len(odd),
                                    pa.timestamp("us", tz="UTC")),
        "label": pa.array([f"<{k}>" for k in odd]),
        "score": pa.array(scores),
        "count": pa.array(counts, pa.int64()),
    })
    fs = api.create_feature_set(name=uniq("odd"), entities=[user],
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="label", data_type="string")
    api.create_feature(fs["id"], name="score", data_type="float")
    api.create_feature(fs["id"], name="count", data_type="int")
    materialize(api, fs["name"], "2024-01-01", "2024-01-02")
    body = online(api, {"feature_sets": [fs["name"]], "entities": {user: odd + ['miss"ing']},
                        "features": ["label", "score", "count"]})
    assert body["features"] == {
        **{k: {"label": f"<{k}>", "score": scores[i], "count": counts[i]}
           for i, k in enumerate(odd)},
        'miss"ing': {"label": None, "score": None, "count": None}}
    assert all(isinstance(body["features"][k]["score"], float) for k in odd)
    assert all(isinstance(body["features"][k]["count"], int) for k in odd)
    assert body["metadata"]["missing_entities"] == {fs["name"]: ['miss"ing']}
    assert body["metadata"]["cache_hit"] is False
    assert isinstance(body["metadata"]["latency_ms"], float)
    rows = online(api, {"feature_sets": [fs["name"]], "features": ["label"],
                        "entity_rows": [{key: k} for k in odd]})
    assert rows["rows"] == [{key: k, "label": f"<{k}>"} for k in odd]


def test_a_batch_over_several_sets_is_read_whole(api, tmp_path):
    """A request over several feature sets with many entities reads the sets
    on two threads (whole sets each): every set's value of every entity,
    defaults and missing entities per set, exactly as one thread gives them."""
    user = uniq("user")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="string")
    key = f"{user}_id"
    n_sets, n_entities = 5, 300
    sets = []
    for k in range(n_sets):
        # Set k has every entity but those with i % 7 == k, so each set misses its own.
        ids = [i for i in range(n_entities) if i % 7 != k]
        src = write(tmp_path / f"s{k}.parquet", {
            key: pa.array([f"e{i}" for i in ids]),
            "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z")] * len(ids),
                                        pa.timestamp("us", tz="UTC")),
            f"v{k}": pa.array([i * 10 + k for i in ids], pa.int64()),
        })
        fs = api.create_feature_set(name=uniq(f"batch{k}"), entities=[user],
                                    source={"type": "file", "path": str(src), "format": "parquet"})
        api.create_feature(fs["id"], name=f"v{k}", data_type="int", default_value=-k)
        materialize(api, fs["name"], "2024-01-01", "2024-01-02")
        sets.append(fs["name"])
    asked = [f"e{i}" for i in range(n_entities + 20)]  # the last 20 in no set
    body = online(api, {"feature_sets": sets, "entities": {user: asked}})
    want = {f"e{i}": {f"v{k}": i * 10 + k if i < n_entities and i % 7 != k else -k
                      for k in range(n_sets)} for i in range(n_entities + 20)}
    assert body["features"] == want
    assert body["metadata"]["missing_entities"] == {
        sets[k]: [f"e{i}" for i in range(n_entities + 20) if i >= n_entities or i % 7 == k]
        for k in range(n_sets)}


def test_a_big_response_keeps_the_requested_feature_order(api, tmp_path):
    """A response of thousands of values is rendered set by set on two
    threads and joined per entity: each entity's features still come in the
    order the request lists them, even when that order goes back and forth
    between sets, with defaults and nulls where a set lacks the entity; the
    same in the entity_rows form."""
    user = uniq("user")
    key = f"{user}_id"
    api.create_entity(name=user, join_keys=[key], value_type="string")
    n = 700
    t = pa.array([ts("2024-01-01T00:00:00Z")] * n, pa.timestamp("us", tz="UTC"))
    a_ids = [i for i in range(n) if i % 5 != 0]  # set A lacks every fifth entity
    src_a = write(tmp_path / "a.parquet", {
        key: pa.array([f"e{i}" for i in a_ids]),
        "event_timestamp": pa.array([t[0].as_py()] * len(a_ids), pa.timestamp("us", tz="UTC")),
        "a1": pa.array([i + 0.25 for i in a_ids]),
        "a2": pa.array([i * 3 for i in a_ids], pa.int64()),
    })
    src_b = write(tmp_path / "b.parquet", {
        key: pa.array([f"e{i}" for i in range(n)]), "event_timestamp": t,
        "b1": pa.array([f"s{i}" for i in range(n)]),
        "b2": pa.array([i % 2 == 0 for i in range(n)]),
    })
    fs_a = api.create_feature_set(name=uniq("order_a"), entities=[user],
                                  source={"type": "file", "path": str(src_a), "format": "parquet"})
    api.create_feature(fs_a["id"], name="a1", data_type="float")
    api.create_feature(fs_a["id"], name="a2", data_type="int", default_value=-1)
    fs_b = api.create_feature_set(name=uniq("order_b"), entities=[user],
                                  source={"type": "file", "path": str(src_b), "format": "parquet"})
    api.create_feature(fs_b["id"], name="b1", data_type="string")
    api.create_feature(fs_b["id"], name="b2", data_type="bool")
    for fs in (fs_a, fs_b):
        materialize(api, fs["name"], "2024-01-01", "2024-01-02")
    order = ["b2", "a1", "b1", "a2"]  # B, A, B, A: four runs

    def expected(i):
        has_a = i % 5 != 0
        return {"b2": i % 2 == 0, "a1": i + 0.25 if has_a else None, "b1": f"s{i}",
                "a2": i * 3 if has_a else -1}

    body = online(api, {"feature_sets": [fs_a["name"], fs_b["name"]], "features": order,
                        "entities": {user: [f"e{i}" for i in range(n)]}})
    assert list(body["features"]) == [f"e{i}" for i in range(n)]
    for i in range(n):
        got = body["features"][f"e{i}"]
        assert list(got) == order, (i, got)
        assert got == expected(i), i
    assert body["metadata"]["missing_entities"] == {
        fs_a["name"]: [f"e{i}" for i in range(0, n, 5)]}
    rows = online(api, {"feature_sets": [fs_a["name"], fs_b["name"]], "features": order,
                        "entity_rows": [{key: f"e{i}"} for i in range(n)]})["rows"]
    assert len(rows) == n
    for i, row in enumerate(rows):
        assert list(row) == [key] + order, (i, row)
        assert row == {key: f"e{i}", **expected(i)}, i


def test_two_entities_in_the_seed_form_are_labelled_by_entity(api, tmp_path):
    """Keys of two entities in one "entities" object: each output is labelled
    "entity:key" and carries the features of the sets keyed by its entity;
    a set's missing entities are reported under those labels."""
    user, shop = uniq("user"), uniq("shop")
    api.create_entity(name=user, join_keys=[f"{user}_id"], value_type="string")
    api.create_entity(name=shop, join_keys=[f"{shop}_id"], value_type="int")
    t = pa.array([ts("2024-01-01T00:00:00Z")] * 2, pa.timestamp("us", tz="UTC"))
    sources = {
        "a": (user, {f"{user}_id": pa.array(["u1", "u2"]), "event_timestamp": t,
                     "a": pa.array([1, 2], pa.int64())}),
        "b": (user, {f"{user}_id": pa.array(["u1", "u9"]), "event_timestamp": t,
                     "b": pa.array([1.5, 9.5])}),
        "c": (shop, {f"{shop}_id": pa.array([7, 9], pa.int64()), "event_timestamp": t,
                     "c": pa.array([70, 90], pa.int64())}),
    }
    names = {}
    for f, (entity, cols) in sources.items():
        src = write(tmp_path / f"{f}.parquet", cols)
        fs = api.create_feature_set(name=uniq(f"two_{f}"), entities=[entity],
                                    source={"type": "file", "path": str(src),
                                            "format": "parquet"})
        api.create_feature(fs["id"], name=f, data_type="float" if f == "b" else "int",
                           **({"default_value": -1} if f == "a" else {}))
        materialize(api, fs["name"], "2024-01-01", "2024-01-02")
        names[f] = fs["name"]
    body = online(api, {"feature_sets": list(names.values()),
                        "entities": {user: ["u1", "u2", "u3"], shop: [7, 8]}})
    assert body["features"] == {
        f"{user}:u1": {"a": 1, "b": 1.5},
        f"{user}:u2": {"a": 2, "b": None},
        f"{user}:u3": {"a": -1, "b": None},
        f"{shop}:7": {"c": 70},
        f"{shop}:8": {"c": None},
    }
    assert body["metadata"]["missing_entities"] == {
        names["a"]: [f"{user}:u3"],
        names["b"]: [f"{user}:u2", f"{user}:u3"],
        names["c"]: [f"{shop}:8"],
    }
    # A key of the wrong type for its entity names the entity and the element.
    r = api.post("/api/v1/serving/online", {"feature_sets": list(names.values()),
                                            "entities": {user: ["u1"], shop: ["x"]}})
    assert_error(r, 400, "invalid_argument", f"entities.{shop}[0]")


def test_new_definitions_are_served_without_restart(api, tmp_path):
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    src = write(tmp_path / "n.parquet", {
        f"{user}_id": pa.array(["a"]),
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z")], pa.timestamp("us", tz="UTC")),
        "x": pa.array([5], pa.int64()),
    })
    fs = api.create_feature_set(name=uniq("fresh"), entities=[user],
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="x", data_type="int")
    materialize(api, fs["name"], "2024-01-01", "2024-01-02")
    body = online(api, {"feature_sets": [fs["name"]], "entities": {user: ["a"]},
                        "features": ["x"]})
    assert body["features"] == {"a": {"x": 5}}
    # A feature deleted is no longer served.
    r = api.delete(f"/api/v1/features/{fs['name']}:x")
    assert r.status_code == 200, r.text
    r = api.post("/api/v1/serving/online", {"feature_sets": [fs["name"]],
                                            "entities": {user: ["a"]}, "features": ["x"]})
    assert_error(r, 400, "invalid_argument", "features[0]")


def test_online_values_equal_the_offline_rows_at_the_end(seed):
    """Training-serving consistency: the online value of each entity is its
    latest offline row (plain features) and the window at the run's end."""
    api = seed["api"]
    data_dir = api.server.data_dir
    root = pathlib.Path(data_dir) / "offline" / seed["activity"] / "v1"
    table = pads.dataset(sorted(str(p) for p in root.rglob("part-*.parquet")),
                         format="parquet").to_table().to_pylist()
    latest = {}
    for row in table:
        k = row[seed["key"]]
        if k not in latest or row["event_timestamp"] >= latest[k]["event_timestamp"]:
            latest[k] = row
    body = online(api, {"feature_sets": [seed["activity"]],
                        "entities": {seed["user"]: sorted(latest)}})
    end = ts("2024-02-01T00:00:00Z")
    for k, row in latest.items():
        served = body["features"][k]
        assert served["amount"] == row["amount"]
        frame = [r for r in table if r[seed["key"]] == k
                 and end - dt.timedelta(days=30) <= r["event_timestamp"] <= end]
        assert served["purchase_count"] == len(frame)
        assert served["spend_30d"] == pytest.approx(sum(r["amount"] for r in frame))


def test_cache_hits_and_is_invalidated_by_materialization(start_server, tmp_path):
    srv = start_server(env={"SERVING_CACHE_ENABLED": "true", "SERVING_CACHE_TTL": "300"})
    api = Api(srv)
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    path = tmp_path / "c.parquet"

    def put(rows):
        write(path, {f"{user}_id": pa.array([r[0] for r in rows]),
                     "event_timestamp": pa.array([ts(r[1]) for r in rows],
                                                 pa.timestamp("us", tz="UTC")),
                     "x": pa.array([r[2] for r in rows], pa.int64())})

    put([("a", "2024-01-01T00:00:00Z", 1)])
    fs = api.create_feature_set(name=uniq("cached"), entities=[user],
                                source={"type": "file", "path": str(path), "format": "parquet"})
    api.create_feature(fs["id"], name="x", data_type="int")
    materialize(api, fs["name"], "2024-01-01", "2024-01-02")
    req = {"feature_sets": [fs["name"]], "entities": {user: ["a", "b"]}, "features": ["x"]}
    first = online(api, req)
    assert first["metadata"]["cache_hit"] is False
    second = online(api, req)
    assert second["metadata"]["cache_hit"] is True
    assert second["features"] == first["features"] == {"a": {"x": 1}, "b": {"x": None}}
    assert second["metadata"]["missing_entities"] == {fs["name"]: ["b"]}
    # New data materialized: the cached records (also the missing one) go.
    put([("a", "2024-01-01T00:00:00Z", 1), ("a", "2024-01-02T00:00:00Z", 2),
         ("b", "2024-01-02T00:00:00Z", 3)])
    materialize(api, fs["name"], "2024-01-02", "2024-01-03")
    third = online(api, req)
    assert third["metadata"]["cache_hit"] is False
    assert third["features"] == {"a": {"x": 2}, "b": {"x": 3}}
    assert online(api, req)["metadata"]["cache_hit"] is True


def test_cache_is_bounded_and_drops_the_least_recently_used(start_server, tmp_path):
    """FSTORE_SERVING_CACHE_ENTRIES bounds the cache in (feature set, entity)
    records; a request is a cache_hit only when every record came from it."""
    srv = start_server(env={"SERVING_CACHE_ENABLED": "true", "SERVING_CACHE_TTL": "300",
                            "FSTORE_SERVING_CACHE_ENTRIES": "2"})
    api = Api(srv)
    t = ts("2024-01-01T00:00:00Z")
    user, fs = small_set(api, tmp_path, [("a", t, 1), ("b", t, 2), ("c", t, 3)])
    values = {"a": 1, "b": 2, "c": 3}

    def hit(*keys):
        body = online(api, {"feature_sets": [fs], "entities": {user: list(keys)},
                            "features": ["x"]})
        assert body["features"] == {k: {"x": values[k]} for k in keys}
        return body["metadata"]["cache_hit"]

    assert [hit("a"), hit("b"), hit("c")] == [False, False, False]  # c dropped a
    assert [hit("c"), hit("b")] == [True, True]  # b is now the most recently used
    assert hit("a") is False  # a was dropped; back in, it drops c, not b
    assert [hit("b"), hit("c")] == [True, False]
    # Three records never fit in two: the same request misses every time.
    assert [hit("a", "b", "c"), hit("a", "b", "c")] == [False, False]


def test_cache_entries_expire_after_the_cache_ttl(start_server, tmp_path):
    srv = start_server(env={"SERVING_CACHE_ENABLED": "true", "SERVING_CACHE_TTL": "1"})
    api = Api(srv)
    user, fs = small_set(api, tmp_path, [("a", ts("2024-01-01T00:00:00Z"), 1)])
    req = {"feature_sets": [fs], "entities": {user: ["a"]}, "features": ["x"]}
    assert online(api, req)["metadata"]["cache_hit"] is False
    assert online(api, req)["metadata"]["cache_hit"] is True
    time.sleep(1.6)
    late = online(api, req)
    assert late["metadata"]["cache_hit"] is False
    assert late["features"] == {"a": {"x": 1}}
    assert online(api, req)["metadata"]["cache_hit"] is True


def test_a_cached_record_past_its_feature_set_ttl_is_served_as_missing(start_server, tmp_path):
    """The cache keeps records whatever their age (its own ttl is long here):
    a cached record older than its feature set's ttl is served as missing."""
    srv = start_server(env={"SERVING_CACHE_ENABLED": "true", "SERVING_CACHE_TTL": "300"})
    api = Api(srv)
    event = dt.datetime.now(UTC)
    user, fs = small_set(api, tmp_path, [("a", event, 7)], ttl="5s")
    req = {"feature_sets": [fs], "entities": {user: ["a"]}, "features": ["x"]}
    first = online(api, req)
    assert first["features"] == {"a": {"x": 7}}, "not served within the 5s ttl"
    assert first["metadata"]["cache_hit"] is False
    cached = online(api, req)
    assert cached["features"] == {"a": {"x": 7}}
    assert cached["metadata"]["cache_hit"] is True
    time.sleep(max(0.0, (event + dt.timedelta(seconds=6) - dt.datetime.now(UTC)).total_seconds()))
    late = online(api, req)
    assert late["metadata"]["cache_hit"] is True
    assert late["features"] == {"a": {"x": -1}}
    assert late["metadata"]["missing_entities"] == {fs: ["a"]}


def test_entity_limit_is_a_413_saying_the_limit(start_server):
    srv = start_server(env={"FSTORE_SERVING_MAX_ENTITIES": "3"})
    api = Api(srv)
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    fs = api.create_feature_set(name=uniq("lim"), entities=[user])
    api.create_feature(fs["id"], name="x", data_type="int")
    ok = online(api, {"feature_sets": [fs["name"]], "entities": {user: ["a", "b", "c"]}})
    assert ok["features"] == {"a": {"x": None}, "b": {"x": None}, "c": {"x": None}}
    r = api.post("/api/v1/serving/online", {"feature_sets": [fs["name"]],
                                            "entities": {user: ["a", "b", "c", "d"]}})
    err = assert_error(r, 413, "payload_too_large", "entities")
    assert "3" in err["message"]
    r = api.post("/api/v1/serving/online", {"feature_sets": [fs["name"]],
                                            "entity_rows": [{f"{user}_id": str(i)}
                                                            for i in range(4)]})
    assert_error(r, 413, "payload_too_large", "entity_rows")


def test_bad_requests(seed, api):
    s, user, key = seed, seed["user"], seed["key"]
    offline_only = api.create_feature_set(name=uniq("offonly"), entities=[user],
                                          online_enabled=False)
    api.create_feature(offline_only["id"], name="x", data_type="int")
    int_user = uniq("iu")
    api.create_entity(name=int_user, join_keys=[f"{int_user}_id"], value_type="int")
    int_fs = api.create_feature_set(name=uniq("intfs"), entities=[int_user])
    api.create_feature(int_fs["id"], name="y", data_type="int")
    good = {"feature_sets": [s["profile"]], "entities": {user: ["user_123"]},
            "features": ["user_age"]}
    cases = [
        ([1, 2], 400, "invalid_argument", None),
        ({**good, "extra": 1}, 400, "invalid_argument", "extra"),
        ({**good, "feature_sets": "x"}, 400, "invalid_argument", "feature_sets"),
        ({**good, "feature_sets": [3]}, 400, "invalid_argument", "feature_sets[0]"),
        ({**good, "feature_sets": ["no_such_set"]}, 404, "not_found", None),
        ({**good, "feature_sets": []}, 400, "invalid_argument", "features[0]"),
        ({**good, "features": "user_age"}, 400, "invalid_argument", "features"),
        ({**good, "features": [""]}, 400, "invalid_argument", "features[0]"),
        ({**good, "features": ["nope"]}, 400, "invalid_argument", "features[0]"),
        ({**good, "features": [f"{s['profile']}:nope"]}, 400, "invalid_argument", "features[0]"),
        ({**good, "features": ["user_age", "user_age"]}, 400, "invalid_argument", "features"),
        ({**good, "features": []}, 400, "invalid_argument", "features"),
        ({"feature_sets": [s["profile"]], "features": ["user_age"]}, 400, "invalid_argument",
         "entities"),
        ({**good, "entity_rows": [{key: "user_123"}]}, 400, "invalid_argument", "entities"),
        ({**good, "entities": []}, 400, "invalid_argument", "entities"),
        ({**good, "entities": {}}, 400, "invalid_argument", "entities"),
        ({**good, "entities": {user: []}}, 400, "invalid_argument", f"entities.{user}"),
        ({**good, "entities": {user: "user_123"}}, 400, "invalid_argument", f"entities.{user}"),
        ({**good, "entities": {user: [None]}}, 400, "invalid_argument", f"entities.{user}[0]"),
        ({**good, "entities": {user: [True]}}, 400, "invalid_argument", f"entities.{user}[0]"),
        ({**good, "entities": {user: [1.5]}}, 400, "invalid_argument", f"entities.{user}[0]"),
        ({**good, "entities": {"stranger": ["x"]}}, 400, "invalid_argument", "entities"),
        ({**good, "entities": {user: ["a"], "stranger": ["x"]}}, 400, "invalid_argument",
         "entities.stranger"),
        ({"feature_sets": [int_fs["name"]], "entities": {int_user: ["abc"]}}, 400,
         "invalid_argument", f"entities.{int_user}[0]"),
        ({"feature_sets": [int_fs["name"]], "entities": {int_user: ["1x"]}}, 400,
         "invalid_argument", f"entities.{int_user}[0]"),
        ({"feature_sets": [s["profile"]], "entity_rows": []}, 400, "invalid_argument",
         "entity_rows"),
        ({"feature_sets": [s["profile"]], "entity_rows": ["user_123"]}, 400, "invalid_argument",
         "entity_rows[0]"),
        ({"feature_sets": [s["profile"]], "entity_rows": [{}]}, 400, "invalid_argument",
         f"entity_rows[0].{key}"),
        ({"feature_sets": [s["profile"]], "entity_rows": [{key: "a", "zzz": 1}]}, 400,
         "invalid_argument", "entity_rows[0].zzz"),
        ({"feature_sets": [offline_only["name"]], "entities": {user: ["a"]}}, 422,
         "unprocessable", "feature_sets[0]"),
    ]
    for body, status, code, field in cases:
        r = api.post("/api/v1/serving/online", body)
        assert_error(r, status, code, field)
    r = api.raw("POST", "/api/v1/serving/online", data=b"{not json",
                headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_argument")
    r = api.raw("POST", "/api/v1/serving/online", data=b"x", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    # Nothing broke: the good request still answers the same.
    assert online(api, good)["features"] == {"user_123": {"user_age": 28}}


def test_empty_body_is_a_400_naming_feature_sets(api):
    r = api.post("/api/v1/serving/online", {})
    err = assert_error(r, 400, "invalid_argument", "feature_sets")
    assert "feature set" in err["message"], err


def test_unknown_feature_is_named_in_the_error(seed):
    r = seed["api"].post("/api/v1/serving/online", {
        "feature_sets": [seed["profile"]], "entities": {seed["user"]: ["user_123"]},
        "features": ["user_age", "no_such_feature"]})
    err = assert_error(r, 400, "invalid_argument", "features[1]")
    assert "no_such_feature" in err["message"], err


def test_qualified_feature_of_an_unknown_set_is_a_400_naming_it(seed):
    r = seed["api"].post("/api/v1/serving/online", {
        "feature_sets": [seed["profile"]], "entities": {seed["user"]: ["user_123"]},
        "features": ["user_age", "no_such_set:x"]})
    err = assert_error(r, 400, "invalid_argument", "features[1]")
    assert "no_such_set" in err["message"], err


def test_clock_reading_features_are_evaluated_at_read_time(api, tmp_path):
    """now() in a transformation is the time of the request online, not the
    materialization's end: evaluated from the record's stored inputs."""
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    signup = ts("2024-01-01T00:00:00Z")
    src = write(tmp_path / "clock.parquet", {
        f"{user}_id": pa.array(["a", "b"]),
        "event_timestamp": pa.array([ts("2024-01-02T00:00:00Z"), ts("2024-01-03T00:00:00Z")],
                                    pa.timestamp("us", tz="UTC")),
        "signup_ts": pa.array([signup, signup + dt.timedelta(days=1)],
                              pa.timestamp("us", tz="UTC")),
    })
    fs = api.create_feature_set(name=uniq("clock"), entities=[user],
                                source={"type": "file", "path": str(src), "format": "parquet"})
    api.create_feature(fs["id"], name="member_seconds", data_type="float",
                       transformation="EXTRACT(EPOCH FROM now()) - EXTRACT(EPOCH FROM signup_ts)")
    api.create_feature(fs["id"], name="event_age_days", data_type="int",
                       transformation="EXTRACT(DAY FROM now() - event_timestamp)")
    materialize(api, fs["name"], "2024-01-01", "2024-01-10")
    before = dt.datetime.now(UTC)
    body = online(api, {"feature_sets": [fs["name"]], "entities": {user: ["a", "b", "zz"]}})
    after = dt.datetime.now(UTC)
    for key, joined in (("a", signup), ("b", signup + dt.timedelta(days=1))):
        got = body["features"][key]["member_seconds"]
        assert (before - joined).total_seconds() - 1 <= got <= (after - joined).total_seconds() + 1
    assert body["features"]["a"]["event_age_days"] == (before - ts("2024-01-02T00:00:00Z")).days
    assert body["features"]["zz"] == {"member_seconds": None, "event_age_days": None}


def test_cross_set_derived_feature_is_evaluated_at_read_time(api, tmp_path):
    """A derived feature whose inputs live in other feature sets is not
    materialized: online it is computed from those sets' records."""
    user = uniq("u")
    api.create_entity(name=user, join_keys=[f"{user}_id"])
    key = f"{user}_id"
    src_a = write(tmp_path / "a.parquet", {
        key: pa.array(["k1", "k2"]),
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z")] * 2, pa.timestamp("us", tz="UTC")),
        "spend": pa.array([10.0, 3.0]),
    })
    src_b = write(tmp_path / "b.parquet", {
        key: pa.array(["k1"]),
        "event_timestamp": pa.array([ts("2024-01-01T00:00:00Z")], pa.timestamp("us", tz="UTC")),
        "orders": pa.array([4], pa.int64()),
    })
    a = api.create_feature_set(name=uniq("a"), entities=[user],
                               source={"type": "file", "path": str(src_a), "format": "parquet"})
    api.create_feature(a["id"], name="spend", data_type="float")
    b = api.create_feature_set(name=uniq("b"), entities=[user],
                               source={"type": "file", "path": str(src_b), "format": "parquet"})
    api.create_feature(b["id"], name="orders", data_type="int")
    api.create_feature(b["id"], name="spend_per_order", data_type="float", default_value=-1.0,
                       source_features=[f"{a['name']}:spend", "orders"],
                       transformation="spend / orders")
    materialize(api, a["name"], "2024-01-01", "2024-01-02")
    materialize(api, b["name"], "2024-01-01", "2024-01-02")
    body = online(api, {"feature_sets": [b["name"]], "entities": {user: ["k1", "k2", "k3"]},
                        "features": ["spend_per_order", "orders"]})
    assert body["features"] == {
        "k1": {"spend_per_order": 2.5, "orders": 4},
        # k2: spend known, orders not: NULL arithmetic.
        "k2": {"spend_per_order": None, "orders": None},
        # k3: no input anywhere: the default.
        "k3": {"spend_per_order": -1.0, "orders": None},
    }
    # Only the requested set's misses are reported.
    assert body["metadata"]["missing_entities"] == {b["name"]: ["k2", "k3"]}
