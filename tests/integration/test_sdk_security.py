"""The SDK's security calls against a real server with authentication on:
keys created, listed and revoked through FeatureStore, the audit log read
back, and the real server's 401 and 403 as AuthenticationError and
PermissionDeniedError (test_sdk_faults.py covers the mapping with a stub)."""

from __future__ import annotations

import time

import pytest

import fstore
from fstore import FeatureStore

from conftest import uniq


def test_keys_audit_and_auth_errors_through_the_sdk(fresh_server):
    url = fresh_server.base_url
    with FeatureStore(url, timeout=30) as anonymous:
        # Authentication is off until the first key: it may be made here.
        admin_key = anonymous.create_api_key("admin", name="sdk admin")
    assert admin_key["key"].startswith("fsk_") and admin_key["role"] == "admin"
    admin = FeatureStore(url, api_key=admin_key["key"], timeout=30, retries=0)
    name = uniq("sdk_sec")
    other = uniq("sdk_other")
    admin.create_feature_set(name=name, entities=["user"], owner="sdk")
    admin.create_feature_set(name=other, entities=["user"], owner="sdk")
    reader = admin.create_api_key("reader", feature_sets=[name], name="limited")
    assert reader["feature_sets"] == [name] and "key" in reader

    listed = {k["id"]: k for k in admin.list_api_keys()}
    assert {admin_key["id"], reader["id"]} <= set(listed)
    assert all("key" not in k and "hash" not in k and "salt" not in k for k in listed.values())

    # No key, a bad key: 401. A reader defining, or reaching another set: 403.
    with FeatureStore(url, timeout=30, retries=0) as nobody:
        with pytest.raises(fstore.AuthenticationError) as e:
            nobody.list_feature_sets()
        assert e.value.status == 401
    limited = FeatureStore(url, api_key=reader["key"], timeout=30, retries=0)
    assert [fs["name"] for fs in limited.list_feature_sets()] == [name]
    with pytest.raises(fstore.PermissionDeniedError) as e:
        limited.get_feature_set(other)
    assert e.value.status == 403 and other in e.value.message
    with pytest.raises(fstore.PermissionDeniedError):
        limited.create_feature_set(name=uniq("nope"), entities=["user"])
    with pytest.raises(fstore.PermissionDeniedError):
        limited.list_api_keys()

    revoked = admin.revoke_api_key(reader["id"])
    assert revoked["id"] == reader["id"] and revoked.get("revoked_at")
    deadline = time.monotonic() + 3
    while True:
        try:
            limited.list_feature_sets()
        except fstore.AuthenticationError:
            break
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.05)

    entries = admin.get_audit_log(limit=100)
    actions = [e["action"] for e in entries]
    assert "key.create" in actions and "key.revoke" in actions and "auth.denied" in actions
    creates = admin.get_audit_log(action="feature_set.")
    assert {e["target"] for e in creates} >= {name, other}
    assert all(e["action"].startswith("feature_set.") for e in creates)
    denied = admin.get_audit_log(outcome="denied", key_id=reader["id"])
    assert denied and all(e["key_id"] == reader["id"] for e in denied)
    text = repr(admin.get_audit_log(limit=1000))
    assert admin_key["key"] not in text and reader["key"] not in text
    for client in (admin, limited):
        client.close()
