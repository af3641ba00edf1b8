"""Race: creating a feature that reads X while X is being deleted. Exactly
one may win; otherwise a live feature is left reading a deleted one."""

import threading

import pytest
import requests

PADDING = 300      # a larger catalog widens the check-then-commit window
ATTEMPTS = 100


def test_create_dependant_races_delete_of_its_source(fresh_api):
    api = fresh_api
    fs = api.create_feature_set(name="base")
    for j in range(PADDING):
        api.create_feature(fs["id"], name=f"pad{j}", transformation="amount * 2 + tip - x / y")

    both = []
    for i in range(ATTEMPTS):
        src = api.create_feature(fs["id"], name=f"src{i}")
        res = {}
        barrier = threading.Barrier(2)

        def create():
            barrier.wait()
            res["create"] = requests.post(
                api.base + "/api/v1/features",
                json={"name": f"dep{i}", "feature_set_id": "base", "data_type": "int",
                      "transformation": f"src{i} + 1", "source_features": [f"src{i}"]},
                timeout=30)

        def delete():
            barrier.wait()
            res["delete"] = requests.delete(api.base + f"/api/v1/features/{src['id']}",
                                            timeout=30)

        threads = [threading.Thread(target=create), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert res["create"].status_code in (201, 422), res["create"].text
        assert res["delete"].status_code in (200, 409), res["delete"].text
        if res["create"].status_code == 201 and res["delete"].status_code == 200:
            both.append(i)
            break

    if both:
        i = both[0]
        dep = api.get(f"/api/v1/features/base:dep{i}").json()
        src_now = api.get(f"/api/v1/features/base:src{i}")
        assert not (dep["status"] == "active" and src_now.status_code == 404), (
            f"live feature base:dep{i} reads deleted feature base:src{i}: "
            f"POST /api/v1/features -> 201 and DELETE /api/v1/features/<src{i}> -> 200")
    assert both == []
