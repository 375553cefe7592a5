"""A real Redis Cluster for tests: 3 masters + 3 replicas on free loopback ports.

Flags and timings: ``/work/shared/redis-cluster-testing.md``. Bus ports are passed
explicitly (``--cluster-port``: the default port+10000 fails above 55535); replication is
diskless with no delay (a replica is linked ~0.1 s after ``cluster_state:ok``, not 4 s);
``cluster-node-timeout`` 2000 ms (a killed master's replica is promoted in ~3.5-4.5 s).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from .ports import free_port, wait_for_port
from .redis_server import REDIS_SERVER

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
MAX_PORT = 55_535


def _ports(n: int) -> list[int]:
    out: set[int] = set()
    while len(out) < n:
        port = free_port()
        if port <= MAX_PORT:
            out.add(port)
    return sorted(out)


class RedisClusterNodes:
    """Six redis-server processes forming one cluster; ``url`` names the first node."""

    def __init__(self, directory: Path, node_timeout_ms: int = 2000) -> None:
        self.directory = directory
        ports = _ports(12)
        self.ports, self.bus = ports[:6], ports[6:]
        self.node_timeout_ms = node_timeout_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.live()[0]}/0"

    def live(self) -> list[int]:
        return [p for p in self.ports if p in self.procs and self.procs[p].poll() is None]

    def _spawn(self, port: int, bus: int) -> None:
        d = self.directory / str(port)
        d.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled",
             "yes", "--cluster-port", str(bus), "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms), "--dir", str(d),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, timeout: float = 30.0) -> RedisClusterNodes:
        for port, bus in zip(self.ports, self.bus, strict=True):
            self._spawn(port, bus)
        for port in self.ports:
            wait_for_port(port)
        subprocess.run([REDIS_CLI, "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        self.wait_ok(timeout)
        return self

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True,
                           socket_timeout=2.0)

    def masters(self) -> list[int]:
        out = []
        for port in self.live():
            try:
                if self.node(port).execute_command("ROLE")[0] == "master":
                    out.append(port)
            except redis.RedisError:
                continue
        return out

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Every live node: ``cluster_state:ok``, all slots ok, replicas linked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ok(p) for p in self.live()) and len(self.masters()) == 3:
                return
            time.sleep(0.02)
        raise TimeoutError(f"cluster not ok after {timeout} s")

    def _ok(self, port: int) -> bool:
        try:
            node = self.node(port)
            info = node.cluster("INFO")
            if info.get("cluster_state") != "ok" or str(info.get("cluster_slots_ok")) != "16384":
                return False
            repl = node.info("replication")
            return bool(repl.get("role") == "master" or repl.get("master_link_status") == "up")
        except redis.RedisError:
            return False

    def kill(self, port: int) -> None:
        """SIGKILL one node (e.g. a master: its replica is promoted)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(10)

    def restart(self, port: int) -> None:
        """Restart a killed node on its own directory (it rejoins as a replica)."""
        self._spawn(port, self.bus[self.ports.index(port)])
        wait_for_port(port)

    def client(self) -> Any:
        """A ``RedisCluster`` (typed ``Any``: the support helpers take either client)."""
        return RedisCluster.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(10)


@contextmanager
def redis_cluster(directory: Path) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(directory)
    try:
        yield nodes.start()
    finally:
        nodes.stop()
