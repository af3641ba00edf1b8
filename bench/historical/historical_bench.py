#!/usr/bin/env python3
"""Historical (point-in-time) retrieval: fstore against DuckDB's ASOF JOIN.

Generates N feature rows (default 10M) for E entities (default 100k) over 30
days as a Parquet source, defines an int-keyed entity and a feature set of
plain columns (2 float, 1 int; no windows) through the REST API of
`fstore serve`, materializes it, then generates M entity rows (default 1M:
random entities, 2% of them unknown, random times from 2 days before the
first event to the last) and times, median of --runs:

  * fstore over HTTP: POST /api/v1/serving/historical with the entity rows
    as a JSON entity_df, answered as an Arrow IPC stream (client wall time;
    the server's peak RSS over all runs, under /usr/bin/time -v);
  * fstore in process: bench/historical/historical_join_bench (the join,
    RetrievePointInTime, on the entity Parquet file; one process per run
    under /usr/bin/time -v; needs a build with -DFSTORE_BUILD_BENCHMARKS=ON);
  * DuckDB 1.1 ASOF LEFT JOIN of the same entity file with the offline
    store's Parquet files, SET threads=2, result fetched as an Arrow table
    (one Python process per run under /usr/bin/time -v).

All three results are checked equal on every row. Prints a markdown table.

    .venv/bin/python bench/historical/historical_bench.py --build build-hist
        [--rows 10000000] [--entities 100000] [--entity-rows 1000000] [--runs 3]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import requests

ROOT = Path(__file__).resolve().parent.parent.parent
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400_000_000
DAYS = 30
FEATURES = [("amount", "float"), ("clicks", "int"), ("score", "float")]
THREADS = 2


def env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("FSTORE_") and k not in ("DATABASE_URL", "REDIS_URL")}


def make_source(path, rows, entities, files=8):
    per_file = rows // files
    for i in range(files):
        n = per_file if i < files - 1 else rows - per_file * (files - 1)
        users = pc.cast(pc.floor(pc.multiply(pc.random(n), entities)), pa.int64())
        micros = pc.cast(pc.floor(pc.multiply(pc.random(n), DAYS * DAY_US)), pa.int64())
        times = pc.cast(pc.add(micros, START_US), pa.timestamp("us", tz="UTC"))
        amount = pc.round(pc.multiply(pc.random(n), 100), 2)
        clicks = pc.cast(pc.floor(pc.multiply(pc.random(n), 50)), pa.int64())
        score = pc.random(n)
        pq.write_table(pa.table({"user_id": users, "event_timestamp": times, "amount": amount,
                                 "clicks": clicks, "score": score}),
                       path / f"part-{i}.parquet", row_group_size=256 * 1024)


def make_entities(path, rows, entities):
    users = pc.cast(pc.floor(pc.multiply(pc.random(rows), entities * 1.02)), pa.int64())
    span = (DAYS + 2) * DAY_US
    micros = pc.cast(pc.floor(pc.multiply(pc.random(rows), span)), pa.int64())
    times = pc.cast(pc.add(micros, START_US - 2 * DAY_US), pa.timestamp("us", tz="UTC"))
    table = pa.table({"user_id": users, "event_timestamp": times,
                      "row_id": pa.array(range(rows), pa.int64())})
    pq.write_table(table, path)
    return table


class Server:
    """`fstore serve --port 0` on a data dir, optionally under /usr/bin/time -v."""

    def __init__(self, binary, data_dir, timed=False):
        cmd = [binary, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", str(data_dir),
               "--log-level", "warn", "--max-body-bytes", str(1 << 30)]
        if timed:
            cmd = ["/usr/bin/time", "-v"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env())
        for line in self.proc.stdout:
            if line.startswith("fstore listening on port "):
                self.base = f"http://127.0.0.1:{int(line.split()[-1])}"
                break
        else:
            raise RuntimeError("the server did not start: " + self.proc.stderr.read())

    def stop(self):
        # Under /usr/bin/time the server is its child: signal the server, and
        # time reports when it exits.
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        for pid in pids or [str(self.proc.pid)]:
            os.kill(int(pid), 15)
        _, err = self.proc.communicate(timeout=60)
        return err


def post(base, path, body):
    r = requests.post(base + path, json=body)
    assert r.status_code in (200, 201), (path, r.status_code, r.text[:2000])
    return r


def define_and_materialize(binary, data_dir, source_dir):
    server = Server(binary, data_dir)
    try:
        post(server.base, "/api/v1/entities",
             {"name": "user", "join_keys": ["user_id"], "value_type": "int"})
        post(server.base, "/api/v1/feature-sets", {
            "name": "txn", "entities": ["user"],
            "source": {"type": "file", "path": str(source_dir), "format": "parquet"}})
        for name, kind in FEATURES:
            post(server.base, "/api/v1/features",
                 {"name": name, "data_type": kind, "feature_set_id": "txn"})
        t0 = time.monotonic()
        end = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(START_US / 1e6 + (DAYS + 1) * 86400))
        job = post(server.base, "/api/v1/feature-sets/txn/materialize",
                   {"start_date": "2024-01-01T00:00:00Z", "end_date": end, "wait": True}).json()
        assert job["status"] == "succeeded", job
        print(f"materialized {job.get('rows_written_offline')} rows in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    finally:
        server.stop()


def time_stats(stderr):
    """Peak RSS (MB) and CPU seconds (user + sys) from /usr/bin/time -v."""
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", stderr).group(1))
    return rss_kb / 1024, user + system


def entity_json(entities):
    iso = pc.strftime(entities["event_timestamp"], format="%Y-%m-%dT%H:%M:%S")
    users = entities["user_id"].to_pylist()
    rows = ",".join(f'[{u},"{t}Z"]' for u, t in zip(users, iso.to_pylist()))
    features = json.dumps([f"txn:{n}" for n, _ in FEATURES])
    return ('{"feature_sets": ["txn"], "features": ' + features +
            ', "entity_df": {"columns": ["user_id", "event_timestamp"], "data": [' + rows +
            ']}}').encode()


def run_http(binary, data_dir, entities, runs):
    body = entity_json(entities)
    server = Server(binary, data_dir, timed=True)
    walls, result = [], None
    try:
        for _ in range(runs):
            t0 = time.monotonic()
            r = requests.post(server.base + "/api/v1/serving/historical", data=body,
                              headers={"Content-Type": "application/json",
                                       "Accept": "application/vnd.apache.arrow.stream"})
            walls.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text[:2000]
            result = ipc.open_stream(r.content).read_all()
    finally:
        err = server.stop()
    rss, cpu = time_stats(err)
    return {"walls": walls, "rss_mb": rss, "cpu": cpu / runs, "result": result,
            "body_mb": len(body) / 1e6}


def run_inprocess(bench_bin, data_dir, entity_file, runs, work):
    features = ",".join(n for n, _ in FEATURES)
    base = [bench_bin, "--data-dir", str(data_dir), "--feature-set", "txn",
            "--features", features, "--entities", str(entity_file)]
    joins, walls, rss, cpu = [], [], [], []
    for _ in range(runs):
        t0 = time.monotonic()
        out = subprocess.run(["/usr/bin/time", "-v"] + base, capture_output=True, text=True,
                             env=env())
        walls.append(time.monotonic() - t0)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        joins.append(json.loads(out.stdout.splitlines()[-1])["join_seconds"])
        rss.append(time_stats(out.stderr)[0])
        cpu.append(time_stats(out.stderr)[1])
    output = work / "fstore_inprocess.parquet"
    out = subprocess.run(base + ["--output", str(output)], capture_output=True, text=True,
                         env=env())
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return {"joins": joins, "walls": walls, "rss": rss, "cpu": cpu,
            "result": pq.read_table(output)}


DUCKDB_SCRIPT = r"""
import sys, time, duckdb
offline, entities, threads, output = sys.argv[1:5]
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute("SET enable_progress_bar=false")
query = f'''
SELECT e.user_id, e.event_timestamp, e.row_id, f.amount, f.clicks, f.score
FROM read_parquet('{entities}') e
ASOF LEFT JOIN read_parquet('{offline}', hive_partitioning=false) f
  ON e.user_id = f.user_id AND e.event_timestamp >= f.event_timestamp'''
t0 = time.monotonic()
table = con.execute(query).arrow()
seconds = time.monotonic() - t0
if output != "-":
    import pyarrow.parquet as pq
    pq.write_table(table.sort_by("row_id"), output)
print(seconds, table.num_rows)
"""


def run_duckdb(data_dir, entity_file, runs, work):
    offline = f"{data_dir}/offline/txn/v1/date=*/part-*.parquet"
    base = [sys.executable, "-c", DUCKDB_SCRIPT, offline, str(entity_file), str(THREADS)]
    queries, walls, rss, cpu = [], [], [], []
    for _ in range(runs):
        t0 = time.monotonic()
        out = subprocess.run(["/usr/bin/time", "-v"] + base + ["-"], capture_output=True, text=True)
        walls.append(time.monotonic() - t0)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        queries.append(float(out.stdout.split("\n")[-2].split()[0]))
        rss.append(time_stats(out.stderr)[0])
        cpu.append(time_stats(out.stderr)[1])
    output = work / "duckdb.parquet"
    out = subprocess.run(base + [str(output)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return {"queries": queries, "walls": walls, "rss": rss, "cpu": cpu,
            "result": pq.read_table(output)}


def compare(name, got, want):
    """Every row of `got` (entity-row order) equals DuckDB's (sorted by row_id)."""
    for col, _ in FEATURES:
        a, b = got[col].combine_chunks(), want[col].combine_chunks()
        if a.type != b.type:
            a = a.cast(b.type)
        same = pc.fill_null(pc.equal(a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        ok = pc.or_(same, both_null)
        bad = len(ok) - pc.sum(pc.cast(ok, pa.int64())).as_py()
        if bad:
            idx = pc.indices_nonzero(pc.invert(ok))[0].as_py()
            raise AssertionError(f"{name}: {bad} rows differ in {col}; first at row {idx}: "
                                 f"{a[idx]} vs DuckDB {b[idx]}")
    nulls = want[FEATURES[0][0]].null_count
    print(f"{name}: all {got.num_rows:,} rows equal DuckDB's ({nulls:,} unmatched)",
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"),
                    help="build dir with fstore and bench/historical/historical_join_bench")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--entity-rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--work", help="keep the data here (reused when present)")
    args = ap.parse_args()
    binary = str(Path(args.build) / "fstore")
    bench_bin = Path(args.build) / "bench" / "historical" / "historical_join_bench"
    tmp = tempfile.TemporaryDirectory() if not args.work else None
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    source, data_dir, entity_file = work / "source", work / "data", work / "entities.parquet"
    if not (data_dir / "offline").exists():
        source.mkdir(exist_ok=True)
        t0 = time.monotonic()
        make_source(source, args.rows, args.entities)
        print(f"generated {args.rows:,} rows for {args.entities:,} entities in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
        define_and_materialize(binary, data_dir, source)
    if not entity_file.exists():
        make_entities(entity_file, args.entity_rows, args.entities)
    entities = pq.read_table(entity_file)
    n = entities.num_rows

    rows = []  # (system, timed, seconds per run, peak RSS MB, process CPU s per run)
    duck = run_duckdb(data_dir, entity_file, args.runs, work)
    rows.append(("DuckDB 1.1.3 ASOF LEFT JOIN, threads=2", "query to Arrow table",
                 duck["queries"], statistics.median(duck["rss"]), statistics.median(duck["cpu"])))
    if bench_bin.exists():
        inproc = run_inprocess(str(bench_bin), data_dir, entity_file, args.runs, work)
        compare("fstore in-process", inproc["result"], duck["result"])
        rows.append(("fstore RetrievePointInTime (in process)", "join call",
                     inproc["joins"], statistics.median(inproc["rss"]),
                     statistics.median(inproc["cpu"])))
    else:
        print(f"{bench_bin} not built: no in-process numbers", file=sys.stderr)
    if not args.skip_http:
        http = run_http(binary, data_dir, entities, args.runs)
        got = http["result"]
        compare("fstore HTTP", got.rename_columns(
            [c.split(":")[-1] for c in got.column_names]), duck["result"])
        rows.append((f"fstore POST /serving/historical ({http['body_mb']:.0f} MB JSON in, "
                     "Arrow stream out)", "request, client wall", http["walls"], http["rss_mb"], http["cpu"]))

    print(f"Historical retrieval: {n:,} entity rows against {args.rows:,} feature rows "
          f"({args.entities:,} entities, {DAYS} days, {len(FEATURES)} features); "
          f"median of {args.runs} runs")
    print("| system | timed | median s | entity rows/s | peak RSS MB | process CPU s | runs s |")
    print("|---|---|---|---|---|---|---|")
    for system, measure, secs, rss, cpu in rows:
        med = statistics.median(secs)
        runs = ", ".join(f"{s:.2f}" for s in secs)
        print(f"| {system} | {measure} | {med:.2f} | {n / med:,.0f} | {rss:.0f} | {cpu:.2f} | "
              f"{runs} |")
    print("process CPU s: user + sys of the whole process per run (DuckDB's includes Python "
          "and reading the Parquet files; fstore in process: also reading the entity file; "
          "HTTP: the server's total / runs)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
