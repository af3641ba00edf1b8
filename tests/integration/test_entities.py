"""Entities: create, list, get by id and by name, duplicates, bad names."""

from conftest import assert_error, uniq


def test_create_entity_defaults(api):
    name = uniq("customer")
    r = api.post("/api/v1/entities", {"name": name})
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["name"] == name
    assert e["join_keys"] == [name + "_id"]
    assert e["value_type"] == "string"
    assert e["version"] == 1
    assert e["description"] == ""


def test_create_entity_with_fields(api):
    name = uniq("driver")
    body = {"name": name, "join_keys": ["driver_id", "region"], "value_type": "int",
            "description": "A driver"}
    r = api.post("/api/v1/entities", body)
    assert r.status_code == 201, r.text
    e = r.json()
    for k, v in body.items():
        assert e[k] == v, k


def test_list_and_get_entity_by_id_and_name(api):
    e = api.create_entity(description="for lookup")
    r = api.get("/api/v1/entities")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["entities"])
    assert e["id"] in [x["id"] for x in body["entities"]]
    for ref in (e["id"], e["name"]):
        r = api.get(f"/api/v1/entities/{ref}")
        assert r.status_code == 200, r.text
        assert r.json() == e


def test_get_unknown_entity_404(api):
    assert_error(api.get(f"/api/v1/entities/{uniq('nobody')}"), 404, "not_found")


def test_duplicate_entity_409(api):
    e = api.create_entity()
    r = api.post("/api/v1/entities", {"name": e["name"]})
    assert_error(r, 409, "already_exists", "name")
    listed = [x for x in api.get("/api/v1/entities").json()["entities"] if x["name"] == e["name"]]
    assert len(listed) == 1


def test_bad_entity_name_400(api):
    for bad in ("1user", "user-name", "user name", "", "x" * 64):
        r = api.post("/api/v1/entities", {"name": bad})
        assert_error(r, 400, "invalid_argument", "name")


def test_entity_missing_name_400(api):
    assert_error(api.post("/api/v1/entities", {"description": "no name"}), 400,
                 "invalid_argument", "name")


def test_entity_bad_value_type_and_join_keys(api):
    assert_error(api.post("/api/v1/entities", {"name": uniq("e"), "value_type": "float"}),
                 400, "invalid_argument", "value_type")
    assert_error(api.post("/api/v1/entities", {"name": uniq("e"), "join_keys": ["a", "a"]}),
                 400, "invalid_argument", "join_keys[1]")
    assert_error(api.post("/api/v1/entities", {"name": uniq("e"), "join_keys": ["ok", 3]}),
                 400, "invalid_argument", "join_keys[1]")


def test_entity_list_refuses_query_parameters(api):
    assert_error(api.get("/api/v1/entities?name=x"), 400, "invalid_argument", "name")
