"""A currency book on Redis Cluster (``--redis-cluster``): the per-slot Overall/AUM script
gets the same contributions (``missing_rate`` counts, fx columns), so the scenario of
``support.currency_book`` publishes the engine's figures there too."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import KafkaBroker
from support.currency_book import check_inr_book
from support.daemon import DaemonProcess
from support.names import Names
from support.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.integration


def test_inr_book_on_a_cluster_equals_the_engine(
    broker: KafkaBroker, redis_cluster_nodes: RedisClusterNodes, names: Names, tmp_path: Path
) -> None:
    started: list[DaemonProcess] = []

    def start(*extra: str) -> DaemonProcess:
        proc = DaemonProcess(broker.bootstrap, redis_cluster_nodes.url,
                             tmp_path / f"daemon-{len(started)}.log",
                             args=names.daemon_args("--redis-cluster", *extra))
        started.append(proc)
        return proc

    try:
        check_inr_book(broker.bootstrap, redis_cluster_nodes.client(), names, start, tmp_path)
    finally:
        for proc in started:
            proc.kill()
