"""Features: list filters, lookup by id / set:name / bare name, versions,
delete with dependants, lineage and cycles."""

import pytest

from conftest import assert_error, uniq


def feature_names(resp):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == len(body["features"])
    return {f["name"] for f in body["features"]}


def test_list_filters(api):
    fs1 = api.create_feature_set()
    fs2 = api.create_feature_set()
    word = uniq("word")
    a = api.create_feature(fs1["id"], data_type="int", description=f"about {word}")
    b = api.create_feature(fs1["id"], data_type="float")
    c = api.create_feature(fs2["id"], data_type="string")

    for ref in (fs1["id"], fs1["name"]):
        assert feature_names(api.get("/api/v1/features", params={"feature_set": ref})) == \
            {a["name"], b["name"]}
    assert feature_names(api.get("/api/v1/features", params={"feature_set_id": fs2["id"]})) == \
        {c["name"]}
    assert feature_names(api.get("/api/v1/features",
                                 params={"feature_set": fs1["name"], "data_type": "float"})) == \
        {b["name"]}
    # data_type aliases are canonicalised: double == float
    assert feature_names(api.get("/api/v1/features",
                                 params={"feature_set": fs1["name"], "data_type": "double"})) == \
        {b["name"]}
    assert feature_names(api.get("/api/v1/features", params={"q": word})) == {a["name"]}
    assert feature_names(api.get("/api/v1/features", params={"q": c["name"].upper()})) == \
        {c["name"]}


def test_list_filter_errors(api):
    assert_error(api.get("/api/v1/features", params={"feature_set": uniq("nope")}), 404,
                 "not_found")
    assert_error(api.get("/api/v1/features", params={"data_type": "decimal"}), 400,
                 "invalid_argument", "data_type")


def test_data_type_is_canonicalised(api):
    fs = api.create_feature_set()
    assert api.create_feature(fs["id"], data_type="BIGINT")["data_type"] == "int"
    assert api.create_feature(fs["id"], data_type="double")["data_type"] == "float"
    assert api.create_feature(fs["id"], data_type="array<text>")["data_type"] == "list<string>"


def test_feature_set_by_name_in_create(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["name"])
    assert f["feature_set_id"] == fs["id"]


def test_get_by_id_qualified_and_bare_name(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"], description="lookup")
    for ref in (f["id"], f"{fs['name']}:{f['name']}", f["name"]):
        r = api.get(f"/api/v1/features/{ref}")
        assert r.status_code == 200, (ref, r.text)
        assert r.json() == f


def test_get_unknown_feature_404(api):
    fs = api.create_feature_set()
    assert_error(api.get(f"/api/v1/features/{uniq('nope')}"), 404, "not_found")
    assert_error(api.get(f"/api/v1/features/{fs['name']}:{uniq('nope')}"), 404, "not_found")
    assert_error(api.get(f"/api/v1/features/{uniq('noset')}:x"), 404, "not_found")
    assert_error(api.get("/api/v1/features/00000000-0000-4000-8000-000000000000"), 404,
                 "not_found")


def test_ambiguous_bare_name_400(api):
    name = uniq("shared")
    fs1 = api.create_feature_set()
    fs2 = api.create_feature_set()
    api.create_feature(fs1["id"], name=name)
    api.create_feature(fs2["id"], name=name)
    err = assert_error(api.get(f"/api/v1/features/{name}"), 400, "invalid_argument")
    assert f"{fs1['name']}:{name}" in err["message"] and f"{fs2['name']}:{name}" in err["message"]
    # qualified names still work
    assert api.get(f"/api/v1/features/{fs2['name']}:{name}").json()["feature_set_id"] == fs2["id"]


def test_same_name_in_same_set_409(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"])
    r = api.post("/api/v1/features", {"name": f["name"], "feature_set_id": fs["id"],
                                      "data_type": "int"})
    assert_error(r, 409, "already_exists", "name")


def test_patch_versions(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"], description="v1", tags=["x"],
                           validation_rules={"min_value": 0})
    r = api.patch(f"/api/v1/features/{f['id']}",
                  {"description": "v2", "validation_rules": {"min_value": 1, "max_value": 5}})
    assert r.status_code == 200, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["description"] == "v2" and v2["tags"] == ["x"]
    assert v2["validation_rules"] == {"min_value": 1, "max_value": 5}

    r = api.get(f"/api/v1/features/{f['id']}/versions")
    assert r.status_code == 200
    vs = {v["version"]: v for v in r.json()["versions"]}
    assert set(vs) == {1, 2} and r.json()["count"] == 2
    assert vs[1]["description"] == "v1" and vs[1]["validation_rules"] == {"min_value": 0}

    r = api.get(f"/api/v1/features/{f['id']}?version=1")
    assert r.status_code == 200 and r.json()["description"] == "v1"
    r = api.get(f"/api/v1/features/{fs['name']}:{f['name']}?version=1")
    assert r.status_code == 200 and r.json()["description"] == "v1"
    assert_error(api.get(f"/api/v1/features/{f['id']}?version=7"), 404, "not_found")
    assert_error(api.get(f"/api/v1/features/{f['id']}?version=x"), 400, "invalid_argument",
                 "version")


def test_patch_name_and_feature_set_refused(api):
    fs = api.create_feature_set()
    other = api.create_feature_set()
    f = api.create_feature(fs["id"])
    assert_error(api.patch(f"/api/v1/features/{f['id']}", {"name": uniq("n")}), 400,
                 "invalid_argument", "name")
    assert_error(api.patch(f"/api/v1/features/{f['id']}", {"feature_set_id": other["id"]}), 400,
                 "invalid_argument", "feature_set_id")
    assert api.get(f"/api/v1/features/{f['id']}/versions").json()["count"] == 1


def test_delete_feature(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"])
    r = api.delete(f"/api/v1/features/{f['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deleted" and r.json()["version"] == 2
    assert_error(api.get(f"/api/v1/features/{f['id']}"), 404, "not_found")
    assert f["name"] not in feature_names(api.get("/api/v1/features",
                                                  params={"feature_set": fs["id"]}))
    listed = api.get("/api/v1/features", params={"feature_set": fs["id"],
                                                 "include_deleted": "true"}).json()
    assert [x["status"] for x in listed["features"] if x["id"] == f["id"]] == ["deleted"]
    assert api.get(f"/api/v1/features/{f['id']}/versions").json()["count"] == 2
    # the set no longer lists it
    assert api.get(f"/api/v1/feature-sets/{fs['id']}").json()["features"] == []


def test_delete_feature_with_dependants_409(api):
    fs = api.create_feature_set()
    a = api.create_feature(fs["id"], name="base_value")
    b = api.create_feature(fs["id"], name="derived_value", transformation="base_value + 1",
                           source_features=["base_value"])
    err = assert_error(api.delete(f"/api/v1/features/{a['id']}"), 409, "conflict")
    assert "derived_value" in err["message"]
    assert api.get(f"/api/v1/features/{a['id']}").status_code == 200
    assert api.delete(f"/api/v1/features/{b['id']}").status_code == 200
    assert api.delete(f"/api/v1/features/{a['id']}").status_code == 200


@pytest.fixture
def chain(api):
    """a (a column) -> b = a + amount -> c = b * 2, in two feature sets."""
    fs1 = api.create_feature_set(source={"type": "push"})
    fs2 = api.create_feature_set()
    a = api.create_feature(fs1["id"], name="a")
    b = api.create_feature(fs1["id"], name="b", transformation="a + amount",
                           source_features=["a"])
    c = api.create_feature(fs2["id"], name="c", data_type="float", transformation="b * 2",
                           source_features=[f"{fs1['name']}:b"])
    return {"fs1": fs1, "fs2": fs2, "a": a, "b": b, "c": c}


def test_lineage_upstream(api, chain):
    fs1, c, b = chain["fs1"], chain["c"], chain["b"]
    r = api.get(f"/api/v1/features/{c['id']}/lineage")
    assert r.status_code == 200, r.text
    lin = r.json()
    assert lin["feature"] == {"id": c["id"], "name": "c", "feature_set": chain["fs2"]["name"],
                              "data_type": "float"}
    up = lin["upstream"]
    assert up["feature_set"]["id"] == chain["fs2"]["id"]
    assert up["feature_set"]["entities"] == ["user"]
    assert up["columns"] == []  # b is an input, not a column
    assert [s["id"] for s in up["source_features"]] == [b["id"]]
    assert up["source_features"][0]["feature_set"] == fs1["name"]
    assert lin["downstream"] == []

    lb = api.get(f"/api/v1/features/{fs1['name']}:b/lineage").json()
    assert lb["upstream"]["columns"] == ["amount"]
    assert lb["upstream"]["source"] == {"type": "push"}
    assert lb["upstream"]["feature_set"]["name"] == fs1["name"]
    assert [s["name"] for s in lb["upstream"]["source_features"]] == ["a"]

    la = api.get(f"/api/v1/features/{chain['a']['id']}/lineage").json()
    assert la["upstream"]["columns"] == ["a"]  # no transformation: its own column
    assert la["upstream"]["source_features"] == []


def test_lineage_downstream_is_transitive_with_depth(api, chain):
    r = api.get(f"/api/v1/features/{chain['a']['id']}/lineage")
    assert r.status_code == 200, r.text
    down = r.json()["downstream"]
    got = {(d["id"], d["depth"], d.get("via")) for d in down}
    assert got == {(chain["b"]["id"], 1, "a"), (chain["c"]["id"], 2, "b")}
    lb = api.get(f"/api/v1/features/{chain['b']['id']}/lineage").json()
    assert [(d["name"], d["depth"]) for d in lb["downstream"]] == [("c", 1)]


def test_lineage_unknown_404(api):
    assert_error(api.get(f"/api/v1/features/{uniq('nope')}/lineage"), 404, "not_found")


def test_cycle_via_patch_422(api, chain):
    fs2 = chain["fs2"]
    r = api.patch(f"/api/v1/features/{chain['a']['id']}",
                  {"transformation": "c + 1", "source_features": [f"{fs2['name']}:c"]})
    err = assert_error(r, 422, "unprocessable", "source_features")
    assert "cycle" in err["message"]
    # nothing written
    a = api.get(f"/api/v1/features/{chain['a']['id']}").json()
    assert a["version"] == 1 and a["source_features"] == []


def test_two_cycle_via_patch_422(api):
    fs = api.create_feature_set()
    api.create_feature(fs["id"], name="p")
    api.create_feature(fs["id"], name="q", transformation="p + 1", source_features=["p"])
    r = api.patch(f"/api/v1/features/{fs['name']}:p",
                  {"transformation": "q - 1", "source_features": ["q"]})
    assert_error(r, 422, "unprocessable", "source_features")


def test_self_reference_422(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"], name="selfish")
    r = api.patch(f"/api/v1/features/{f['id']}",
                  {"transformation": "selfish + 1", "source_features": ["selfish"]})
    assert_error(r, 422, "unprocessable", "source_features[0]")


def test_derived_feature_requires_transformation(api):
    fs = api.create_feature_set()
    api.create_feature(fs["id"], name="m")
    r = api.post("/api/v1/features", {"name": uniq("d"), "feature_set_id": fs["id"],
                                      "data_type": "int", "source_features": ["m"]})
    assert_error(r, 400, "invalid_argument", "transformation")


def test_percent_encoded_qualified_name(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"])
    r = api.get(f"/api/v1/features/{fs['name']}%3A{f['name']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == f["id"]


def test_trailing_slash_same_route(api):
    fs = api.create_feature_set()
    r = api.get(f"/api/v1/feature-sets/{fs['id']}/")
    assert r.status_code == 200 and r.json()["id"] == fs["id"]
