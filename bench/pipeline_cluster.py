"""``bench/pipeline.py --redis-cluster``: the same backlog against one Redis and against a
3-master + 3-replica Redis Cluster, in the same run, with one and with three instances.

Each run: fresh topics (3 + 3 fill partitions, 2 tick partitions), ``instances`` daemons
warmed up (group joined, every partition owned, 200 records committed), all SIGSTOPped
while ``--events`` demo-feed records are produced, SIGCONTed; rate = records / (SIGCONT ->
every offset in Redis). Redis commands per batch: ``total_commands_processed`` summed
over the masters (cluster) or the server, divided by the batches. Round trips per batch
are from the commit protocol: one node 2 (WATCH + offsets, then MULTI...EXEC); cluster
1 offset read + 2 per partition written + 1 per aggregate (each source's Overall, aum) +
the document pipeline (one per master it touches) + prices + PUBLISH (+1 when a batch
claims new portfolios).

Floor: one instance on the cluster >= 80 % of its single-Redis rate (median of ``--runs``).
"""

from __future__ import annotations

import re
import signal
import statistics
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.pipeline import WARM_UP, make_topics, produce, start_daemon
from bench.pipeline_probe import committed, stages
from tests.support.daemon import DaemonProcess, wait_for
from tests.support.ports import free_port

FLOOR = 0.8


def _assigned(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.findall(r"^pm_assigned_partitions (\S+)", text, re.M)
    return float(found[0]) if found else 0.0


def _commands(nodes: list[redis.Redis]) -> int:
    total = 0
    for node in nodes:
        info = node.info("stats")
        if node.info("replication").get("role") == "master":
            total += int(info["total_commands_processed"])
    return total


def backlog(bootstrap: str, server: Any, nodes: list[redis.Redis], n: int, tmp: Path,
            instances: int, cluster: bool) -> dict[str, float]:
    """One backlog run; ``server`` has ``.url`` and ``.client()``."""
    uid = "c" + uuid.uuid4().hex[:8]
    names = make_topics(bootstrap, uid)
    client, group = server.client(), f"{uid}-g"
    extra = ["--redis-cluster"] if cluster else []
    ports = [free_port() for _ in range(instances)]
    daemons: list[DaemonProcess] = []
    try:
        for i, port in enumerate(ports):
            daemons.append(start_daemon(bootstrap, server.url, uid, port,
                                        tmp / f"{uid}-{i}.log", extra=extra))
        produce(bootstrap, names, WARM_UP, seed=99)
        wait_for("warm-up", lambda: committed(client, group, names) >= WARM_UP, timeout=120,
                 diagnose=lambda: daemons[0].log()[-2000:])
        if instances > 1:  # every member owns its share before the backlog
            wait_for("the group to split", lambda: [_assigned(p) for p in ports] == [2] * 3,
                     timeout=120, interval=0.2)
            time.sleep(2.0)
        before = [stages(p) for p in ports]
        cmds0 = _commands(nodes)
        for d in daemons:
            d.proc.send_signal(signal.SIGSTOP)
        try:
            produce(bootstrap, names, n, seed=7)
        finally:
            for d in daemons:
                d.proc.send_signal(signal.SIGCONT)
        t0 = time.perf_counter()
        wait_for("all records", lambda: committed(client, group, names) >= WARM_UP + n,
                 timeout=900, interval=0.005, diagnose=lambda: daemons[0].log()[-2000:])
        elapsed = time.perf_counter() - t0
        after = [stages(p) for p in ports]
        batches = sum(a["batches"] - b.get("batches", 0.0) for a, b in zip(after, before, strict=True))
        redis_s = sum(a.get("redis", 0.0) - b.get("redis", 0.0) for a, b in zip(after, before, strict=True))
        cmds = _commands(nodes) - cmds0
        return {"rate": n / elapsed, "batches": batches,
                "redis_ms": 1e3 * redis_s / max(batches, 1),
                "commands": cmds / max(batches, 1)}
    finally:
        for d in daemons:
            d.terminate()


def run(bootstrap: str, single: Any, cluster: Any, n: int, runs: int, tmp: Path) -> bool:
    """Interleaved runs of every configuration; prints the table; True if the floor holds."""
    single_nodes = [single.client()]
    cluster_nodes = [cluster.node(p) for p in cluster.live()]
    got: dict[tuple[str, int], list[dict[str, float]]] = {}
    for run_no in range(runs):
        for instances in (1, 3):
            for name, server, nodes in (("single", single, single_nodes),
                                        ("cluster", cluster, cluster_nodes)):
                r = backlog(bootstrap, server, nodes, n, tmp, instances, name == "cluster")
                got.setdefault((name, instances), []).append(r)
                print(f"run {run_no}: {name:<7} x{instances}: {r['rate']:>9,.0f} ev/s, "
                      f"{r['batches']:.0f} batches, Redis {r['redis_ms']:.1f} ms and "
                      f"{r['commands']:.0f} commands per batch", flush=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in got.items()}
    print(f"\nmedians of {runs} runs, backlog of {n:,} events (box shared with other work: "
          "absolute rates move between runs; the ratio is within one run's interleaving)")
    for instances in (1, 3):
        s, c = med[("single", instances)], med[("cluster", instances)]
        print(f"  x{instances}: single {s['rate']:>9,.0f} ev/s ({s['commands']:.0f} cmd, "
              f"{s['redis_ms']:.1f} ms Redis per batch) | cluster {c['rate']:>9,.0f} ev/s "
              f"({c['commands']:.0f} cmd, {c['redis_ms']:.1f} ms per batch) | ratio "
              f"{c['rate'] / s['rate']:.0%}")
    ratio = med[("cluster", 1)]["rate"] / med[("single", 1)]["rate"]
    ok = ratio >= FLOOR
    print(f"floor: one instance on the cluster {ratio:.0%} of single Redis (>= {FLOOR:.0%}): "
          + ("met" if ok else "MISSED"))
    return ok
