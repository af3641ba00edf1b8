#!/usr/bin/env python3
"""Online serving latency under fixed request rates: POST /api/v1/serving/online
on loopback, against nginx serving a static response of the same size as the
ceiling of the HTTP layer on this machine.

Starts build/fstore (embedded SQLite registry, RocksDB online store) in a temp
dir, defines a string-keyed entity and 25 feature sets x 10 features (float and
int source columns) over Parquet files of 100k entities (one row per entity per
set), materializes them, then for each workload writes a file of request bodies
with random entities and runs bench/online/loadgen (open loop, fixed rate, K
keep-alive connections, latency from each request's scheduled send time) at a
ladder of rates. The same ladder runs against nginx (one worker) answering the
POST with a static copy of a real fstore response of that workload.

A rate is "held" when the achieved rate is at least 99% of the target, nothing
failed, and p99 is under the workload's budget (docs ARCHITECTURE.md,
"Performance budgets": 1 ms for one entity, 5 ms for a batch of 100).

    .venv/bin/python bench/online/online_bench.py [--quick] [--duration 10]
        [--connections 32] [--workloads 1x10,1x50,100x50,100x250] [--no-nginx]
        [--server-io-threads 0] [--json-out results.json] [--stall-probe 10]
        [--repeat 1]

With --repeat N, each workload's fstore and nginx ladders run N times,
alternating (fstore, nginx, fstore, nginx, ...), and the tables give per rate
the median over the runs (errors: the sum), judge "held" on those medians,
and list each run's p99. Each run also records the hypervisor's steal time
over it (machine-wide "cpu" line of /proc/stat, both CPUs summed, and per CPU)
as ms stolen per second of the run.

Before the runs, bench/online/stall_probe spins one thread on each CPU and
reports how often each CPU was taken away for more than 0.5 ms: on a shared
virtual machine both CPUs busy can lose several milliseconds a few times a
second, which a p99 budget of 1 ms does not survive (docs/benchmarks.md).
"""
import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOADGEN_SRC = HERE / "loadgen.cc"
LOADGEN_BIN = ROOT / "build" / "bench" / "online_loadgen"
PROBE_SRC = HERE / "stall_probe.cc"
PROBE_BIN = ROOT / "build" / "bench" / "stall_probe"
WAKE_SRC = HERE / "wake_probe.cc"
WAKE_BIN = ROOT / "build" / "bench" / "wake_probe"
SERVING_PATH = "/api/v1/serving/online"

ENTITIES = 100_000
SETS = 25
FEATURES_PER_SET = 10
EVENT_TIME_US = 1_704_110_400_000_000  # 2024-01-01T12:00:00Z

# name -> (entities per request, feature sets per request, p99 budget in ms, rate ladder, quick ladder)
WORKLOADS = {
    "1x10": (1, 1, 1.0, [1000, 2000, 5000, 10000, 20000, 30000], [1000, 5000, 20000]),
    "1x50": (1, 5, 1.0, [1000, 2000, 5000, 10000, 20000, 30000], [1000, 5000, 20000]),
    "100x50": (100, 5, 5.0, [20, 50, 100, 200, 500, 1000, 2000], [50, 200]),
    "100x250": (100, 25, 5.0, [10, 20, 50, 100, 200, 500, 1000], [10, 50]),
}


REDIS_URL = ""  # --redis-url: the online store on that Redis instead of RocksDB
SERVER_ENV = {}  # --server-env: settings given to fstore serve


def env():
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("FSTORE_") and k not in ("DATABASE_URL", "REDIS_URL")}
    if REDIS_URL:
        e["REDIS_URL"] = REDIS_URL
    e.update(SERVER_ENV)
    return e


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build_tool(src, binary):
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return
    binary.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["g++", "-std=c++20", "-O2", "-DNDEBUG", "-Wall", "-Wextra", "-o", str(binary),
           str(src), "-pthread"]
    log(f"building {binary.name}: " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_loadgen():
    build_tool(LOADGEN_SRC, LOADGEN_BIN)


def stall_probe(seconds):
    """Both CPUs spinning: how often and how long each was taken away (see
    stall_probe.cc). Run before the server starts, on an otherwise idle machine."""
    build_tool(PROBE_SRC, PROBE_BIN)
    out = subprocess.run([str(PROBE_BIN), "--seconds", str(seconds), "--cpus", "0,1"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return "; ".join(f"CPU {c['cpu']}: {c['gaps']} gaps over {result['threshold_ms']:g} ms, "
                     f"{c['total_ms']:.1f} ms in all, longest {c['max_ms']:.2f} ms"
                     for c in result["cpus"]) + f" (in {result['seconds']:g} s)"


def wake_probe():
    """A fixed ~1 ms of CPU work timed back to back and after 20 ms sleeps
    (see wake_probe.cc): what a lightly loaded server's request costs here."""
    build_tool(WAKE_SRC, WAKE_BIN)
    out = subprocess.run([str(WAKE_BIN), "--runs", "200", "--sleep-ms", "20"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    h, a = r["hot_us"], r["after_sleep_us"]
    return (f"the same CPU work (formatting 12,500 doubles) back to back: p50 {h['p50']:.0f} us, "
            f"p99 {h['p99']:.0f} us; after {r['sleep_ms']} ms of sleep: p50 {a['p50']:.0f} us, "
            f"p99 {a['p99']:.0f} us, max {a['max']:.0f} us ({r['runs']} runs each)")


def warm_up(base, bodies_path):
    """Every distinct request once, one at a time, before the ladder: the
    ladder then measures a warm server (RocksDB's block cache, the record
    cache). Returns the server-side latency_ms of these cold requests."""
    s = requests.Session()
    latencies = []
    for line in Path(bodies_path).read_text().splitlines():
        r = s.post(base + SERVING_PATH, data=line, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        latencies.append(r.json()["metadata"]["latency_ms"])
    latencies.sort()
    return latencies


def set_name(s):
    return f"bench_fs_{s:02d}"


def feature_name(s, f):
    return f"s{s:02d}_f{f}"


def user(i):
    return f"u{i:06d}"


# --pin: the server and nginx on CPU 1, the load generator on CPU 0 (each its
# own core instead of sharing both); empty: no pinning.
SERVER_CPUS = ""
LOADGEN_CPUS = ""


def pinned(cmd, cpus):
    return ["taskset", "-c", cpus] + cmd if cpus else cmd


def start_server(binary, data_dir, io_threads):
    proc = subprocess.Popen(pinned([binary, "serve", "--port", "0", "--host", "127.0.0.1",
                             "--data-dir", str(data_dir), "--log-level", "warn",
                             "--io-threads", str(io_threads)], SERVER_CPUS),
                            stdout=subprocess.PIPE, text=True, env=env())
    for line in proc.stdout:
        if line.startswith("fstore listening on port "):
            return proc, int(line.split()[-1])
    proc.wait(5)
    raise RuntimeError("fstore serve did not start")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def define_and_materialize(base, source_dir):
    """The entity, 25 Parquet sources and feature sets of 10 features, materialized."""
    s = requests.Session()
    r = s.post(base + "/api/v1/entities",
               json={"name": "user", "join_keys": ["user_id"], "value_type": "string"})
    assert r.status_code == 201, r.text
    keys = pa.array([user(i) for i in range(ENTITIES)])
    times = pa.array([EVENT_TIME_US] * ENTITIES, pa.timestamp("us", tz="UTC"))
    rng = random.Random(7)
    for si in range(SETS):
        cols = {"user_id": keys, "event_timestamp": times}
        for f in range(FEATURES_PER_SET):
            if f % 2 == 0:
                cols[feature_name(si, f)] = pa.array(
                    [rng.random() * 1000 for _ in range(ENTITIES)], pa.float64())
            else:
                cols[feature_name(si, f)] = pa.array(
                    [rng.randrange(1_000_000) for _ in range(ENTITIES)], pa.int64())
        path = source_dir / f"{set_name(si)}.parquet"
        pq.write_table(pa.table(cols), path)
        r = s.post(base + "/api/v1/feature-sets", json={
            "name": set_name(si), "entities": ["user"], "owner": "bench",
            "source": {"type": "file", "path": str(path), "format": "parquet"}})
        assert r.status_code == 201, r.text
        for f in range(FEATURES_PER_SET):
            r = s.post(base + "/api/v1/features", json={
                "name": feature_name(si, f), "feature_set_id": set_name(si),
                "data_type": "float" if f % 2 == 0 else "int"})
            assert r.status_code == 201, r.text
    t0 = time.monotonic()
    for si in range(SETS):
        r = s.post(base + f"/api/v1/feature-sets/{set_name(si)}/materialize",
                   json={"start_date": "2024-01-01", "end_date": "2024-01-02", "wait": True})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    log(f"materialized {SETS} sets x {ENTITIES:,} entities in {time.monotonic() - t0:.1f}s")


def request_body(rng, n_entities, n_sets):
    sets = list(range(n_sets))
    return {
        "feature_sets": [set_name(si) for si in sets],
        "entities": {"user": [user(rng.randrange(ENTITIES)) for _ in range(n_entities)]},
        "features": [feature_name(si, f) for si in sets for f in range(FEATURES_PER_SET)],
    }


def write_bodies(path, n_entities, n_sets, count, seed):
    rng = random.Random(seed)
    with open(path, "w") as out:
        for _ in range(count):
            out.write(json.dumps(request_body(rng, n_entities, n_sets), separators=(",", ":")))
            out.write("\n")


def check_response(base, bodies_path, n_entities, n_features):
    """One request of the workload must answer every entity and feature; its
    body is what nginx will serve."""
    body = json.loads(Path(bodies_path).read_text().splitlines()[0])
    r = requests.post(base + SERVING_PATH, json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["metadata"]["missing_entities"] == {}, got["metadata"]
    assert len(got["features"]) == len(set(body["entities"]["user"]))
    assert all(len(v) == n_features for v in got["features"].values())
    log(f"  one request of {n_entities} x {n_features}: {len(r.content):,} bytes, server "
        f"latency_ms {got['metadata']['latency_ms']:.3f}, round trip "
        f"{r.elapsed.total_seconds() * 1000:.3f} ms (first call, cold)")
    return r.content


def nginx_worker_pids(master):
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work, static_files):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        log("installing nginx-light")
        subprocess.run(["apt-get", "install", "-y", "nginx-light"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ngx = work / "nginx"
    (ngx / "root").mkdir(parents=True)
    (ngx / "logs").mkdir()
    for name, content in static_files.items():
        (ngx / "root" / f"{name}.json").write_bytes(content)
    # The worker runs as nobody when nginx starts as root: let it read the files.
    for d in (work, ngx, ngx / "root"):
        d.chmod(0o755)
    port = free_port()
    # nginx answers 405 to a POST on a static file; error_page turns that into
    # a 200 with the file (an internal redirect as GET). keepalive_requests is
    # raised so that connections stay open for the whole run, as fstore's do.
    (ngx / "nginx.conf").write_text(f"""
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {ngx}/body;
  proxy_temp_path {ngx}/proxy;
  fastcgi_temp_path {ngx}/fastcgi;
  uwsgi_temp_path {ngx}/uwsgi;
  scgi_temp_path {ngx}/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    root {ngx}/root;
    default_type application/json;
    location / {{ error_page 405 =200 $uri; }}
  }}
}}
""")
    proc = subprocess.Popen(pinned([nginx, "-p", str(ngx), "-c", str(ngx / "nginx.conf"),
                                    "-g", "daemon off;"], SERVER_CPUS), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    status = None
    for _ in range(100):
        try:
            r = requests.post(f"http://127.0.0.1:{port}/{next(iter(static_files))}.json", data="{}")
            status = r.status_code
            if status == 200:
                return proc, port
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("nginx exited: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.05)
    proc.terminate()
    proc.wait(30)
    raise RuntimeError(f"nginx did not answer 200 (last status {status}); "
                       f"see {ngx / 'logs' / 'error.log'}")


def cpu_seconds(pids):
    """User + system CPU seconds of the processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def steal_ticks():
    """Steal time so far (USER_HZ ticks) of the "cpu" line of /proc/stat (all
    CPUs summed) and of each "cpuN" line: {"cpu": ..., "cpu0": ..., ...}."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        fields = line.split()
        # user nice system idle iowait irq softirq steal ...
        ticks[fields[0]] = int(fields[8]) if len(fields) > 8 else 0
    return ticks


def loadgen(port, path, rate, duration, connections, bodies, server_pids=()):
    cpu0 = cpu_seconds(server_pids)
    cmd = [str(LOADGEN_BIN), "--port", str(port), "--path", path, "--rate", str(rate),
           "--duration", str(duration), "--connections", str(connections), "--bodies", str(bodies)]
    steal0, t0 = steal_ticks(), time.monotonic()
    out = subprocess.run(pinned(cmd, LOADGEN_CPUS), capture_output=True, text=True,
                         timeout=duration + 60)
    steal1, elapsed = steal_ticks(), time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_s"] = cpu_seconds(server_pids) - cpu0
    done = result["completed"] + result["non200"]
    result["server_cpu_us_per_req"] = result["server_cpu_s"] * 1e6 / done if done else 0.0
    # Hypervisor steal over the run (from just before the load generator
    # started to just after it exited): ms stolen per second, "cpu" summed
    # over all CPUs, "cpuN" each CPU.
    ms_per_tick = 1000 / os.sysconf("SC_CLK_TCK")
    steal = {c: (steal1[c] - steal0[c]) * ms_per_tick / elapsed
             for c in steal1 if c in steal0}
    result["steal_ms_per_s"] = steal.pop("cpu", 0.0)
    result["steal_ms_per_s_by_cpu"] = steal
    result["steal_window_s"] = elapsed
    return result


def held(r, budget_ms):
    return (r["achieved_rate"] >= 0.99 * r["target_rate"] and r["errors"] == 0
            and r["p99_us"] <= budget_ms * 1000)


def ladder(port, path, rates, duration, connections, bodies, label, pids):
    # Warm-up at the lowest rate (page cache, RocksDB block cache, allocator).
    loadgen(port, path, rates[0], min(duration, 2), connections, bodies)
    results = []
    for rate in rates:
        r = loadgen(port, path, rate, duration, connections, bodies, pids)
        results.append(r)
        by_cpu = ", ".join(f"{c} {v:.1f}" for c, v in sorted(r["steal_ms_per_s_by_cpu"].items()))
        log(f"  {label:6s} {rate:>6} req/s: achieved {r['achieved_rate']:>8.0f}, "
            f"p50 {r['p50_us'] / 1000:.3f} ms, p99 {r['p99_us'] / 1000:.3f} ms, "
            f"p99.9 {r['p999_us'] / 1000:.3f} ms, errors {r['errors']}, "
            f"server CPU {r['server_cpu_us_per_req']:.0f} us/req, loadgen CPU "
            f"{r['loadgen_cpu_s'] / r['duration_s'] * 100:.0f}%, steal "
            f"{r['steal_ms_per_s']:.1f} ms/s ({by_cpu})")
        if r["achieved_rate"] < 0.9 * rate:
            break  # saturated: higher rates only queue more
        time.sleep(0.5)
    return results


MEDIAN_KEYS = ("achieved_rate", "p50_us", "p99_us", "p999_us", "max_us",
               "server_cpu_us_per_req", "steal_ms_per_s")


def combine_runs(runs):
    """The ladders of the repeats (a list of lists of loadgen results) as one
    row per target rate: the median over the runs that reached that rate of
    each of MEDIAN_KEYS, the errors summed, "runs" how many runs reached it
    and "p99_runs_us" each one's p99 (in the order of the runs)."""
    by_rate = {}
    for results in runs:
        for r in results:
            by_rate.setdefault(r["target_rate"], []).append(r)
    rows = []
    for rate in sorted(by_rate):
        rs = by_rate[rate]
        row = {"target_rate": rate, "runs": len(rs), "errors": sum(r["errors"] for r in rs),
               "p99_runs_us": [r["p99_us"] for r in rs]}
        for k in MEDIAN_KEYS:
            row[k] = statistics.median(r[k] for r in rs)
        rows.append(row)
    return rows


def highest_held(rows, budget_ms, repeats):
    """The highest rate held on the medians; a rate that some run did not
    reach (its ladder stopped lower) is not counted as held."""
    return max((r["target_rate"] for r in rows
                if r["runs"] == repeats and held(r, budget_ms)), default=None)


def fmt_ms(us):
    return f"{us / 1000:.3f}"


def runs_note(row, repeats):
    return f" ({row['runs']} of {repeats} runs)" if row["runs"] < repeats else ""


def print_workload_table(name, budget_ms, nbytes, fs_rows, ngx_rows, repeats):
    """fs_rows, ngx_rows: combine_runs() of the repeats' ladders."""
    medians = f"; median of {repeats} runs per rate" if repeats > 1 else ""
    print(f"\n### {name}: p99 budget {budget_ms:g} ms, response {nbytes:,} bytes{medians}\n")
    each = " p99 ms of each run |" if repeats > 1 else ""
    print("| target req/s | fstore achieved | p50 ms | p99 ms | p99.9 ms | max ms | errors "
          f"| server CPU us/req | steal ms/s |{each} nginx achieved | p50 ms | p99 ms | p99.9 ms "
          "| steal ms/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if repeats > 1 else "")
          + "---:|---:|---:|---:|---:|")
    rates = sorted({r["target_rate"] for r in fs_rows + ngx_rows})
    by_rate_fs = {r["target_rate"]: r for r in fs_rows}
    by_rate_ngx = {r["target_rate"]: r for r in ngx_rows}
    for rate in rates:
        f = by_rate_fs.get(rate)
        n = by_rate_ngx.get(rate)
        if f:
            fs_cells = (f"{f['achieved_rate']:,.0f} | {fmt_ms(f['p50_us'])} | "
                        f"{fmt_ms(f['p99_us'])} | {fmt_ms(f['p999_us'])} | {fmt_ms(f['max_us'])} | "
                        f"{f['errors']} | {f['server_cpu_us_per_req']:.0f} | "
                        f"{f['steal_ms_per_s']:.1f}")
            if repeats > 1:
                fs_cells += (" | " + " / ".join(fmt_ms(p) for p in f["p99_runs_us"])
                             + runs_note(f, repeats))
        else:
            fs_cells = "(saturated) | | | | | | |" + (" |" if repeats > 1 else "")
        if n:
            ngx_cells = (f"{n['achieved_rate']:,.0f}{runs_note(n, repeats)} | "
                         f"{fmt_ms(n['p50_us'])} | {fmt_ms(n['p99_us'])} | "
                         f"{fmt_ms(n['p999_us'])} | {n['steal_ms_per_s']:.1f}")
        else:
            ngx_cells = ("-" if not ngx_rows else "(saturated)") + " | | | |"
        print(f"| {rate:,.0f} | {fs_cells} | {ngx_cells} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "build" / "fstore"))
    ap.add_argument("--quick", action="store_true", help="short runs, fewer rates (smoke run)")
    ap.add_argument("--duration", type=float, help="seconds per rate (default 10, --quick 2)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx ceiling")
    ap.add_argument("--rates", default="",
                    help="comma-separated request rates instead of each workload's ladder")
    ap.add_argument("--server-io-threads", type=int, default=0,
                    help="fstore serve --io-threads (0: one per core)")
    ap.add_argument("--bodies", type=int, default=1000, help="distinct request bodies per workload")
    ap.add_argument("--json-out", help="also write every loadgen result here (per workload "
                    "and server, a list of each repeat's ladder)")
    ap.add_argument("--redis-url", default="",
                    help="online store on this Redis (flushed first), not the embedded RocksDB")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for fstore serve (repeatable), e.g. "
                         "FSTORE_ONLINE_RECORD_CACHE_MB=0")
    ap.add_argument("--pin", action="store_true",
                    help="server and nginx on CPU 1, the load generator on CPU 0")
    ap.add_argument("--stall-probe", type=float, default=10,
                    help="seconds of stall_probe (both CPUs spinning) before the runs; 0: none")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each workload's ladders N times (fstore and nginx alternating) "
                         "and report the median of the runs per rate")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    global REDIS_URL, SERVER_CPUS, LOADGEN_CPUS
    for setting in args.server_env:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            ap.error(f"--server-env {setting!r}: expected NAME=VALUE")
        SERVER_ENV[name] = value
    if args.pin:
        SERVER_CPUS, LOADGEN_CPUS = "1", "0"
    REDIS_URL = args.redis_url
    if REDIS_URL:
        subprocess.run(["redis-cli", "-u", REDIS_URL, "FLUSHDB"], check=True,
                       capture_output=True)
    duration = args.duration or (2.0 if args.quick else 10.0)
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w}; known: {', '.join(WORKLOADS)}")

    build_loadgen()
    stalls = wake = ""
    if args.stall_probe > 0:
        stalls = stall_probe(args.stall_probe)
        log("machine stalls: " + stalls)
        wake = wake_probe()
        log("work after sleep: " + wake)
    summary = []
    raw = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "source").mkdir()
        proc, port = start_server(args.binary, work / "data", args.server_io_threads)
        ngx = None
        try:
            base = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            define_and_materialize(base, work / "source")
            log(f"setup in {time.monotonic() - t0:.1f}s; server RSS {rss_mb(proc.pid):.0f} MB")
            bodies, static, cold = {}, {}, {}
            for i, w in enumerate(names):
                n_ent, n_sets, _, _, _ = WORKLOADS[w]
                bodies[w] = work / f"bodies_{w}.txt"
                write_bodies(bodies[w], n_ent, n_sets, args.bodies, seed=100 + i)
                static[w] = check_response(base, bodies[w], n_ent, n_sets * FEATURES_PER_SET)
                t0 = time.monotonic()
                lat = warm_up(base, bodies[w])
                cold[w] = (len(lat), lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)])
                log(f"  warm-up, each of {len(lat)} requests once in {time.monotonic() - t0:.1f}s: "
                    f"server latency_ms p50 {cold[w][1]:.3f}, p99 {cold[w][2]:.3f} (cold)")
            if not args.no_nginx:
                ngx, ngx_port = start_nginx(work, static)
            for w in names:
                n_ent, n_sets, budget, rates, quick_rates = WORKLOADS[w]
                rates = quick_rates if args.quick else rates
                if args.rates:
                    rates = [int(r) for r in args.rates.split(",")]
                log(f"workload {w} ({n_ent} entities x {n_sets * FEATURES_PER_SET} features)")
                fs_runs, ngx_runs = [], []
                for i_run in range(args.repeat):
                    run = f" (run {i_run + 1} of {args.repeat})" if args.repeat > 1 else ""
                    if run:
                        log(f" fstore{run}")
                    fs_runs.append(ladder(port, SERVING_PATH, rates, duration, args.connections,
                                          bodies[w], "fstore", [proc.pid]))
                    if ngx:
                        if run:
                            log(f" nginx{run}")
                        ngx_runs.append(ladder(ngx_port, f"/{w}.json", rates, duration,
                                               args.connections, bodies[w], "nginx",
                                               nginx_worker_pids(ngx.pid)))
                raw[w] = {"fstore": fs_runs, "nginx": ngx_runs}
                fs_rows, ngx_rows = combine_runs(fs_runs), combine_runs(ngx_runs)
                fs_best = highest_held(fs_rows, budget, args.repeat)
                ngx_best = highest_held(ngx_rows, budget, args.repeat)
                summary.append((w, budget, len(static[w]), fs_best, ngx_best, fs_rows, ngx_rows))
            server_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            if ngx:
                ngx.terminate()
                ngx.wait(30)

    medians = (f", median of {args.repeat} runs per rate (fstore and nginx ladders "
               f"alternating)" if args.repeat > 1 else "")
    print(f"fstore online serving, open loop: {duration:g} s per rate{medians}, {args.connections} "
          f"keep-alive connections, {ENTITIES:,} entities, {SETS} feature sets x "
          f"{FEATURES_PER_SET} features ({'Redis ' + REDIS_URL if REDIS_URL else 'RocksDB with its record cache'}, no serving cache); latency from the scheduled "
          f"send time; nginx (1 worker) serving a static copy of a response as the ceiling; "
          f"each distinct request sent once before the ladder (warm server)")
    if stalls:
        print(f"\nMachine stalls before the runs (stall_probe, both CPUs busy): {stalls}")
    if wake:
        print(f"\nCPU work after sleep (wake_probe): {wake}")
    print("\nThe warm-up pass (each distinct request once, sequential, cold caches), server-side "
          "latency_ms:")
    for w in names:
        n, p50, p99 = cold[w]
        print(f"- {w}: {n} requests, p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    print("\n| workload | p99 budget | response bytes | fstore highest rate held | "
          "nginx highest rate held |")
    print("|---|---:|---:|---:|---:|")
    for w, budget, nbytes, fs_best, ngx_best, _, _ in summary:
        fsb = f"{fs_best:,.0f} req/s" if fs_best else "none of the ladder"
        ngb = "-" if args.no_nginx else (f"{ngx_best:,.0f} req/s" if ngx_best else "none")
        print(f"| {w} | {budget:g} ms | {nbytes:,} | {fsb} | {ngb} |")
    for w, budget, nbytes, _, _, fs_rows, ngx_rows in summary:
        print_workload_table(w, budget, nbytes, fs_rows, ngx_rows, args.repeat)
    print(f"\nfstore server RSS after the runs: {server_rss:.0f} MB; "
          "held = achieved >= 99% of target, no errors, p99 within the budget; "
          "a ladder stops after a rate achieved below 90% of its target")
    if args.repeat > 1:
        print(f"\nWith {args.repeat} runs: achieved, latencies, server CPU and steal are the "
              "medians over the runs that reached the rate, errors their sum; held is judged on "
              "those medians, and a rate that some run did not reach (its ladder stopped "
              "lower) is not counted as held")
    print(f"\nsteal ms/s: the hypervisor's steal time over each run, /proc/stat \"cpu\" "
          f"(all CPUs summed), in ms per second of the run; /proc/stat counts in ticks of "
          f"{1000 / os.sysconf('SC_CLK_TCK'):g} ms, so a {duration:g} s run resolves "
          f"{1000 / os.sysconf('SC_CLK_TCK') / duration:g} ms/s (the per-CPU figures in the "
          f"log round each CPU separately)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
