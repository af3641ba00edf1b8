"""Real backend servers for the integration tests, as plain processes on
127.0.0.1 in temp dirs: PostgreSQL (initdb), Redis (standalone, and a
3-master cluster) and an S3 server (moto's server mode: MinIO is not
installable from the registries this machine reaches).

Each class starts its server in __init__, and can stop, kill, pause (SIGSTOP,
for an S3 server that stops answering mid-request) and start again on the same
port and data, which is what the fault tests need.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import random
    for _ in range(1000):
        port = random.randrange(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis cluster node")


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _as_root() -> bool:
    return os.getuid() == 0


class Postgres:
    """A PostgreSQL server of its own (trust auth, user fstore)."""

    def __init__(self, base_dir: pathlib.Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(p.split("/")[-2]))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (scripts/install-deps.sh)")
        self.bin = pathlib.Path(bins[-1])
        self.port = free_port()
        # Under root the server runs as `postgres`, which must reach the dir.
        self.dir = pathlib.Path(f"/tmp/fstore-it-pg-{self.port}")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        if _as_root():
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "fstore", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fstore", "fstore")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if _as_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, db: str = "fstore") -> str:
        return f"postgresql://fstore@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fstore", name)
        return self.url(name)

    def psql(self, sql: str, db: str = "fstore") -> str:
        cmd = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "fstore",
               "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off -c timezone=UTC -c max_connections=200", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """One redis-server; with cluster=True a cluster-enabled node."""

    def __init__(self, base_dir: pathlib.Path, port: Optional[int] = None, cluster: bool = False):
        self.port = port or (cluster_port() if cluster else free_port())
        self.dir = base_dir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--save", "",
                "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # PONG once the AOF is loaded
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis on {self.port} does not answer PING")

    def cli(self, *args: str) -> str:
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                           text=True)
        return r.stdout

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class RedisCluster:
    """Three masters, no replicas, all 16384 slots covered."""

    def __init__(self, base_dir: pathlib.Path):
        self.nodes = [Redis(base_dir, cluster=True) for _ in range(3)]
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes], "--cluster-yes"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis cluster did not reach cluster_state:ok")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def close(self) -> None:
        for n in self.nodes:
            n.close()


class S3Server:
    """moto's S3 server; pause() makes it stop answering (SIGSTOP) while
    keeping its in-memory objects, resume() continues it."""

    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(self, base_dir: pathlib.Path):
        self.port = free_port()
        exe = pathlib.Path(sys.executable).parent / "moto_server"
        self.log = open(base_dir / f"moto-{self.port}.log", "w")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str) -> dict:
        return {"STORAGE_BACKEND": "s3", "S3_ENDPOINT": self.endpoint, "S3_BUCKET": bucket,
                "S3_ACCESS_KEY": self.ACCESS_KEY, "S3_SECRET_KEY": self.SECRET_KEY,
                "S3_REGION": self.REGION}

    def client(self):
        import boto3  # comes with moto
        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=self.ACCESS_KEY,
                            aws_secret_access_key=self.SECRET_KEY, region_name=self.REGION)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()
