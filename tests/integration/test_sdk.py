"""The Python SDK (python/, package ``fstore``) against a real server: every
call of FeatureStore, the error mapping of the statuses the server answers,
materialization with progress, online serving and to_df, historical
retrieval over Arrow IPC, batch jobs, monitoring and health."""

from __future__ import annotations

import datetime as dt
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fstore
from fstore import FeatureStore
from fstore import progress as fprogress

from conftest import uniq

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
END = dt.datetime(2024, 1, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def fs(server):
    with FeatureStore(server.base_url, api_key="test-key", timeout=30) as client:
        yield client


def write_events(path, users=("u1", "u2", "u3"), days=5):
    """One event per user and day at noon: amount = 10 * user index + day."""
    rows = [(u, START + dt.timedelta(days=d, hours=12), float(10 * i + d))
            for i, u in enumerate(users) for d in range(days)]
    pq.write_table(pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([r[2] for r in rows], pa.float64()),
    }), path)
    return rows


@pytest.fixture(scope="module")
def world(fs, tmp_path_factory):
    """A materialized feature set `act` (amount, amount_x2, n_2d, seen_at)
    and a second set `prof` sharing the entity (tier)."""
    d = tmp_path_factory.mktemp("sdk-src")
    write_events(d / "events.parquet")
    src = {"type": "file", "path": str(d / "events.parquet"), "format": "parquet"}
    act = uniq("act")
    fs.create_feature_set(name=act, entities=["user"], owner="sdk-tests", source=src,
                          tags=["sdk"])
    fs.create_feature(name="amount", feature_set_id=act, data_type="float", default_value=-1.0)
    fs.create_feature(name="amount_x2", feature_set_id=act, data_type="float",
                      transformation="amount * 2")
    fs.create_feature(name="n_2d", feature_set_id=act, data_type="int", window_size="2d",
                      transformation="COUNT(*)")
    fs.create_feature(name="seen_at", feature_set_id=act, data_type="timestamp",
                      transformation="event_timestamp")
    prof = uniq("prof")
    fs.create_feature_set(name=prof, entities=["user"], owner="sdk-tests", source=src)
    fs.create_feature(name="tier", feature_set_id=prof, data_type="string",
                      transformation="CASE WHEN amount >= 20 THEN 'gold' ELSE 'basic' END")
    fs.materialize(act, start=START, end=END, progress=False)
    fs.materialize(prof, start=START, end=END, progress=False)
    return {"act": act, "prof": prof, "dir": d, "src": src}


# ----------------------------------------------------------------- packaging
def test_package_is_typed_and_installed():
    import importlib.resources as resources
    assert (resources.files("fstore") / "py.typed").is_file()
    assert fstore.__version__
    assert issubclass(fstore.FeatureStoreTimeoutError, TimeoutError)
    assert issubclass(fstore.FeatureStoreConnectionError, ConnectionError)
    for status, cls in fstore.ERRORS_BY_STATUS.items():
        assert issubclass(cls, fstore.FeatureStoreError), status


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        FeatureStore("ftp://x")
    with pytest.raises(ValueError):
        FeatureStore("http://localhost:8002", timeout=0)
    with pytest.raises(ValueError):
        FeatureStore("http://localhost:8002", retries=-1)


# --------------------------------------------------------------- operations
def test_health_and_ready(fs):
    assert fs.health() == {"status": "ok"}
    assert fs.ready() == {"status": "ready"}
    assert fs.is_ready() is True


# ---------------------------------------------------------------- definitions
def test_entities(fs):
    name = uniq("merchant")
    e = fs.create_entity(name, join_keys="merchant_id", value_type="int", description="shops")
    assert e["name"] == name and e["join_keys"] == ["merchant_id"] and e["value_type"] == "int"
    assert fs.get_entity(name)["id"] == e["id"]
    assert fs.get_entity(e["id"])["name"] == name
    assert name in [x["name"] for x in fs.list_entities()]


def test_feature_set_crud_versions_and_filters(fs):
    name = uniq("fs")
    owner = uniq("owner")
    created = fs.create_feature_set(name=name, entities=["user"], owner=owner,
                                    description="user demographics", tags=["core"],
                                    source_type="batch", offline_enabled=True,
                                    online_enabled=True, materialization_schedule="0 */6 * * *")
    assert created["version"] == 1 and created["features"] == []
    assert fs.get_feature_set(name)["id"] == created["id"]
    assert [s["name"] for s in fs.list_feature_sets(owner=owner)] == [name]
    assert [s["name"] for s in fs.list_feature_sets(owner=owner, tag="core", entity="user",
                                                    q="demograph")] == [name]
    assert fs.list_feature_sets(owner=owner, tag="nope") == []

    updated = fs.update_feature_set(name, ttl="30d", description="v2")
    assert updated["version"] == 2 and updated["ttl"] == "30d"
    assert fs.get_feature_set(name, version=1)["description"] == "user demographics"
    versions = fs.get_feature_set_versions(name)
    assert [v["version"] for v in versions] == [1, 2]
    cleared = fs.update_feature_set(name, ttl=None)  # None clears a field
    assert cleared["ttl"] is None and cleared["version"] == 3

    fs.delete_feature_set(name)
    with pytest.raises(fstore.NotFoundError):
        fs.get_feature_set(name)
    assert name not in [s["name"] for s in fs.list_feature_sets(owner=owner)]
    assert name in [s["name"] for s in fs.list_feature_sets(owner=owner, include_deleted=True)]


def test_feature_crud_versions_lineage_search(fs):
    set_name = uniq("fs")
    fs.create_feature_set(name=set_name, entities=["user"], owner="sdk-tests")
    base = fs.create_feature(name="user_age", feature_set_id=set_name, data_type="integer",
                             description="User age in years",
                             validation_rules={"min_value": 0, "max_value": 150})
    assert base["data_type"] == "int" and base["version"] == 1
    derived = fs.create_feature(name="age_months", feature_set_id=set_name, data_type="int",
                                transformation="user_age * 12", source_features=["user_age"])
    ref = f"{set_name}:user_age"
    assert fs.get_feature(ref)["id"] == base["id"]
    assert fs.get_feature(base["id"])["name"] == "user_age"
    names = [f["name"] for f in fs.list_features(feature_set=set_name)]
    assert sorted(names) == ["age_months", "user_age"]
    assert [f["name"] for f in fs.list_features(feature_set=set_name, q="months")] == \
        ["age_months"]

    fs.update_feature(ref, description="Age in whole years")
    assert fs.get_feature(ref, version=1)["description"] == "User age in years"
    assert [v["version"] for v in fs.get_feature_versions(ref)] == [1, 2]

    lineage = fs.get_feature_lineage(ref)
    assert lineage["feature"]["name"] == "user_age"
    assert [x["name"] for x in lineage["downstream"]] == ["age_months"]
    hits = fs.search(set_name)
    assert any(h["kind"] == "feature_set" and h["name"] == set_name for h in hits)
    assert len(fs.search(set_name, limit=1)) == 1

    with pytest.raises(fstore.ConflictError) as e:  # age_months depends on it
        fs.delete_feature(ref)
    assert e.value.status == 409 and "age_months" in e.value.message
    fs.delete_feature(derived["id"])
    fs.delete_feature(ref)
    with pytest.raises(fstore.NotFoundError):
        fs.get_feature(ref)


# ------------------------------------------------------------- error mapping
def test_error_400_carries_code_message_field(fs):
    set_name = uniq("fs")
    fs.create_feature_set(name=set_name, entities=["user"])
    with pytest.raises(fstore.BadRequestError) as e:
        fs.create_feature(name="x", feature_set_id=set_name, data_type="decimal")
    err = e.value
    assert (err.status, err.code, err.field) == (400, "invalid_argument", "data_type")
    assert "decimal" in err.message and err.body["error"]["code"] == "invalid_argument"
    assert "data_type" in str(err)


def test_error_400_sql_position(fs):
    set_name = uniq("fs")
    fs.create_feature_set(name=set_name, entities=["user"])
    with pytest.raises(fstore.BadRequestError) as e:
        fs.create_feature(name="x", feature_set_id=set_name, data_type="int",
                          transformation="a + / b")
    assert e.value.field == "transformation" and isinstance(e.value.position, int)


def test_error_404(fs):
    with pytest.raises(fstore.NotFoundError) as e:
        fs.get_entity(uniq("missing"))
    assert (e.value.status, e.value.code) == (404, "not_found") and e.value.message


def test_error_409(fs):
    name = uniq("ent")
    fs.create_entity(name)
    with pytest.raises(fstore.ConflictError) as e:
        fs.create_entity(name)
    assert (e.value.status, e.value.code) == (409, "already_exists")


def test_error_422(fs, world):
    with pytest.raises(fstore.UnprocessableError) as e:
        fs.create_feature(name="y", feature_set_id=world["act"], data_type="float",
                          transformation="no_such_column * 2")
    assert (e.value.status, e.value.code) == (422, "unprocessable")


def test_error_405_and_415_through_the_transport(fs):
    with pytest.raises(fstore.MethodNotAllowedError) as e:
        fs._http.request("PUT", "/api/v1/entities", json_body={})
    assert (e.value.status, e.value.code) == (405, "method_not_allowed")
    with pytest.raises(fstore.UnsupportedMediaTypeError) as e:
        fs._http.request("POST", "/api/v1/entities", body=b"name: x", content_type="text/yaml")
    assert (e.value.status, e.value.code) == (415, "unsupported_media_type")


def test_error_413_too_many_entities(start_server):
    srv = start_server("--serving-max-entities", "2")
    client = FeatureStore(srv.base_url)
    name = uniq("fs")
    client.create_feature_set(name=name, entities=["user"])
    client.create_feature(name="x", feature_set_id=name, data_type="int")
    with pytest.raises(fstore.PayloadTooLargeError) as e:
        client.get_online_features([f"{name}:x"], {"user": ["a", "b", "c"]})
    assert (e.value.status, e.value.code) == (413, "payload_too_large")
    client.close()


def test_monitoring_calls_return_the_servers_content(fs, world):
    fs.health()
    fs.get_online_features([f"{world['act']}:amount"], {"user": ["u1"]})
    metrics = fs.get_metrics()
    assert isinstance(metrics, fstore.Metrics) and "fstore_http_requests_total" in metrics.names()
    assert metrics.value("fstore_http_requests_total", route="/health") >= 1
    assert metrics.value("fstore_http_requests_total", route="/api/v1/serving/online") >= 1
    assert metrics.text.startswith("# HELP")
    later = fs.get_metrics()  # the metrics request itself was counted
    assert later.value("fstore_http_requests_total", route="/monitoring/metrics") > \
        metrics.value("fstore_http_requests_total", route="/monitoring/metrics")

    stats = fs.get_statistics(days=7, feature_set=world["act"])
    assert stats["days"] == 7 and isinstance(stats["features"], list)
    freshness = fs.get_data_freshness()
    assert world["act"] in {s["feature_set"] for s in freshness["feature_sets"]}
    usage = fs.get_usage(start_date=dt.datetime.now(dt.timezone.utc).date(),
                         feature_set=world["act"])
    assert isinstance(usage, dict)
    with pytest.raises(fstore.BadRequestError) as e:
        fs.get_statistics(days=0)
    assert e.value.field == "days"


# ----------------------------------------------------------- materialization
def test_materialize_waits_and_returns_the_job(fs, world, capsys):
    job = fs.materialize(world["act"], start=START, end=END, progress=False)
    assert isinstance(job, fstore.MaterializationJob)
    assert job.succeeded and job["status"] == "succeeded" and job.done
    assert job["rows_read"] == 15 and job["rows_written_offline"] == 15
    assert job.feature_set == world["act"]
    assert fs.get_materialization_job(job.id)["status"] == "succeeded"
    listed = fs.list_materialization_jobs(world["act"], limit=1)
    assert [j.id for j in listed] == [job.id]
    assert capsys.readouterr().err == ""  # progress=False: nothing shown


def test_materialize_without_wait_returns_the_queued_job(fs, world):
    job = fs.materialize(world["prof"], start="2024-01-01", end="2024-01-08", wait=False)
    assert job.status in ("queued", "running", "succeeded")
    done = fs.wait_for_materialization(job.id, progress=False)
    assert done.succeeded and done.id == job.id


def test_materialize_progress_plain_line_without_tqdm(fs, world, monkeypatch, capsys):
    monkeypatch.setattr(fprogress, "_tqdm_class", lambda: None)
    fs.materialize(world["act"], start=START, end=END)
    err = capsys.readouterr().err
    assert f"materialize {world['act']}: succeeded 100%" in err and err.endswith("\n")


def test_materialize_progress_tqdm_bar(fs, world, monkeypatch, capsys):
    tqdm = pytest.importorskip("tqdm")
    created = []

    class Recording(tqdm.tqdm):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            created.append(self)

    monkeypatch.setattr(fprogress, "_tqdm_class", lambda: Recording)
    fs.materialize(world["act"], start=START, end=END)
    assert len(created) == 1 and created[0].n == 100 and created[0].total == 100
    assert "status=succeeded" in capsys.readouterr().err


def test_failed_materialization_raises_with_the_job(fs, tmp_path):
    src = tmp_path / "bad.parquet"
    write_events(src)
    name = uniq("fail")
    fs.create_feature_set(name=name, entities=["user"], on_invalid="fail",
                          source={"type": "file", "path": str(src), "format": "parquet"})
    fs.create_feature(name="amount", feature_set_id=name, data_type="float",
                      validation_rules={"max_value": 5})
    with pytest.raises(fstore.MaterializationError) as e:
        fs.materialize(name, start=START, end=END, progress=False)
    job = e.value.job
    assert job["status"] == "failed" and job["error"] and job["feature_set"] == name
    assert e.value.code == "job_failed"
    with pytest.raises(fstore.MaterializationError):
        fs.retry_materialization_job(job["id"], progress=False)


# -------------------------------------------------------------------- online
def test_online_seed_form_and_to_df(fs, world):
    act = world["act"]
    res = fs.get_online_features(["amount", "n_2d", "seen_at"], {"user": ["u2", "u1", "nobody"]},
                                 feature_sets=[act])
    assert isinstance(res, fstore.OnlineFeatures)
    assert res["features"]["u1"]["amount"] == 4.0          # the latest event: day 4
    assert res["features"]["u2"]["amount"] == 14.0
    assert res["features"]["nobody"]["amount"] == -1.0     # default_value
    assert res["metadata"]["missing_entities"] == {act: ["nobody"]}
    assert res.missing_entities == {act: ["nobody"]}
    assert set(res.metadata) >= {"latency_ms", "cache_hit", "missing_entities"}
    df = res.to_df()
    assert list(df.columns) == ["user_id", "amount", "n_2d", "seen_at"]
    assert list(df["user_id"]) == ["u2", "u1", "nobody"]   # request order
    assert list(df["amount"]) == [14.0, 4.0, -1.0]
    assert str(df["seen_at"].dt.tz) == "UTC"
    assert df["seen_at"].iloc[0] == pd.Timestamp("2024-01-05T12:00:00Z")


def test_online_derives_feature_sets_from_qualified_and_bare_names(fs, world):
    act, prof = world["act"], world["prof"]
    res = fs.get_online_features([f"{act}:amount", f"{prof}:tier"], {"user": ["u3"]})
    assert res["features"]["u3"] == {f"{act}:amount": 24.0, f"{prof}:tier": "gold"}
    # A bare name unique among live features: its set comes from the registry.
    res = fs.get_online_features(["amount_x2"], {"user": ["u3"]})
    assert res["features"]["u3"] == {"amount_x2": 48.0}
    other = uniq("other")
    fs.create_feature_set(name=other, entities=["user"])
    fs.create_feature(name="amount", feature_set_id=other, data_type="float")
    with pytest.raises(ValueError, match="feature_sets"):
        fs.get_online_features(["amount"], {"user": ["u3"]})  # in act and in other
    with pytest.raises(ValueError, match="unknown feature"):
        fs.get_online_features([uniq("nope")], {"user": ["u3"]})
    with pytest.raises(ValueError):
        fs.get_online_features(None, {"user": ["u3"]})


def test_online_all_features_of_a_set(fs, world):
    res = fs.get_online_features(None, {"user": ["u1"]}, feature_sets=[world["prof"]])
    assert res["features"]["u1"] == {"tier": "basic"}


def test_online_row_form_from_dicts_and_dataframe(fs, world):
    act = world["act"]
    rows = fs.get_online_features(["amount"], [{"user_id": "u1"}, {"user_id": "u2"}],
                                  feature_sets=[act])
    assert [r["amount"] for r in rows["rows"]] == [4.0, 14.0]
    df = rows.to_df()
    assert list(df.columns) == ["user_id", "amount"] and list(df["user_id"]) == ["u1", "u2"]
    from_df = fs.get_online_features(["amount"], pd.DataFrame({"user_id": ["u2"]}),
                                     feature_sets=[act])
    assert from_df["rows"][0]["amount"] == 14.0


def test_online_to_df_with_a_join_key_given_for_the_entity(fs, world):
    res = fs.get_online_features(["amount"], {"user_id": ["u1"]}, feature_sets=[world["act"]])
    assert list(res.to_df().columns) == ["user_id", "amount"]


# ---------------------------------------------------------------- historical
def test_historical_arrow_roundtrip_point_in_time(fs, world):
    act = world["act"]
    entities = pd.DataFrame({
        "user_id": ["u1", "u2", "u1", "u1"],
        "event_timestamp": pd.to_datetime(["2024-01-02T13:00:00", "2024-01-01T11:00:00",
                                           "2024-01-04T12:00:00", "2024-01-02T13:00:00"]),
        "label": [1, 0, 1, 1],
    })
    df = fs.get_historical_features(entities, ["amount", "n_2d", "seen_at"], feature_sets=[act])
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["user_id", "event_timestamp", "label", "amount", "n_2d",
                                "seen_at"]
    # u1 at Jan 2 13:00 sees the Jan 2 noon event (amount 1); u2 before any event: default.
    assert list(df["amount"]) == [1.0, -1.0, 3.0, 1.0]
    assert list(df["label"]) == [1, 0, 1, 1]  # passes through, order and duplicates kept
    assert str(df["event_timestamp"].dt.tz) == "UTC" and str(df["seen_at"].dt.tz) == "UTC"
    assert df["seen_at"].iloc[0] == pd.Timestamp("2024-01-02T12:00:00Z")
    assert df["event_timestamp"].iloc[0] == pd.Timestamp("2024-01-02T13:00:00Z")


def test_historical_is_sent_and_received_as_arrow(fs, world, monkeypatch):
    seen = []
    real = fs._http.request

    def spy(method, path, **kw):
        resp = real(method, path, **kw)
        seen.append((path, kw.get("content_type"), kw.get("accept"), kw.get("json_body"),
                     resp.content_type))
        return resp

    monkeypatch.setattr(fs._http, "request", spy)
    table = pa.table({"user_id": ["u3"],
                      "timestamp": pa.array([dt.datetime(2024, 1, 3, 13, tzinfo=UTC)],
                                            pa.timestamp("us", tz="UTC"))})
    out = fs.get_historical_features(table, [f"{world['act']}:amount"], as_arrow=True)
    hist = [s for s in seen if s[0] == "/api/v1/serving/historical"]
    assert hist == [("/api/v1/serving/historical", "application/vnd.apache.arrow.stream",
                     "application/vnd.apache.arrow.stream", None,
                     "application/vnd.apache.arrow.stream")]
    assert isinstance(out, pa.Table)
    assert out.column_names == ["user_id", "timestamp", f"{world['act']}:amount"]
    assert out.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert out.column(f"{world['act']}:amount").to_pylist() == [22.0]


def test_historical_time_column_detection(fs, world):
    act = world["act"]
    # The only timestamp-typed column, named otherwise: sent as event_timestamp,
    # returned under its own name.
    ents = pd.DataFrame({"user_id": ["u1"], "ts": pd.to_datetime(["2024-01-03T13:00:00Z"]),
                         "note": ["x"]})
    df = fs.get_historical_features(ents, ["amount"], feature_sets=[act])
    assert list(df.columns) == ["user_id", "ts", "note", "amount"]
    assert list(df["amount"]) == [2.0] and str(df["ts"].dt.tz) == "UTC"
    # Nanosecond, naive (= UTC) times work too.
    ents = pd.DataFrame({"user_id": ["u1"], "timestamp": pd.Series(
        pd.to_datetime(["2024-01-03T13:00:00"])).astype("datetime64[ns]")})
    assert list(fs.get_historical_features(ents, ["amount"], feature_sets=[act])["amount"]) == \
        [2.0]
    # ISO strings in a column named timestamp.
    ents = pd.DataFrame({"user_id": ["u1"], "timestamp": ["2024-01-03T13:00:00Z"]})
    assert list(fs.get_historical_features(ents, ["amount"], feature_sets=[act])["amount"]) == \
        [2.0]
    two = pd.DataFrame({"user_id": ["u1"], "a": pd.to_datetime(["2024-01-03"]),
                        "b": pd.to_datetime(["2024-01-04"])})
    with pytest.raises(ValueError, match="several timestamp columns"):
        fs.get_historical_features(two, ["amount"], feature_sets=[act])
    with pytest.raises(ValueError, match="time column"):
        fs.get_historical_features(pd.DataFrame({"user_id": ["u1"]}), ["amount"],
                                   feature_sets=[act])
    with pytest.raises(TypeError):
        fs.get_historical_features([{"user_id": "u1"}], ["amount"], feature_sets=[act])


def test_historical_derives_sets_and_categorical_keys(fs, world):
    act, prof = world["act"], world["prof"]
    ents = pd.DataFrame({"user_id": pd.Categorical(["u3", "u1"]),
                         "timestamp": pd.to_datetime(["2024-01-06", "2024-01-06"], utc=True)})
    df = fs.get_historical_features(ents, [f"{prof}:tier", "amount_x2"])
    assert list(df[f"{prof}:tier"]) == ["gold", "basic"]
    assert list(df["amount_x2"]) == [48.0, 8.0]
    assert list(df["user_id"]) == ["u3", "u1"]


def test_historical_as_of_time_travel(fs, world):
    ents = pd.DataFrame({"user_id": ["u1"], "timestamp": pd.to_datetime(["2024-01-06"],
                                                                          utc=True)})
    before_anything = dt.datetime(2000, 1, 1, tzinfo=UTC)
    df = fs.get_historical_features(ents, ["amount"], feature_sets=[world["act"]],
                                    as_of=before_anything)
    assert list(df["amount"]) == [-1.0]  # nothing was materialized by then: the default


def test_historical_server_errors_are_mapped(fs, world):
    ents = pd.DataFrame({"user_id": ["u1"], "timestamp": ["not a time"]})
    with pytest.raises(fstore.BadRequestError) as e:
        fs.get_historical_features(ents, ["amount"], feature_sets=[world["act"]])
    assert e.value.field == "entity_df" and "not a timestamp" in e.value.message
    with pytest.raises(fstore.NotFoundError):
        fs.get_historical_features(ents, ["amount"], feature_sets=[uniq("nope")])


# --------------------------------------------------------------------- batch
def test_batch_retrieval_job(fs, world, tmp_path):
    src = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"user_id": ["u1", "u2"],
                             "event_timestamp": pa.array(
                                 [dt.datetime(2024, 1, 3, 13, tzinfo=UTC)] * 2,
                                 pa.timestamp("us", tz="UTC"))}), src)
    out = tmp_path / "out" / "train.parquet"
    job = fs.submit_batch_retrieval([world["act"]], ["amount"], str(src), str(out))
    assert isinstance(job, fstore.BatchJob) and job.status in ("queued", "running", "succeeded")
    done = fs.wait_for_batch_job(job.id, progress=False)
    assert done.succeeded and done.output == str(out) and done["rows_written"] == 2
    assert fs.get_batch_job(job.id)["status"] == "succeeded"
    assert pq.read_table(out).column("amount").to_pylist() == [2.0, 12.0]
    # wait=True, and the output exists: 409 unless overwrite.
    with pytest.raises(fstore.ConflictError):
        fs.submit_batch_retrieval([world["act"]], ["amount"], str(src), str(out))
    again = fs.submit_batch_retrieval([world["act"]], ["amount"], {"path": str(src)},
                                      {"path": str(out)}, overwrite=True, wait=True,
                                      progress=False, batch_rows=1)
    assert again.succeeded and again["batches"] == 2
    listed = fs.list_batch_jobs(status="succeeded", limit=1000)
    assert all(isinstance(j, fstore.BatchJob) and j.succeeded for j in listed)
    assert [j.id for j in listed][:1] == [again.id]  # newest first
    assert job.id in {j.id for j in listed}
    with pytest.raises(fstore.ConflictError):  # it has ended: nothing to cancel
        fs.cancel_batch_job(job.id)
    with pytest.raises(fstore.NotFoundError):
        fs.cancel_batch_job("00000000-0000-4000-8000-000000000000")


def test_batch_job_failure_raises_with_the_job(fs, world, tmp_path):
    src = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "event_timestamp": ["garbage"]}), src)
    with pytest.raises(fstore.BatchJobError) as e:
        fs.submit_batch_retrieval([world["act"]], ["amount"], str(src), str(tmp_path / "o/"),
                                  wait=True, progress=False)
    assert e.value.job["status"] == "failed" and "garbage" in e.value.job["error"]
    with pytest.raises(fstore.NotFoundError):
        fs.get_batch_job("00000000-0000-4000-8000-000000000000")


# ------------------------------------------------------------------ threads
def test_client_is_usable_from_several_threads(fs, world):
    from concurrent.futures import ThreadPoolExecutor

    def lookup(user):
        return fs.get_online_features(["amount"], {"user": [user]},
                                      feature_sets=[world["act"]])["features"][user]["amount"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lookup, ["u1", "u2", "u3"] * 10))
    assert results == [4.0, 14.0, 24.0] * 10


def test_job_records_are_json_dicts(fs, world):
    job = fs.materialize(world["prof"], start=START, end=END, progress=False)
    assert json.loads(json.dumps(job))["id"] == job.id
    buf = io.StringIO()
    bar = fprogress.JobProgress("x", enabled=False, stream=buf)
    bar.update(job)
    bar.close()
    assert buf.getvalue() == ""
