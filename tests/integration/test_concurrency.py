"""Concurrent writers: optimistic versioning must neither lose nor refuse
updates, and concurrent creations must all land."""

import threading

import requests

from conftest import uniq

THREADS = 8
PATCHES = 10


def run_threads(target, n):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]


def test_concurrent_patches_all_land(api):
    fs = api.create_feature_set(description="start")
    url = api.base + f"/api/v1/feature-sets/{fs['id']}"
    statuses = []
    lock = threading.Lock()

    def worker(i):
        with requests.Session() as s:
            for j in range(PATCHES):
                r = s.patch(url, json={"description": f"t{i}-{j}"}, timeout=60)
                with lock:
                    statuses.append((r.status_code, r.text if r.status_code != 200 else ""))

    run_threads(worker, THREADS)
    bad = [s for s in statuses if s[0] != 200]
    assert not bad, bad[:5]
    assert len(statuses) == THREADS * PATCHES

    final = api.get(f"/api/v1/feature-sets/{fs['id']}").json()
    assert final["version"] == 1 + THREADS * PATCHES
    versions = api.get(f"/api/v1/feature-sets/{fs['id']}/versions").json()
    assert versions["count"] == 1 + THREADS * PATCHES
    nums = sorted(v["version"] for v in versions["versions"])
    assert nums == list(range(1, 2 + THREADS * PATCHES))
    descriptions = [v["description"] for v in versions["versions"] if v["version"] > 1]
    assert sorted(descriptions) == sorted(f"t{i}-{j}" for i in range(THREADS)
                                          for j in range(PATCHES))


def test_concurrent_feature_patches_all_land(api):
    fs = api.create_feature_set()
    f = api.create_feature(fs["id"])
    url = api.base + f"/api/v1/features/{f['id']}"
    codes = []

    def worker(i):
        with requests.Session() as s:
            for j in range(5):
                codes.append(s.patch(url, json={"description": f"{i}.{j}"}, timeout=60).status_code)

    run_threads(worker, THREADS)
    assert codes == [200] * (THREADS * 5)
    assert api.get(f"/api/v1/features/{f['id']}").json()["version"] == 1 + THREADS * 5


def test_concurrent_creation_of_distinct_feature_sets(api):
    entity = uniq("ent")  # every request must race to auto-create it
    tag = uniq("tag")
    names = [uniq(f"c{i}") for i in range(THREADS * 4)]
    codes = {}

    def worker(i):
        with requests.Session() as s:
            for name in names[i::THREADS]:
                r = s.post(api.base + "/api/v1/feature-sets",
                           json={"name": name, "entities": [entity], "tags": [tag]}, timeout=60)
                codes[name] = (r.status_code, r.text)

    run_threads(worker, THREADS)
    assert {n: c for n, c in codes.items() if c[0] != 201} == {}
    listed = api.get("/api/v1/feature-sets", params={"tag": tag}).json()
    assert sorted(x["name"] for x in listed["feature_sets"]) == sorted(names)
    ents = [e for e in api.get("/api/v1/entities").json()["entities"] if e["name"] == entity]
    assert len(ents) == 1


def test_concurrent_duplicate_creation_exactly_one_wins(api):
    name = uniq("dup")
    codes = []

    def worker(i):
        r = requests.post(api.base + "/api/v1/feature-sets",
                          json={"name": name, "entities": ["user"]}, timeout=60)
        codes.append(r.status_code)

    run_threads(worker, THREADS)
    assert sorted(codes) == [201] + [409] * (THREADS - 1)
