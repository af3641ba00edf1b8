#!/usr/bin/env python3
"""Definitions API latency over HTTP on loopback, and the server's memory at rest.

Starts build/fstore (embedded SQLite registry) in a temp dir, then measures, from
one keep-alive client, each operation's latency (median and p99 of N calls),
repeated --runs times; prints a table of the medians across runs.

    .venv/bin/python bench/registry_api_bench.py [--runs 3] [--sets 100]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(binary, data_dir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FSTORE_") and k not in ("DATABASE_URL", "REDIS_URL")}
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--host", "127.0.0.1",
                             "--data-dir", data_dir, "--log-level", "warn"],
                            stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("fstore listening on port "):
            return proc, int(line.split()[-1])
    raise RuntimeError("server did not start")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        t0 = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path} -> {resp.status} {payload[:200]!r}")
        return elapsed, payload


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def one_run(binary, sets):
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(binary, tmp)
        try:
            time.sleep(0.3)
            rest = rss_mb(proc.pid)
            c = Client(port)
            times = {}

            def timed(name, method, path, body=None):
                t, _ = c.call(method, path, body)
                times.setdefault(name, []).append(t)

            for i in range(sets):
                timed("POST feature-set", "POST", "/api/v1/feature-sets",
                      {"name": f"fs_{i}", "entities": ["user"], "owner": "bench",
                       "materialization_schedule": "0 */6 * * *", "ttl": "30d",
                       "tags": ["bench"], "description": f"feature set number {i}"})
                for j in range(5):
                    timed("POST feature", "POST", "/api/v1/features",
                          {"name": f"f_{j}", "feature_set_id": f"fs_{i}", "data_type": "float",
                           "transformation": f"amount * {j} + COALESCE(tip, 0)",
                           "validation_rules": {"min_value": 0, "max_value": 1000}})
            for i in range(sets):
                timed("PATCH feature-set", "PATCH", f"/api/v1/feature-sets/fs_{i}",
                      {"description": f"patched {i}"})
            for k in range(sets * 5):
                timed("GET feature-set", "GET", f"/api/v1/feature-sets/fs_{k % sets}")
            for k in range(sets * 2):
                timed("GET feature by ref", "GET", f"/api/v1/features/fs_{k % sets}:f_1")
            for k in range(50):
                timed("GET feature-sets (list)", "GET", "/api/v1/feature-sets")
            for k in range(50):
                timed("GET search", "GET", "/api/v1/search?q=number")
            for k in range(2000):
                timed("GET health", "GET", "/health")
            loaded = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(15)
    return times, rest, loaded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "build" / "fstore"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sets", type=int, default=100)
    args = ap.parse_args()

    runs = [one_run(args.binary, args.sets) for _ in range(args.runs)]
    names = list(runs[0][0].keys())
    print(f"fstore definitions API, {args.runs} runs, {args.sets} feature sets x 5 features, "
          f"one keep-alive client on loopback; medians across runs")
    print(f"| {'operation':<24} | {'calls/run':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'ops/s':>7} |")
    print(f"|{'-' * 26}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for name in names:
        p50 = statistics.median(percentile(r[0][name], 50) for r in runs) * 1000
        p99 = statistics.median(percentile(r[0][name], 99) for r in runs) * 1000
        ops = statistics.median(len(r[0][name]) / sum(r[0][name]) for r in runs)
        print(f"| {name:<24} | {len(runs[0][0][name]):>9} | {p50:>7.3f} | {p99:>7.3f} | {ops:>7.0f} |")
    print(f"\nserver RSS at rest: {statistics.median(r[1] for r in runs):.1f} MB; "
          f"after the run: {statistics.median(r[2] for r in runs):.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
