"""GET /api/v1/search: ranking, kinds, tags and owner, errors."""

from conftest import assert_error, uniq


def search(api, q, **params):
    r = api.get("/api/v1/search", params=dict(q=q, **params))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == q
    assert body["count"] == len(body["results"])
    return body["results"]


def test_exact_name_ranks_above_description(api):
    token = uniq("zeta")
    # created first, so that insertion order cannot explain the ranking
    by_desc = api.create_feature_set(description=f"mentions {token} in passing")
    by_name = api.create_feature_set(name=token)
    results = search(api, token)
    ids = [r["id"] for r in results]
    assert ids[:2] == [by_name["id"], by_desc["id"]], results
    assert results[0]["score"] > results[1]["score"]
    assert "name" in results[0]["matched"]
    assert results[1]["matched"] == ["description"]


def test_prefix_ranks_above_substring(api):
    token = uniq("omega")
    inner = api.create_feature_set(name=f"x_{token}")
    prefix = api.create_feature_set(name=f"{token}_x")
    results = search(api, token)
    assert [r["id"] for r in results[:2]] == [prefix["id"], inner["id"]]


def test_matches_across_kinds(api):
    token = uniq("kappa")
    ent = api.create_entity(name=f"{token}_ent")
    fs = api.create_feature_set(name=f"{token}_set")
    f = api.create_feature(fs["id"], name=f"{token}_feat")
    results = search(api, token)
    by_kind = {r["kind"]: r for r in results}
    assert set(by_kind) == {"entity", "feature_set", "feature"}, results
    assert by_kind["entity"]["id"] == ent["id"]
    assert by_kind["feature_set"]["id"] == fs["id"]
    assert by_kind["feature"]["id"] == f["id"]
    assert by_kind["feature"]["feature_set"] == fs["name"]
    assert "feature_set" not in by_kind["entity"]


def test_tags_and_owner_match(api):
    tag = uniq("tagx")
    owner = uniq("team")
    tagged = api.create_feature_set(tags=[tag])
    owned = api.create_feature_set(owner=owner)
    f = api.create_feature(owned["id"], owner=owner)
    r = search(api, tag)
    assert [x["id"] for x in r] == [tagged["id"]] and r[0]["matched"] == ["tags"]
    r = search(api, owner)
    assert {x["id"] for x in r} == {owned["id"], f["id"]}
    assert all(x["matched"] == ["owner"] for x in r)


def test_every_word_must_match(api):
    a, b = uniq("alpha"), uniq("beta")
    both = api.create_feature_set(name=a, description=f"with {b}")
    api.create_feature_set(name=uniq("other"), description=a)
    r = search(api, f"{a} {b}")
    assert [x["id"] for x in r] == [both["id"]]


def test_deleted_not_found_and_limit(api):
    token = uniq("gone")
    fs = api.create_feature_set(name=token)
    for i in range(3):
        api.create_feature(fs["id"], name=f"{token}_{i}")
    assert len(search(api, token)) == 4
    assert len(search(api, token, limit=2)) == 2
    assert api.delete(f"/api/v1/feature-sets/{fs['id']}").status_code == 200
    assert search(api, token) == []


def test_empty_q_400(api):
    assert_error(api.get("/api/v1/search?q="), 400, "invalid_argument", "q")
    assert_error(api.get("/api/v1/search"), 400, "invalid_argument", "q")
    assert_error(api.get("/api/v1/search", params={"q": "   "}), 400, "invalid_argument", "q")
