"""FIFO on Redis Cluster: ``--redis-cluster --cost-basis fifo`` books and stores lots.

One daemon, a stream with duplicates and poison: the published state equals the FIFO
reference (``support.chaos.check_equal`` with the scenario's cost basis), and
``PortfolioReader.lots_frame`` on the cluster (hash-tagged state keys, one slot per
partition) reads exactly the reference's open lots.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from support import KafkaBroker
from support.chaos import (
    Daemons,
    Names,
    build_stream,
    check_equal,
    produce_items,
    wait_caught_up,
)
from support.redis_cluster import RedisClusterNodes

from pm_polars.client import PortfolioReader

pytestmark = pytest.mark.integration


def test_fifo_daemon_on_a_cluster_equals_the_fifo_reference_lots_included(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, tmp_path: Path
) -> None:
    names = replace(Names("f" + str(time.time_ns())[-10:]), cost_basis="fifo")
    names.create(broker.bootstrap)
    stream = build_stream(names, 4_000, seed=9, redeliver_rate=0.01)
    produce_items(broker.bootstrap, stream.items)
    client = redis_cluster_nodes.client()
    daemons = Daemons(broker.bootstrap, redis_cluster_nodes.url, names, tmp_path)
    try:
        daemon = daemons.start("--redis-cluster", "--max-events", "500")
        wait_caught_up(client, names, stream.items, timeout=120, diagnose=daemons.tail,
                       alive=daemon.alive)
        ref = check_equal(client, names, stream.items, diagnose=daemons.tail)
        assert ref.config.cost_basis == "fifo"
        want = ref.lots().drop("lot").sort("portfolio_id", "instrument_token", "ts", "fill_id")
        assert want.height > 0
        with PortfolioReader.from_url(redis_cluster_nodes.url, cluster=True) as reader:
            got = reader.lots_frame(ref.portfolio_ids(), names.group).drop("lot").sort(
                "portfolio_id", "instrument_token", "ts", "fill_id")
        assert got.equals(want)
        assert daemon.terminate() == 0, daemons.tail()
    finally:
        daemons.kill_all()
