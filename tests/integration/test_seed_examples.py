"""The product description's request examples, sent verbatim (fresh server:
the seed names user_profile and user_age are fixed)."""

import re
import uuid

import pytest

from conftest import assert_error

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

SEED_FEATURE_SET = {
    "name": "user_profile",
    "description": "User demographic and behavioral features",
    "owner": "data-team",
    "entities": ["user"],
    "source_type": "batch",
    "offline_enabled": True,
    "online_enabled": True,
    "materialization_schedule": "0 */6 * * *",
}


def seed_feature(feature_set_id):
    return {
        "name": "user_age",
        "feature_set_id": feature_set_id,
        "description": "User age in years",
        "data_type": "int",
        "transformation": "EXTRACT(YEAR FROM AGE(current_date, date_of_birth))",
        "validation_rules": {"min_value": 0, "max_value": 150},
    }


SEED_AGGREGATED = {
    "name": "purchases_last_30d",
    "data_type": "int",
    "transformation": "COUNT(*) OVER (PARTITION BY user_id ORDER BY timestamp RANGE BETWEEN "
                      "INTERVAL '30 days' PRECEDING AND CURRENT ROW)",
    "window_size": "30d",
}

SEED_COMPOSITE = {
    "name": "purchase_frequency",
    "data_type": "float",
    "transformation": "purchases_last_30d / NULLIF(days_since_signup, 0)",
    "source_features": ["purchases_last_30d", "days_since_signup"],
}


@pytest.fixture
def seeded(fresh_api):
    r = fresh_api.post("/api/v1/feature-sets", SEED_FEATURE_SET)
    assert r.status_code == 201, r.text
    return fresh_api, r.json()


def test_create_seed_feature_set_echoes_every_field(seeded):
    api, fs = seeded
    for key, value in SEED_FEATURE_SET.items():
        assert fs[key] == value, (key, fs)
    assert UUID_RE.match(fs["id"]), fs["id"]
    uuid.UUID(fs["id"])
    assert fs["version"] == 1
    assert fs["status"] == "active"
    assert fs["deleted_at"] is None
    assert fs["features"] == []
    assert fs["created_at"] == fs["updated_at"]


def test_seed_feature_set_auto_creates_user_entity(seeded):
    api, fs = seeded
    r = api.get("/api/v1/entities")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["entities"]) == 1
    user = body["entities"][0]
    assert user["name"] == "user"
    assert user["join_keys"] == ["user_id"]
    assert user["value_type"] == "string"
    assert UUID_RE.match(user["id"])
    # and it is addressable by name
    r = api.get("/api/v1/entities/user")
    assert r.status_code == 200 and r.json()["id"] == user["id"]


def test_create_seed_feature_and_read_it_back_through_the_set(seeded):
    api, fs = seeded
    body = seed_feature(fs["id"])
    r = api.post("/api/v1/features", body)
    assert r.status_code == 201, r.text
    f = r.json()
    for key in ("name", "feature_set_id", "description", "data_type", "transformation"):
        assert f[key] == body[key], key
    assert f["validation_rules"] == {"min_value": 0, "max_value": 150}
    assert UUID_RE.match(f["id"])
    assert f["version"] == 1

    for ref in (fs["id"], "user_profile"):
        r = api.get(f"/api/v1/feature-sets/{ref}")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["id"] == fs["id"]
        assert [x["name"] for x in got["features"]] == ["user_age"]
        assert got["features"][0]["id"] == f["id"]


def test_validation_rule_bounds_are_echoed_as_integers(seeded):
    """The seed writes "max_value": 150; it must come back as 150, not 1.5E2."""
    api, fs = seeded
    r = api.post("/api/v1/features", seed_feature(fs["id"]))
    assert r.status_code == 201, r.text
    assert '"max_value":150' in r.text.replace(" ", ""), r.text
    rules = r.json()["validation_rules"]
    assert type(rules["min_value"]) is int and type(rules["max_value"]) is int, rules


def test_seed_aggregated_and_composite_features(seeded):
    api, fs = seeded
    agg = dict(SEED_AGGREGATED, feature_set_id=fs["id"])
    r = api.post("/api/v1/features", agg)
    assert r.status_code == 201, r.text
    assert r.json()["window_size"] == "30d"
    assert r.json()["transformation"] == SEED_AGGREGATED["transformation"]

    r = api.post("/api/v1/features", {"name": "days_since_signup", "feature_set_id": fs["id"],
                                      "data_type": "int",
                                      "transformation": "current_date - signup_date"})
    assert r.status_code == 201, r.text

    comp = dict(SEED_COMPOSITE, feature_set_id=fs["id"])
    r = api.post("/api/v1/features", comp)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["source_features"] == ["purchases_last_30d", "days_since_signup"]
    assert body["data_type"] == "float"

    got = api.get("/api/v1/feature-sets/user_profile").json()
    assert sorted(x["name"] for x in got["features"]) == [
        "days_since_signup", "purchase_frequency", "purchases_last_30d"]


def test_composite_before_its_inputs_is_refused(seeded):
    api, fs = seeded
    comp = dict(SEED_COMPOSITE, feature_set_id=fs["id"])
    r = api.post("/api/v1/features", comp)
    assert_error(r, 422, "unprocessable", "source_features[0]")
