"""Redis Cluster (3 masters + 3 replicas, started by the test) with ``--redis-cluster``.

1. One daemon: Kafka -> cluster equals the in-process engine (documents, Overall, aum,
   prices) across a move of every slot to another node (``CLUSTER FAILOVER``: the
   daemon's writes are answered ``MOVED``, it refreshes its slot map and retries); the
   published names are the single-node ones, every partition's keys share one slot, and
   the readers (``PortfolioReader``, async, serve's source, ``pm-polars show``) read them.
2. The issue's scenario: three daemons in one group on a paced stream with duplicates and
   poison; instances killed with -9 mid-stream (and replaced), one Redis master killed
   with -9 once (its replica is promoted); at the end every document equals the reference,
   the aggregates equal the sums, every poison record is in the DLQ.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster
from support import KafkaBroker, produce
from support.chaos import (
    Daemons,
    Names,
    build_stream,
    check_equal,
    produce_items,
    read_dead_letters,
    wait_caught_up,
)
from support.cluster_chaos import cluster_chaos
from support.daemon import wait_for
from support.published import documents
from support.redis_cluster import RedisClusterNodes

from pm_polars.client import PortfolioReader
from pm_polars.client.aio import AsyncPortfolioReader
from pm_polars.publish.keys import Keys, hash_tag
from pm_polars.serve.source import RedisSource

pytestmark = pytest.mark.integration


def _slots_per_partition(client: RedisCluster, names: Names) -> dict[str, set[int]]:
    keys = Keys(cluster=True)
    out: dict[str, set[int]] = {}
    for key in client.scan_iter(f"pm:state:{{{names.group}:*", count=1000):
        out.setdefault(hash_tag(str(key)), set()).add(client.keyslot(str(key)))
    assert out, "no partition state in the cluster"
    assert keys.partition_state(names.group, "t", 0, "meta").startswith("pm:state:{")
    return out


def test_one_daemon_on_a_cluster_equals_the_engine(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, tmp_path: Path
) -> None:
    names = Names("c" + str(time.time_ns())[-10:])
    names.create(broker.bootstrap)
    stream = build_stream(names, 6_000, seed=5, redeliver_rate=0.01)
    half = len(stream.items) // 2
    first, second = stream.items[:half], stream.items[half:]
    produce_items(broker.bootstrap, first)
    client = redis_cluster_nodes.client()
    daemons = Daemons(broker.bootstrap, redis_cluster_nodes.url, names, tmp_path)
    try:
        daemon = daemons.start("--redis-cluster", "--max-events", "500")
        wait_caught_up(client, names, first, timeout=120, diagnose=daemons.tail,
                       alive=daemon.alive)
        # every slot moves to another node (lossless CLUSTER FAILOVER on each replica):
        # the daemon's slot map is stale, its next writes are answered MOVED
        old = set(redis_cluster_nodes.masters())
        for port in set(redis_cluster_nodes.live()) - old:
            redis_cluster_nodes.node(port).execute_command("CLUSTER FAILOVER")
        wait_for("the replicas to take over",
                 lambda: set(redis_cluster_nodes.masters()).isdisjoint(old), timeout=30)
        redis_cluster_nodes.wait_ok()
        reader = PortfolioReader.from_url(redis_cluster_nodes.url, cluster=True)
        updates = reader.subscribe()  # the daemon's PUBLISH reaches a cluster subscriber
        produce_items(broker.bootstrap, second)
        wait_caught_up(client, names, stream.items, timeout=120, diagnose=daemons.tail,
                       alive=daemon.alive)
        check_equal(client, names, stream.items, diagnose=daemons.tail)
        update = updates.get(timeout=10)
        assert update is not None and set(update.portfolio_ids) <= set(documents(client))
        updates.close()
        reader.close()
        assert "MovedError" in daemon.log() or "MOVED" in daemon.log(), daemons.tail()
        # every partition's state, offset and contributions in one slot
        for tag, slots in _slots_per_partition(client, names).items():
            assert len(slots) == 1, (tag, slots)
        assert client.exists("aum", "portfolio:paper_Overall", "portfolios") == 3
        dlq = read_dead_letters(broker.bootstrap, names, stream.items)
        assert not dlq.problems, "\n".join(dlq.problems)
        _readers(redis_cluster_nodes.url, documents(client))
        assert daemon.terminate() == 0, daemons.tail()
    finally:
        daemons.kill_all()


def _key(pf: Any) -> tuple[float, float, int]:
    return pf.equity, pf.cash, pf.open_positions


def _readers(url: str, published: dict[str, dict[str, Any]]) -> None:
    """PortfolioReader, its asyncio twin, the serve source and ``pm-polars show`` with
    ``--redis-cluster`` read the same documents as a plain cluster client."""
    assert "paper_Overall" in published and len(published) > 5
    want = {p: (d["equity"], d["cash"], d["open_positions"]) for p, d in published.items()}
    with PortfolioReader.from_url(url, cluster=True) as reader:
        overview = reader.overview()
        assert {p: _key(pf) for p, pf in overview.portfolios.items()} == want
        assert _key(reader.get_portfolios(["paper_Overall"])["paper_Overall"]) == \
            want["paper_Overall"]
        assert overview.aum is not None and overview.aum.total == pytest.approx(
            sum(d["equity"] for p, d in published.items() if not p.endswith("_Overall")),
            rel=1e-12)

    async def read_async() -> tuple[dict[str, Any], list[str]]:
        async with AsyncPortfolioReader.from_url(url, cluster=True) as areader:
            got = {p: _key(pf) for p, pf in (await areader.overview()).portfolios.items()}
        source = RedisSource(url, cluster=True)
        try:
            docs, _ = await source.overview()
        finally:
            await source.aclose()
        return got, docs

    got, docs = asyncio.run(read_async())
    assert got == want
    assert sorted(json.loads(d)["portfolio_id"] for d in docs) == sorted(published)
    out = subprocess.run([sys.executable, "-m", "pm_polars.cli", "show", "--redis-cluster",
                          "--redis-url", url, "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "paper_Overall" in out.stdout


def test_three_daemons_killed_and_a_master_killed_on_a_cluster(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, tmp_path: Path
) -> None:
    figures = cluster_chaos(broker.bootstrap, redis_cluster_nodes, tmp_path, n_events=24_000,
                            rate=1_500.0, kill_at=(0.25, 0.7), master_at=0.45)
    print("\n".join(figures.lines()))
    assert len(figures.daemon_kills) == 2 and figures.promoted_s > 0


def test_a_partition_transaction_lost_by_a_failover_is_re_read(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, tmp_path: Path
) -> None:
    """What a promoted replica that missed a master's last transaction looks like: the
    partition's keys go back to an earlier commit, state and offset together (here they
    are restored from a DUMP taken then, atomically). The daemon finds the partition
    behind at its next commit, reloads it and re-reads the lost records: the end state
    equals the reference (its derived documents, already newer, are rewritten: versions
    grow with the clock, not with a counter the rollback set back)."""
    nodes = redis_cluster_nodes
    names = Names("l" + str(time.time_ns())[-10:], fill_partitions=1)
    names.create(broker.bootstrap)
    stream = build_stream(names, 3_000, seed=9, fill_rate=0.5, poison_rate=0.0,
                          malformed_rate=0.0, duplicate_rate=0.0, redeliver_rate=0.0,
                          oddities=False)
    paper = [i for i in stream.items if i.topic == names.fills("paper")]
    head, lost = paper[:300], paper[300:400]
    rest = [i for i in stream.items if i not in head and i not in lost]
    client = nodes.client()
    raw = RedisCluster.from_url(nodes.url)  # bytes, for DUMP/RESTORE
    daemons = Daemons(broker.bootstrap, nodes.url, names, tmp_path)
    meta = Keys(cluster=True).partition_state(names.group, names.fills("paper"), 0, "meta")
    try:
        daemon = daemons.start("--redis-cluster", "--max-wait-ms", "5")
        produce_items(broker.bootstrap, head)
        wait_for("the first fills", lambda: client.hget(meta, "next_offset") == "300",
                 timeout=120, diagnose=daemons.tail)
        pattern = meta[:-len("meta")] + "*"
        dumps = {k: raw.dump(k) for k in raw.scan_iter(pattern.encode())}
        produce_items(broker.bootstrap, lost)
        wait_for("the next batch", lambda: client.hget(meta, "next_offset") == "400",
                 timeout=60, diagnose=daemons.tail)
        with raw.pipeline(transaction=True) as pipe:  # one slot: one transaction
            for key in raw.scan_iter(pattern.encode()):
                if key not in dumps:
                    pipe.delete(key)
            for key, value in dumps.items():
                pipe.restore(key, 0, value, replace=True)
            pipe.execute()
        assert client.hget(meta, "next_offset") == "300"
        produce_items(broker.bootstrap, rest)
        wait_caught_up(client, names, stream.items, timeout=120, diagnose=daemons.tail)
        check_equal(client, names, stream.items, diagnose=daemons.tail)
        assert f"event=stale_partition partition={names.fills('paper')}:0 stored_offset=300" \
            in daemon.log(), daemons.tail()
        assert daemon.terminate() == 0
    finally:
        daemons.kill_all()


def test_fifo_lots_read_from_a_cluster(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, tmp_path: Path
) -> None:
    """``PortfolioReader(cluster=True).lots_frame`` finds a FIFO daemon's lots in the
    hash-tagged state rows (hand-worked: 10 @ 100 and 10 @ 120 bought, 15 sold: 5 @ 120
    left)."""
    names = Names("f" + str(time.time_ns())[-10:])
    names.create(broker.bootstrap)
    topic = names.fills("paper")

    def fill(fid: str, side: str, qty: int, price: float) -> bytes:
        return json.dumps({
            "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
            "fill_price": price, "ts": 1_795_600_000_000,
            "original_signal": {"strategy_id": "S1", "instrument_token": 7,
                                "signal_type": side}}).encode()

    produce(broker.bootstrap, [(topic, b"paper_S1", fill("a", "BUY", 10, 100.0)),
                               (topic, b"paper_S1", fill("b", "BUY", 10, 120.0)),
                               (topic, b"paper_S1", fill("c", "SELL", 15, 130.0))])
    client = redis_cluster_nodes.client()
    daemons = Daemons(broker.bootstrap, redis_cluster_nodes.url, names, tmp_path)
    try:
        daemon = daemons.start("--redis-cluster", "--cost-basis", "fifo")
        wait_for("the three fills", lambda: json.loads(client.get("portfolio:paper_S1") or
                 '{"positions": {}}')["positions"].get("7", {}).get("quantity") == 5,
                 timeout=60, diagnose=daemons.tail)
        with PortfolioReader.from_url(redis_cluster_nodes.url, cluster=True) as reader:
            lots = reader.lots_frame(["paper_S1", "paper_nobody"], names.group)
        assert [(r["quantity"], r["price"], r["fill_id"]) for r in lots.to_dicts()] == [
            (5, 120.0, "b")]
        assert daemon.terminate() == 0
    finally:
        daemons.kill_all()
