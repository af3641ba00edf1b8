"""File sources: the feature set's and features' columns are checked against
the schema of a real parquet / csv file."""

import datetime

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from conftest import assert_error, uniq


def sample_table():
    return pa.table({
        "user_id": pa.array(["u1", "u2", "u3"], pa.string()),
        "event_timestamp": pa.array([datetime.datetime(2024, 1, d, 12) for d in (1, 2, 3)],
                                    pa.timestamp("us")),
        "amount": pa.array([1.5, 2.0, 99.25], pa.float64()),
        "date_of_birth": pa.array([datetime.date(1990, 5, 1), datetime.date(1985, 1, 31),
                                   datetime.date(2001, 12, 24)], pa.date32()),
    })


@pytest.fixture(scope="module")
def parquet_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "events.parquet"
    pq.write_table(sample_table(), path)
    return str(path)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "events.csv"
    pacsv.write_csv(sample_table(), path)
    return str(path)


@pytest.fixture(params=["parquet", "csv"])
def source(request, parquet_path, csv_path):
    path = parquet_path if request.param == "parquet" else csv_path
    return {"type": "file", "path": path, "format": request.param}


def test_file_source_feature_set_created(api, source):
    fs = api.create_feature_set(source=source)
    assert fs["source"] == source
    assert fs["timestamp_field"] == "event_timestamp"
    got = api.get(f"/api/v1/feature-sets/{fs['id']}").json()
    assert got["source"] == source


def test_parquet_format_inferred_when_omitted(api, parquet_path):
    fs = api.create_feature_set(source={"type": "file", "path": parquet_path})
    assert fs["source"]["format"] == "parquet"


def test_csv_format_inferred_from_extension(api, csv_path):
    r = api.post("/api/v1/feature-sets", {"name": uniq("fs"), "entities": ["user"],
                                          "source": {"type": "file", "path": csv_path}})
    assert r.status_code == 201, r.text
    assert r.json()["source"]["format"] == "csv"


def test_timestamp_field_must_be_a_column(api, source):
    r = api.post("/api/v1/feature-sets", {"name": uniq("fs"), "entities": ["user"],
                                          "source": source, "timestamp_field": "ts"})
    err = assert_error(r, 422, "unprocessable", "timestamp_field")
    assert "'ts'" in err["message"]


def test_entity_join_key_must_be_a_column(api, source):
    r = api.post("/api/v1/feature-sets", {"name": uniq("fs"), "entities": [uniq("account")],
                                          "source": source})
    assert_error(r, 422, "unprocessable", "entities[0]")


def test_file_of_the_wrong_format_422(api, csv_path):
    r = api.post("/api/v1/feature-sets", {
        "name": uniq("fs"), "entities": ["user"],
        "source": {"type": "file", "path": csv_path, "format": "parquet"}})
    assert_error(r, 422, "unprocessable", "source.path")


def test_transformation_columns_checked(api, source):
    fs = api.create_feature_set(source=source)
    ok = api.create_feature(fs["id"], name="amount_x2", data_type="float",
                            transformation="amount * 2")
    assert ok["transformation"] == "amount * 2"
    api.create_feature(fs["id"], name="user_age", data_type="int",
                       transformation="EXTRACT(YEAR FROM AGE(current_date, date_of_birth))")

    r = api.post("/api/v1/features", {"name": uniq("f"), "feature_set_id": fs["id"],
                                      "data_type": "float",
                                      "transformation": "amount + discount_total"})
    err = assert_error(r, 422, "unprocessable", "transformation")
    assert "discount_total" in err["message"]


def test_name_must_be_a_column_without_transformation(api, source):
    fs = api.create_feature_set(source=source)
    f = api.create_feature(fs["id"], name="amount", data_type="float")
    assert f["transformation"] is None
    r = api.post("/api/v1/features", {"name": "balance", "feature_set_id": fs["id"],
                                      "data_type": "float"})
    err = assert_error(r, 422, "unprocessable", "name")
    assert "balance" in err["message"]


def test_patch_transformation_rechecked_against_source(api, parquet_path):
    fs = api.create_feature_set(source={"type": "file", "path": parquet_path})
    f = api.create_feature(fs["id"], name="spend", data_type="float",
                           transformation="amount")
    r = api.patch(f"/api/v1/features/{f['id']}", {"transformation": "amount + tip"})
    err = assert_error(r, 422, "unprocessable", "transformation")
    assert "tip" in err["message"]
    assert api.get(f"/api/v1/features/{f['id']}").json()["version"] == 1


def test_bad_file_source_shapes(api, parquet_path):
    base = {"name": uniq("fs"), "entities": ["user"]}
    assert_error(api.post("/api/v1/feature-sets", dict(base, source={"type": "file"})), 400,
                 "invalid_argument", "source.path")
    assert_error(api.post("/api/v1/feature-sets",
                          dict(base, source={"type": "file", "path": parquet_path,
                                             "format": "xlsx"})),
                 400, "invalid_argument", "source.format")
    assert_error(api.post("/api/v1/feature-sets", dict(base, source={"type": "ftp"})), 400,
                 "invalid_argument", "source.type")
    assert_error(api.post("/api/v1/feature-sets",
                          dict(base, source={"type": "file", "path": parquet_path, "x": 1})),
                 400, "invalid_argument", "source.x")


def test_pandas_style_large_strings_and_categoricals_materialize(fresh_api, tmp_path):
    # pandas writes strings as large_string and categoricals as dictionaries:
    # fstore reads them as utf8 (keys included).
    import datetime as dt
    import pyarrow as pa
    import pyarrow.parquet as pq
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    path = tmp_path / "pandas.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array(["a", "b", "a"], pa.large_string()),
        "event_timestamp": pa.array([t0, t0, t0 + dt.timedelta(hours=1)],
                                    pa.timestamp("us", tz="UTC")),
        "note": pa.array(["x", "y", "z"], pa.large_string()),
        "tier": pa.array(["gold", "basic", "silver"]).dictionary_encode(),
    }), path)
    fs = fresh_api.create_feature_set(name="pandas_src", entities=["user"],
                                      source={"type": "file", "path": str(path)})
    fresh_api.create_feature(fs["id"], name="note", data_type="string")
    fresh_api.create_feature(fs["id"], name="tier", data_type="string")
    r = fresh_api.post("/api/v1/feature-sets/pandas_src/materialize",
                       {"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    r = fresh_api.post("/api/v1/serving/online", {"feature_sets": ["pandas_src"],
                                                  "entities": {"user": ["a", "b"]}})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == {"a": {"note": "z", "tier": "silver"},
                                    "b": {"note": "y", "tier": "basic"}}
