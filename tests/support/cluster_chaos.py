"""The issue-12 scenario on a Redis Cluster, shared by ``tests/faults/test_cluster.py``
(short) and ``bench/chaos.py --cluster`` (long).

Three daemons with ``--redis-cluster`` in one group over the fill topics, a paced stream
with duplicates, redeliveries and poison; daemons killed with -9 at given shares of the
stream (each replaced by a new one), one Redis master killed with -9 once (its replica is
promoted; the killed node is restarted afterwards and rejoins as a replica). At the end:
every document equals the reference, Overall and aum equal the sums, the prices are the
latest ticks, the applied fill ids are exactly the unique valid fills, every poison record
is in the DLQ.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .chaos import (
    Daemons,
    PacedProducer,
    build_stream,
    check_equal,
    owned,
    read_dead_letters,
    wait_caught_up,
)
from .daemon import DaemonProcess, wait_for
from .names import Names
from .redis_cluster import RedisClusterNodes


@dataclass
class ClusterChaosFigures:
    records: int = 0
    daemon_kills: list[str] = field(default_factory=list)
    master_killed_at: int = 0  # records produced
    promoted_s: float = 0.0  # kill -> three masters again
    stale_reloads: int = 0  # partitions found behind and reloaded (lost or raced writes)
    redis_retries: int = 0  # failed commits retried with backoff
    republished: int = 0
    dead_letters: int = 0
    catch_up_s: float = 0.0  # producer done -> stored offsets at the log end
    stalls_s: list[float] = field(default_factory=list)  # first failed commit -> recovered

    def lines(self) -> list[str]:
        return [f"{self.records:,} records; daemons killed (-9) at {', '.join(self.daemon_kills)}",
                f"master killed (-9) at {self.master_killed_at:,} produced; replica promoted "
                f"after {self.promoted_s:.2f} s",
                f"daemon logs: {self.redis_retries} Redis retries with backoff, "
                f"{self.stale_reloads} stale partitions reloaded",
                f"{self.dead_letters} records dead-lettered; caught up {self.catch_up_s:.1f} s "
                "after the last record was produced",
                "commits stalled by Redis (first failure -> recovered, per daemon): "
                + (", ".join(f"{x:.2f} s" for x in sorted(self.stalls_s)) or "none")]


STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def stalls(log: str) -> list[float]:
    """Seconds from each first ``retry what=checkpoint`` to its ``recovered`` line."""
    out, start = [], None
    for line in log.splitlines():
        m = STAMP.match(line)
        if m is None:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + int(m[4]) / 1000
        if "event=retry what=checkpoint attempt=1 " in line and start is None:
            start = t
        elif "event=recovered what=checkpoint" in line and start is not None:
            out.append((t - start) % 86400)
            start = None
    return out


def _split(members: list[DaemonProcess], total: int) -> bool:
    sets = [owned(d) for d in members]
    return all(sets) and len(set().union(*sets)) == total


def cluster_chaos(bootstrap: str, nodes: RedisClusterNodes, workdir: Path, *,
                  n_events: int, rate: float, kill_at: tuple[float, ...],
                  master_at: float, seed: int = 12, partitions: int = 4,
                  log: bool = True) -> ClusterChaosFigures:
    names = Names("k" + str(time.time_ns())[-10:], fill_partitions=partitions)
    names.create(bootstrap)
    stream = build_stream(names, n_events, seed=seed, redeliver_rate=0.003)
    items = stream.items
    figures = ClusterChaosFigures(records=len(items))
    total = 2 * partitions
    client = nodes.client()
    daemons = Daemons(bootstrap, nodes.url, names, workdir)
    rng = random.Random(seed)
    producer = PacedProducer(bootstrap, items, rate=rate)
    sizes = iter(["300", "1000", "200", "500", "2000", "700", "400"] * 4)

    def start() -> DaemonProcess:
        return daemons.start("--redis-cluster", "--max-events", next(sizes))

    def say(text: str) -> None:
        if log:
            print(f"{producer.acked:>7,} produced: {text}", flush=True)

    try:
        live = [start(), start(), start()]
        wait_for("three members to split", lambda: _split(live, total), timeout=90,
                 diagnose=daemons.tail)
        producer.start()
        events = sorted([(f, "daemon") for f in kill_at] + [(master_at, "master")])
        for share, what in events:
            target = int(share * len(items))
            wait_for(f"{target} records produced", lambda t=target: producer.acked >= t,  # type: ignore[misc]
                     timeout=600, interval=0.02)
            if what == "daemon":
                victim = live.pop(rng.randrange(len(live)))
                victim.kill()
                live.append(start())
                figures.daemon_kills.append(f"{producer.acked:,}")
                say(f"daemon pid {victim.pid} killed (-9), replaced")
            else:
                port = nodes.masters()[rng.randrange(3)]
                figures.master_killed_at = producer.acked
                t0 = time.monotonic()
                nodes.kill(port)
                say(f"Redis master :{port} killed (-9)")
                wait_for("a replica to be promoted", lambda: len(nodes.masters()) == 3,
                         timeout=60, interval=0.05)
                figures.promoted_s = time.monotonic() - t0
                say(f"replica promoted after {figures.promoted_s:.2f} s")
                nodes.restart(port)
        producer.join(timeout=900)
        assert producer.finished.is_set() and not producer.errors, producer.errors[:3]
        assert producer.acked == len(items)
        t0 = time.monotonic()
        wait_caught_up(client, names, items, timeout=300, diagnose=daemons.tail)
        figures.catch_up_s = time.monotonic() - t0
        check_equal(client, names, items, timeout=60, diagnose=daemons.tail)
        dlq = read_dead_letters(bootstrap, names, items)
        assert not dlq.problems, "\n".join(dlq.problems)
        figures.dead_letters = dlq.unique
        logs = "".join(d.log() for d in daemons.started)
        figures.stale_reloads = len(re.findall(r"event=stale_partition", logs))
        figures.redis_retries = len(re.findall(r"event=retry what=checkpoint", logs))
        figures.stalls_s = [x for d in daemons.started for x in stalls(d.log())]
        for d in live:
            assert d.terminate() == 0, daemons.tail()
        return figures
    finally:
        producer.stop_event.set()
        daemons.kill_all()
