"""Feature sets: list filters, versioned PATCH, soft DELETE, dependants."""

from conftest import assert_error, uniq


def names(resp):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == len(body["feature_sets"])
    return {fs["name"] for fs in body["feature_sets"]}


def test_list_filters(api):
    owner = uniq("owner")
    tag = uniq("tag")
    ent = uniq("ent")
    word = uniq("word")
    a = api.create_feature_set(owner=owner, tags=[tag, "common"], entities=[ent],
                               description=f"has {word} inside")
    b = api.create_feature_set(owner=owner, entities=["user"])
    c = api.create_feature_set(owner="someone_else", tags=[tag], entities=["user", ent])

    assert names(api.get("/api/v1/feature-sets", params={"owner": owner})) == {a["name"], b["name"]}
    assert names(api.get("/api/v1/feature-sets", params={"entity": ent})) == {a["name"], c["name"]}
    assert names(api.get("/api/v1/feature-sets", params={"tag": tag})) == {a["name"], c["name"]}
    # q matches the description (case-insensitively) ...
    assert names(api.get("/api/v1/feature-sets", params={"q": word.upper()})) == {a["name"]}
    # ... and the name
    assert names(api.get("/api/v1/feature-sets", params={"q": b["name"]})) == {b["name"]}
    # filters combine
    assert names(api.get("/api/v1/feature-sets", params={"owner": owner, "tag": tag})) == {a["name"]}
    everything = names(api.get("/api/v1/feature-sets"))
    assert {a["name"], b["name"], c["name"]} <= everything


def test_list_bad_include_deleted(api):
    assert_error(api.get("/api/v1/feature-sets?include_deleted=maybe"), 400, "invalid_argument",
                 "include_deleted")


def test_patch_creates_version_2_and_keeps_version_1(api):
    fs = api.create_feature_set(description="first", tags=["a"], ttl="1d")
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"description": "second"})
    assert r.status_code == 200, r.text
    v2 = r.json()
    assert v2["version"] == 2
    assert v2["description"] == "second"
    # fields not in the patch keep their values
    assert v2["tags"] == ["a"] and v2["ttl"] == "1d" and v2["owner"] == fs["owner"]
    assert v2["id"] == fs["id"] and v2["created_at"] == fs["created_at"]

    r = api.get(f"/api/v1/feature-sets/{fs['id']}/versions")
    assert r.status_code == 200, r.text
    versions = r.json()
    assert versions["count"] == 2
    by_version = {v["version"]: v for v in versions["versions"]}
    assert set(by_version) == {1, 2}
    assert by_version[1]["description"] == "first"
    assert by_version[2]["description"] == "second"

    r = api.get(f"/api/v1/feature-sets/{fs['id']}", params={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "first" and r.json()["version"] == 1
    # by name as well; and the latest without ?version
    assert api.get(f"/api/v1/feature-sets/{fs['name']}?version=1").json()["description"] == "first"
    latest = api.get(f"/api/v1/feature-sets/{fs['name']}").json()
    assert latest["version"] == 2 and latest["description"] == "second"


def test_patch_null_clears_optional_field(api):
    fs = api.create_feature_set(ttl="2h")
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"ttl": None})
    assert r.status_code == 200, r.text
    assert r.json()["ttl"] is None


def test_version_param_errors(api):
    fs = api.create_feature_set()
    assert_error(api.get(f"/api/v1/feature-sets/{fs['id']}?version=99"), 404, "not_found")
    assert_error(api.get(f"/api/v1/feature-sets/{fs['id']}?version=abc"), 400,
                 "invalid_argument", "version")
    assert_error(api.get(f"/api/v1/feature-sets/{fs['id']}?version=0"), 400,
                 "invalid_argument", "version")


def test_patch_name_refused(api):
    fs = api.create_feature_set()
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"name": uniq("renamed")})
    assert_error(r, 400, "invalid_argument", "name")
    assert api.get(f"/api/v1/feature-sets/{fs['id']}").json()["version"] == 1


def test_patch_invalid_value_refused_and_nothing_written(api):
    fs = api.create_feature_set()
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"materialization_schedule": "bad"})
    assert_error(r, 400, "invalid_argument", "materialization_schedule")
    assert api.get(f"/api/v1/feature-sets/{fs['id']}/versions").json()["count"] == 1


def test_patch_unknown_feature_set_404(api):
    assert_error(api.patch(f"/api/v1/feature-sets/{uniq('nope')}", {"description": "x"}),
                 404, "not_found")


def test_soft_delete(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"])
    r = api.delete(f"/api/v1/feature-sets/{fs['id']}")
    assert r.status_code == 200, r.text
    deleted = r.json()
    assert deleted["status"] == "deleted" and deleted["deleted_at"] is not None
    assert deleted["version"] == 2

    assert_error(api.get(f"/api/v1/feature-sets/{fs['id']}"), 404, "not_found")
    assert_error(api.get(f"/api/v1/feature-sets/{fs['name']}"), 404, "not_found")
    assert fs["name"] not in names(api.get("/api/v1/feature-sets"))

    r = api.get("/api/v1/feature-sets", params={"include_deleted": "true"})
    shown = [x for x in r.json()["feature_sets"] if x["id"] == fs["id"]]
    assert len(shown) == 1 and shown[0]["status"] == "deleted"

    r = api.get(f"/api/v1/feature-sets/{fs['id']}/versions")
    assert r.status_code == 200, r.text
    assert [v["version"] for v in sorted(r.json()["versions"], key=lambda v: v["version"])] == [1, 2]

    # its features went with it
    assert_error(api.get(f"/api/v1/features/{f['id']}"), 404, "not_found")
    # a second delete finds nothing
    assert_error(api.delete(f"/api/v1/feature-sets/{fs['id']}"), 404, "not_found")


def test_delete_refused_when_another_set_depends_on_it(api):
    base = api.create_feature_set()
    src = api.create_feature(base["id"], name="amount_sum")
    other = api.create_feature_set()
    dep = api.create_feature(other["id"], name="amount_double", data_type="float",
                             transformation="amount_sum * 2",
                             source_features=[f"{base['name']}:amount_sum"])

    r = api.delete(f"/api/v1/feature-sets/{base['id']}")
    err = assert_error(r, 409, "conflict")
    assert f"{other['name']}:amount_double" in err["message"], err
    # still there, unchanged
    got = api.get(f"/api/v1/feature-sets/{base['id']}")
    assert got.status_code == 200 and got.json()["version"] == 1

    # once the dependant is gone, the delete goes through
    assert api.delete(f"/api/v1/features/{dep['id']}").status_code == 200
    assert api.delete(f"/api/v1/feature-sets/{base['id']}").status_code == 200
    assert_error(api.get(f"/api/v1/features/{src['id']}"), 404, "not_found")


def test_dependants_inside_the_same_set_do_not_block_delete(api):
    fs = api.create_feature_set()
    api.create_feature(fs["id"], name="x")
    api.create_feature(fs["id"], name="y", transformation="x + 1", source_features=["x"])
    assert api.delete(f"/api/v1/feature-sets/{fs['id']}").status_code == 200


def test_name_reusable_after_delete(api):
    fs = api.create_feature_set(description="old")
    assert api.delete(f"/api/v1/feature-sets/{fs['id']}").status_code == 200
    again = api.create_feature_set(name=fs["name"], description="new")
    assert again["id"] != fs["id"] and again["version"] == 1
    got = api.get(f"/api/v1/feature-sets/{fs['name']}").json()
    assert got["id"] == again["id"] and got["description"] == "new"
    # the old one is still in its own history
    old = api.get(f"/api/v1/feature-sets/{fs['id']}/versions")
    assert old.status_code == 200 and old.json()["versions"][0]["description"] == "old"


def test_duplicate_feature_set_409(api):
    fs = api.create_feature_set()
    r = api.post("/api/v1/feature-sets", {"name": fs["name"], "entities": ["user"]})
    assert_error(r, 409, "already_exists", "name")


def test_feature_set_defaults(api):
    name = uniq("fs")
    r = api.post("/api/v1/feature-sets", {"name": name, "entities": ["user"]})
    assert r.status_code == 201, r.text
    fs = r.json()
    assert fs["source_type"] == "batch"
    assert fs["timestamp_field"] == "event_timestamp"
    assert fs["on_invalid"] == "fail"
    assert fs["tags"] == [] and fs["source"] is None and fs["ttl"] is None
    assert isinstance(fs["offline_enabled"], bool) and isinstance(fs["online_enabled"], bool)


def test_integer_ttl_is_seconds(api):
    fs = api.create_feature_set(ttl=3600)
    assert fs["ttl"] == "3600s"


def test_patch_entities_auto_creates_new_entity(api):
    fs = api.create_feature_set()
    ent = uniq("merchant")
    r = api.patch(f"/api/v1/feature-sets/{fs['id']}", {"entities": ["user", ent]})
    assert r.status_code == 200, r.text
    assert r.json()["entities"] == ["user", ent]
    e = api.get(f"/api/v1/entities/{ent}")
    assert e.status_code == 200 and e.json()["join_keys"] == [ent + "_id"]


def test_versions_by_reused_name_are_the_new_sets(api):
    fs = api.create_feature_set()
    api.patch(f"/api/v1/feature-sets/{fs['id']}", {"description": "old v2"})
    assert api.delete(f"/api/v1/feature-sets/{fs['id']}").status_code == 200
    again = api.create_feature_set(name=fs["name"])
    r = api.get(f"/api/v1/feature-sets/{fs['name']}/versions")
    assert r.status_code == 200
    assert [v["id"] for v in r.json()["versions"]] == [again["id"]]
    assert_error(api.get(f"/api/v1/feature-sets/{fs['name']}?version=2"), 404, "not_found")
    # the old set's history stays reachable by id
    assert api.get(f"/api/v1/feature-sets/{fs['id']}/versions").json()["count"] == 3


def test_unknown_feature_set_versions_404(api):
    assert_error(api.get(f"/api/v1/feature-sets/{uniq('nope')}/versions"), 404, "not_found")
