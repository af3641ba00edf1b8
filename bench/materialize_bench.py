#!/usr/bin/env python3
"""Materialization throughput: Parquet source -> features -> offline Parquet
store + RocksDB online store, with the fstore CLI (`fstore materialize`).

Generates N source rows (default 10M) over 30 days for E entities (default
100k), defines 10 features (8 row expressions/columns and 2 windows of 7 days)
through the REST API, then runs `fstore materialize` under /usr/bin/time and
prints rows/s, CPU seconds and peak memory, median of --runs runs.

    .venv/bin/python bench/materialize_bench.py [--rows 10000000] [--entities 100000] [--runs 3]
        [--days 30] [--redis-url redis://127.0.0.1:6379/0]

With --redis-url the online store is that Redis (flushed before each run)
instead of the embedded RocksDB store.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests

ROOT = Path(__file__).resolve().parent.parent
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAYS = 30  # --days
REDIS_URL = ""  # --redis-url


def env():
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("FSTORE_") and k not in ("DATABASE_URL", "REDIS_URL")}
    if REDIS_URL:
        e["REDIS_URL"] = REDIS_URL
    return e


def flush_redis():
    if REDIS_URL:
        subprocess.run(["redis-cli", "-u", REDIS_URL, "FLUSHDB"], check=True,
                       capture_output=True)


def make_source(path, rows, entities, files=8):
    files = max(files, rows // 1_250_000)
    per_file = rows // files
    for i in range(files):
        n = per_file if i < files - 1 else rows - per_file * (files - 1)
        users = pc.cast(pc.floor(pc.multiply(pc.random(n), entities)), pa.int64())
        micros = pc.cast(pc.floor(pc.multiply(pc.random(n), DAYS * 86_400_000_000)), pa.int64())
        times = pc.cast(pc.add(micros, START_US), pa.timestamp("us", tz="UTC"))
        amount = pc.round(pc.multiply(pc.random(n), 100), 2)
        pq.write_table(pa.table({"user_id": users, "event_timestamp": times, "amount": amount}),
                       path / f"part-{i}.parquet", row_group_size=256 * 1024)


FEATURES = [
    {"name": "amount", "data_type": "float"},
    {"name": "amount_x2", "data_type": "float", "transformation": "amount * 2"},
    {"name": "amount_sq", "data_type": "float", "transformation": "amount * amount"},
    {"name": "is_big", "data_type": "bool", "transformation": "amount > 50"},
    {"name": "band", "data_type": "string",
     "transformation": "CASE WHEN amount > 75 THEN 'high' ELSE 'low' END"},
    {"name": "amount_round", "data_type": "int", "transformation": "ROUND(amount)"},
    {"name": "hour", "data_type": "float", "transformation": "EXTRACT(HOUR FROM event_timestamp)"},
    {"name": "log_amount", "data_type": "float", "transformation": "LN(amount + 1)"},
    {"name": "n_7d", "data_type": "int", "window_size": "7d", "transformation": "COUNT(*)"},
    {"name": "spend_7d", "data_type": "float", "window_size": "7d", "transformation": "SUM(amount)"},
]


def define(binary, data_dir, source_dir):
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--host", "127.0.0.1",
                             "--data-dir", str(data_dir), "--log-level", "warn"],
                            stdout=subprocess.PIPE, text=True, env=env())
    port = None
    for line in proc.stdout:
        if line.startswith("fstore listening on port "):
            port = int(line.split()[-1])
            break
    base = f"http://127.0.0.1:{port}"
    try:
        r = requests.post(base + "/api/v1/entities",
                          json={"name": "user", "join_keys": ["user_id"], "value_type": "int"})
        assert r.status_code == 201, r.text
        r = requests.post(base + "/api/v1/feature-sets", json={
            "name": "txn", "entities": ["user"],
            "source": {"type": "file", "path": str(source_dir), "format": "parquet"}})
        assert r.status_code == 201, r.text
        for f in FEATURES:
            r = requests.post(base + "/api/v1/features", json={**f, "feature_set_id": "txn"})
            assert r.status_code == 201, r.text
    finally:
        proc.terminate()
        proc.wait(30)


def run_once(binary, template, work, rerun=False):
    """One materialization of the whole range on a fresh copy of `template`;
    with `rerun`, a first one untimed and the same range again timed (every
    row is brought again: the stores compare it with what they hold)."""
    data = work / "run"
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(template, data)
    flush_redis()
    end = time.strftime("%Y-%m-%d", time.gmtime(START_US / 1e6 + DAYS * 86400))
    cmd = ["/usr/bin/time", "-v", binary, "materialize", "txn", "--start", "2024-01-01",
           "--end", end, "--data-dir", str(data), "--log-level", "warn"]
    if rerun:
        first = subprocess.run(cmd, capture_output=True, text=True, env=env())
        if first.returncode != 0:
            raise RuntimeError(first.stderr[-2000:])
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env())
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    job = __import__("json").loads(out.stdout)
    stats = out.stderr
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", stats).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", stats).group(1))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats).group(1))
    return {"wall": wall, "job_seconds": job["duration_seconds"], "cpu": user + system,
            "rss_mb": rss_kb / 1024, "rows": job["rows_read"],
            "offline": job["rows_written_offline"], "online": job["rows_written_online"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "build" / "fstore"))
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--days", type=int, default=30,
                    help="days the source spans (the same rows per day with --rows scaled: "
                         "peak memory must not grow with it)")
    ap.add_argument("--redis-url", default="",
                    help="online store on this Redis (flushed before each run), not RocksDB")
    ap.add_argument("--rerun", action="store_true",
                    help="time a second run of the same range over the first one's data")
    args = ap.parse_args()
    global DAYS, REDIS_URL
    DAYS = args.days
    REDIS_URL = args.redis_url
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "source"
        source.mkdir()
        t0 = time.monotonic()
        make_source(source, args.rows, args.entities)
        print(f"generated {args.rows:,} rows for {args.entities:,} entities in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
        template = work / "template"
        define(args.binary, template, source)
        results = [run_once(args.binary, template, work, args.rerun) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    store = f"Redis {REDIS_URL}" if REDIS_URL else "RocksDB"
    print(f"fstore materialize: {args.rows:,} source rows, {args.entities:,} entities, "
          f"10 features (2 windows of 7 days), {DAYS} days, online store {store}"
          f"{', a re-run of the range' if args.rerun else ''}; median of {args.runs} runs")
    print("| metric | value |")
    print("|---|---|")
    print(f"| wall time (process) | {med['wall']:.2f} s |")
    print(f"| job duration | {med['job_seconds']:.2f} s |")
    print(f"| throughput (source rows / wall) | {args.rows / med['wall']:,.0f} rows/s |")
    print(f"| CPU time (user+sys) | {med['cpu']:.2f} s |")
    print(f"| peak memory (RSS) | {med['rss_mb']:.0f} MB |")
    print(f"| rows written offline | {med['offline']:,.0f} |")
    print(f"| records written online | {med['online']:,.0f} |")
    walls = ", ".join("%.2f" % r["wall"] for r in results)
    print(f"runs (wall s): {walls}")


if __name__ == "__main__":
    main()
