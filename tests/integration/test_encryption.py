"""Encryption at rest (FSTORE_ENCRYPTION_KEY / FSTORE_ENCRYPTION_KEY_FILE):
values served right, no plaintext feature value in any file under the data
directory (registry, offline Parquet, RocksDB SST/WAL/MANIFEST), batch outputs
encrypted and readable with the SDK helper, and clear start-up errors for a
wrong, missing or malformed key. The same search with encryption off finds
the markers, which proves the search."""

from __future__ import annotations

import datetime as dt
import pathlib
import struct
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FSTORE_BIN, FstoreServer, clean_env, uniq

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python" / "src"))
from fstore import encryption as sdk_encryption  # noqa: E402

UTC = dt.timezone.utc
KEY = "5f3c1d2e8a9b0c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
OTHER_KEY = "a" * 64
MARKER = "PLAINTEXT-MARKER-7f3a9c"
AMOUNTS = [98765.4321, 12345.678901, 31415.926535]
USERS = ["u1", "u2", "u3"]


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def needles():
    """Byte strings that must not appear on disk: the string values, and the
    numbers as the little-endian doubles Parquet and the online codec use."""
    out = [MARKER.encode()]
    out += [struct.pack("<d", a) for a in AMOUNTS]
    return out


def found_in(data_dir: pathlib.Path):
    """(file, needle) for every needle found in every file under data_dir."""
    hits = []
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, f"no files under {data_dir}"
    for path in files:
        data = path.read_bytes()
        for needle in needles():
            if needle in data:
                hits.append((str(path.relative_to(data_dir)), needle))
    return hits


def serve_cmd(data_dir):
    return [FSTORE_BIN, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", str(data_dir)]


def failed_start(data_dir, env):
    """Runs `fstore serve` expecting it to stop at start-up; returns stderr."""
    r = subprocess.run(serve_cmd(data_dir), env=clean_env(env), capture_output=True, text=True,
                       timeout=60)
    # Exit 2: a configuration the server refuses (like any bad setting).
    assert r.returncode == 2, f"fstore exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    assert "listening" not in r.stdout
    return r.stderr


def stop(server: FstoreServer):
    assert server.stop() == 0, server.output()[-4000:]


def post(server, path, body):
    import requests
    return requests.post(server.url(path), json=body, timeout=60)


def setup_and_materialize(server: FstoreServer, src_dir: pathlib.Path) -> str:
    """One feature set over a file source of distinctive values, materialized."""
    src = src_dir / "events.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array(USERS, pa.string()),
        "event_timestamp": pa.array([ts("2024-01-10T00:00:00Z")] * 3, pa.timestamp("us", tz="UTC")),
        "secret": pa.array([f"{MARKER}-{u}" for u in USERS], pa.string()),
        "amount": pa.array(AMOUNTS, pa.float64()),
    }), src)
    user = uniq("user")
    r = post(server, "/api/v1/entities", {"name": user, "join_keys": ["user_id"],
                                          "value_type": "string"})
    assert r.status_code == 201, r.text
    name = uniq("secrets")
    r = post(server, "/api/v1/feature-sets", {
        "name": name, "entities": [user], "owner": "tests",
        "source": {"type": "file", "path": str(src), "format": "parquet"}})
    assert r.status_code == 201, r.text
    fs_id = r.json()["id"]
    for feature, dtype in (("secret", "string"), ("amount", "float")):
        r = post(server, "/api/v1/features", {"name": feature, "feature_set_id": fs_id,
                                              "data_type": dtype})
        assert r.status_code == 201, r.text
    r = post(server, f"/api/v1/feature-sets/{name}/materialize",
             {"start_date": "2024-01-01T00:00:00", "end_date": "2024-02-01T00:00:00", "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return name, user


def check_values(server: FstoreServer, name: str, user: str):
    r = post(server, "/api/v1/serving/online", {
        "feature_sets": [name], "entities": {user: USERS}, "features": ["secret", "amount"]})
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    for u, amount in zip(USERS, AMOUNTS):
        assert features[u] == {"secret": f"{MARKER}-{u}", "amount": amount}, features
    r = post(server, "/api/v1/serving/historical", {
        "feature_sets": [name], "features": ["secret", "amount"],
        "entity_df": {"columns": ["user_id", "event_timestamp"],
                      "data": [[u, "2024-01-20T00:00:00"] for u in USERS]}})
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [row[-2:] for row in rows] == [[f"{MARKER}-{u}", a] for u, a in zip(USERS, AMOUNTS)], rows


@pytest.fixture
def encrypted(fstore_bin, tmp_path):
    """A data dir written by a server with FSTORE_ENCRYPTION_KEY, the server stopped."""
    data = tmp_path / "data"
    server = FstoreServer(data, env={"FSTORE_ENCRYPTION_KEY": KEY})
    try:
        name, user = setup_and_materialize(server, tmp_path)
        check_values(server, name, user)
        # A batch serving output: encrypted too.
        entities = tmp_path / "entities.parquet"
        pq.write_table(pa.table({
            "user_id": pa.array(USERS, pa.string()),
            "event_timestamp": pa.array([ts("2024-01-20T00:00:00Z")] * 3,
                                        pa.timestamp("us", tz="UTC"))}), entities)
        out = data / "exports" / "train.parquet"
        r = post(server, "/api/v1/serving/batch", {
            "feature_sets": [name], "features": ["secret", "amount"],
            "entity_source": {"path": str(entities)}, "output": {"path": str(out)}, "wait": True})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        log = server
    finally:
        stop(server)
    # Nothing the server logged holds a value either.
    assert MARKER not in log.output()
    return {"data": data, "name": name, "user": user, "out": out}


def test_no_plaintext_on_disk_and_values_served(encrypted, tmp_path):
    data = encrypted["data"]
    # The stores wrote something (the search below is over real files).
    assert list((data / "offline").rglob("part-*.parquet"))
    assert any((data / "online").rglob("*.sst")), "RocksDB wrote no SST file"
    assert found_in(data) == []
    # Restart with the key (RocksDB now reads its SST files): values are right.
    server = FstoreServer(data, env={"FSTORE_ENCRYPTION_KEY": KEY})
    try:
        check_values(server, encrypted["name"], encrypted["user"])
    finally:
        stop(server)
    assert found_in(data) == []


def test_offline_and_batch_files_are_parquet_modular_encryption(encrypted):
    data, out = encrypted["data"], encrypted["out"]
    parts = sorted((data / "offline").rglob("part-*.parquet"))
    for path in parts + [out]:
        assert path.read_bytes()[-4:] == b"PARE", path  # encrypted footer
        with pytest.raises(Exception):
            pq.read_table(path)  # unreadable without the key
    # With the key (the SDK's KMS client), any pyarrow reads them.
    offline = pa.concat_tables([sdk_encryption.read_table(p, KEY) for p in parts])
    assert sorted(offline.column("secret").to_pylist()) == [f"{MARKER}-{u}" for u in USERS]
    assert sorted(offline.column("amount").to_pylist()) == sorted(AMOUNTS)
    batch = sdk_encryption.read_table(out, KEY)
    assert batch.column("secret").to_pylist() == [f"{MARKER}-{u}" for u in USERS]
    assert batch.column("amount").to_pylist() == AMOUNTS
    with pytest.raises(Exception, match="different encryption key"):
        sdk_encryption.read_table(out, OTHER_KEY)


def test_without_encryption_the_search_finds_the_markers(fstore_bin, tmp_path):
    data = tmp_path / "data"
    server = FstoreServer(data)
    try:
        name, user = setup_and_materialize(server, tmp_path)
        check_values(server, name, user)
    finally:
        stop(server)
    hits = found_in(data)
    where = {f.split("/")[0] for f, _ in hits}
    assert "offline" in where and "online" in where, hits
    assert MARKER.encode() in {n for _, n in hits}
    assert struct.pack("<d", AMOUNTS[0]) in {n for _, n in hits}
    # Encryption cannot be turned on for a store that holds clear data.
    err = failed_start(data, {"FSTORE_ENCRYPTION_KEY": KEY})
    assert "already holds data written without encryption" in err, err


def test_wrong_key_stops_the_start(encrypted):
    err = failed_start(encrypted["data"], {"FSTORE_ENCRYPTION_KEY": OTHER_KEY})
    assert "is not the key this store was encrypted with" in err, err
    assert OTHER_KEY not in err and KEY not in err


def test_missing_key_on_encrypted_data_stops_the_start(encrypted):
    err = failed_start(encrypted["data"], {})
    assert "no encryption key is configured" in err, err
    assert "FSTORE_ENCRYPTION_KEY" in err


def test_key_file_form_works(encrypted, tmp_path):
    key_file = tmp_path / "fstore.key"
    key_file.write_text(f"  {KEY}\n")
    server = FstoreServer(encrypted["data"], env={"FSTORE_ENCRYPTION_KEY_FILE": str(key_file)})
    try:
        check_values(server, encrypted["name"], encrypted["user"])
    finally:
        stop(server)


@pytest.mark.parametrize("env, variable", [
    ({"FSTORE_ENCRYPTION_KEY": "abc"}, "FSTORE_ENCRYPTION_KEY"),
    ({"FSTORE_ENCRYPTION_KEY": "g" * 64}, "FSTORE_ENCRYPTION_KEY"),
    ({"FSTORE_ENCRYPTION_KEY_FILE": "/nonexistent/fstore.key"}, "FSTORE_ENCRYPTION_KEY_FILE"),
    ({"FSTORE_ENCRYPTION_KEY_FILE": "BADFILE"}, "FSTORE_ENCRYPTION_KEY_FILE"),
    ({"FSTORE_ENCRYPTION_KEY": KEY, "FSTORE_ENCRYPTION_KEY_FILE": "BADFILE"},
     "FSTORE_ENCRYPTION_KEY_FILE"),
])
def test_bad_key_values_stop_the_start_naming_the_variable(fstore_bin, tmp_path, env, variable):
    bad = tmp_path / "bad.key"
    bad.write_text("not-a-key-" + "z" * 54 + "\n")
    env = {k: (str(bad) if v == "BADFILE" else v) for k, v in env.items()}
    err = failed_start(tmp_path / "data", env)
    assert variable in err, err
    assert "zzzz" not in err and "g" * 64 not in err  # key material is never echoed
    assert not (tmp_path / "data" / "offline").exists() or not any(
        (tmp_path / "data" / "offline").iterdir())


def test_reads_without_the_key_fail_clearly_never_garbage(encrypted):
    """Past the start-up check (its file removed by hand), every read of
    sealed data answers a 500 that says why, not wrong values."""
    (encrypted["data"] / "offline" / "_encryption_key_check").unlink()
    server = FstoreServer(encrypted["data"])
    try:
        r = post(server, "/api/v1/serving/online", {
            "feature_sets": [encrypted["name"]], "entities": {encrypted["user"]: USERS},
            "features": ["secret", "amount"]})
        assert r.status_code == 500, r.text
        assert "no encryption key is configured" in r.json()["error"]["message"], r.text
        r = post(server, "/api/v1/serving/historical", {
            "feature_sets": [encrypted["name"]], "features": ["secret", "amount"],
            "entity_df": {"columns": ["user_id", "event_timestamp"],
                          "data": [["u1", "2024-01-20T00:00:00"]]}})
        assert r.status_code == 500, r.text
        assert "is encrypted and no encryption key is configured" in r.json()["error"]["message"], \
            r.text
        assert MARKER not in r.text
    finally:
        stop(server)


@pytest.mark.parametrize("key", [KEY, None], ids=["encrypted", "clear"])
def test_redis_online_store_holds_no_plaintext(fstore_bin, tmp_path, key):
    """The Redis backend seals values the same way: its append-only file
    holds no marker with a key, and does without (the search works)."""
    from backends import Redis

    redis = Redis(tmp_path / "redis")
    try:
        env = {"REDIS_URL": redis.url}
        if key:
            env["FSTORE_ENCRYPTION_KEY"] = key
        data = tmp_path / "data"
        server = FstoreServer(data, env=env)
        try:
            name, user = setup_and_materialize(server, tmp_path)
            check_values(server, name, user)
        finally:
            stop(server)
        # Redis appends each write to its AOF before answering it.
        aof = found_in(redis.dir)
        if key:
            assert aof == [] and found_in(data) == [], (aof, found_in(data))
        else:
            assert MARKER.encode() in {n for _, n in aof}, aof
    finally:
        redis.close()
