"""Measuring a running daemon for ``bench/pipeline.py``: Redis progress, /metrics, CPU."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

from redis.cluster import RedisCluster

from pm_polars.publish.keys import Keys


def committed(client, group: str, names: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    """Records committed (stored next offsets), on one node or a cluster (its key layout)."""
    keys = Keys(cluster=isinstance(client, RedisCluster))
    prefix, end = keys.partition_state(group, "\0", 0, "meta").split("\0:0")
    total = sum(int(client.hget(k, "next_offset") or 0)
                for k in client.scan_iter(f"{prefix}*{end}"))
    ticks = client.hgetall(keys.tick_offsets(names["market.ticks"]))
    return total + sum(int(v) for v in ticks.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stages(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.findall(r'pm_batch_stage_seconds_sum\{stage="(\w+)"\} (\S+)', text)
    batches = re.findall(r"^pm_batches_total (\S+)", text, re.M)
    out = {k: round(float(v), 3) for k, v in found}
    out["batches"] = float(batches[0]) if batches else 0.0
    return out


def histogram(port: int) -> list[tuple[float, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = []
    for le, count in re.findall(r'pm_event_to_redis_seconds_bucket\{le="([^"]+)"\} (\S+)', text):
        out.append((float(le), float(count)))
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= q * total:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (q * total - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return float("nan")
