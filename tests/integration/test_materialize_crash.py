"""A materialization killed with SIGKILL at points throughout its run, then
re-run, leaves both stores exactly as one clean run does."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import signal
import subprocess
import time

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from conftest import FSTORE_BIN, FstoreServer, clean_env

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 12
USERS = 300


def make_source(path, n=240_000, seed=1):
    rnd = random.Random(seed)
    users = [f"u{rnd.randrange(USERS):04d}" for _ in range(n)]
    times = [START + dt.timedelta(seconds=rnd.randrange(DAYS * 86400)) for _ in range(n)]
    amounts = [round(rnd.uniform(0, 50), 2) for _ in range(n)]
    pq.write_table(pa.table({
        "user_id": pa.array(users, pa.string()),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "amount": pa.array(amounts, pa.float64()),
    }), path, row_group_size=50_000)


def materialize(data_dir, timeout=None):
    return subprocess.Popen(
        [FSTORE_BIN, "materialize", "txn", "--start", "2024-01-01", "--end", "2024-01-13",
         "--data-dir", str(data_dir), "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


def offline_rows(data_dir):
    root = data_dir / "offline" / "txn" / "v1"
    files = sorted(str(p) for p in root.rglob("*.parquet"))
    table = pads.dataset(files, format="parquet").to_table()
    rows = table.to_pylist()
    rows.sort(key=lambda r: (r["user_id"], r["event_timestamp"]))
    return rows, sorted(p.relative_to(root).parent.as_posix() for p in root.rglob("*.parquet"))


def without_created(rows):
    """Offline rows (a list) or online records (by key), created times left out."""
    if isinstance(rows, dict):
        return {k: None if v is None else {f: x for f, x in v.items() if f != "created_timestamp"}
                for k, v in rows.items()}
    return [{f: x for f, x in r.items() if f != "created_timestamp"} for r in rows]


def online_records(data_dir):
    cmd = [FSTORE_BIN, "get-online", "txn", "--data-dir", str(data_dir), "--log-level", "warn"]
    for u in range(USERS):
        cmd += ["--key", f"u{u:04d}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sigkill_at_points_then_rerun_equals_a_clean_run(tmp_path):
    src = tmp_path / "events.parquet"
    make_source(src)
    base = tmp_path / "base"
    server = FstoreServer(base)
    try:
        import requests
        s = requests.Session()
        r = s.post(server.base_url + "/api/v1/feature-sets", json={
            "name": "txn", "entities": ["user"],
            "source": {"type": "file", "path": str(src), "format": "parquet"}})
        assert r.status_code == 201, r.text
        for body in ({"name": "amount", "data_type": "float"},
                     {"name": "n_1d", "data_type": "int", "window_size": "1d",
                      "transformation": "COUNT(*)"},
                     {"name": "max_1d", "data_type": "float", "window_size": "1d",
                      "transformation": "MAX(amount)"}):
            body["feature_set_id"] = "txn"
            r = s.post(server.base_url + "/api/v1/features", json=body)
            assert r.status_code == 201, r.text
    finally:
        assert server.stop() == 0

    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    shutil.copytree(base, clean)
    shutil.copytree(base, crashed)

    t0 = time.monotonic()
    p = materialize(clean)
    out, err = p.communicate(timeout=300)
    clean_seconds = time.monotonic() - t0
    print(f"clean run: {clean_seconds:.2f}s")
    assert p.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"

    # Kill at points spread over a clean run's duration, each attempt starting
    # from what the previous killed one left behind.
    progress = []
    for fraction in (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
        p = materialize(crashed)
        time.sleep(clean_seconds * fraction)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        root = crashed / "offline" / "txn" / "v1"
        progress.append(len(list(root.glob("date=*"))) if root.exists() else 0)
    # Some kill landed in the middle of the run: part of the days were written.
    assert any(0 < n < DAYS for n in progress), progress
    p = materialize(crashed)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"

    clean_rows, clean_parts = offline_rows(clean)
    crashed_rows, crashed_parts = offline_rows(crashed)
    assert len(clean_rows) > 100_000
    assert crashed_parts == clean_parts
    # The same rows, one version each. Only the created times differ: they
    # are when the store learned each row (the killed attempts' chunks keep
    # theirs: a row brought again unchanged keeps its first created time).
    assert without_created(crashed_rows) == without_created(clean_rows)
    assert len({(r["user_id"], r["event_timestamp"]) for r in crashed_rows}) == len(crashed_rows)
    assert without_created(online_records(crashed)) == without_created(online_records(clean))
