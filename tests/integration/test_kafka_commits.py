"""Kafka committed offsets follow Redis, also for a partition whose new owner has nothing
new to commit (issue 12): the stored offsets are committed on assignment.

Setup: a daemon applies a backlog and stops; the group's Kafka offsets are then set back to
0 (what a previous owner killed between its Redis EXEC and its async Kafka commit leaves,
exaggerated). A second daemon takes the partitions over; nothing new arrives, so only the
commit on assignment can bring Kafka's committed offsets to the stored ones.
"""

from __future__ import annotations

import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.feeds import feed, reference
from support.fixtures import StartDaemon
from support.names import Names
from support.ports import free_port
from support.published import differences

pytestmark = pytest.mark.integration


def _group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False})


def _stored(client, names: Names) -> dict[tuple[str, int], int]:  # type: ignore[no-untyped-def]
    out = {}
    for key in client.scan_iter(f"pm:state:{names.group}:*:meta"):
        _, _, _, topic, partition, _ = str(key).split(":")
        out[(topic, int(partition))] = int(client.hget(key, "next_offset"))
    return out


def _committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = _group_consumer(bootstrap, group)
    try:
        got = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in got}
    finally:
        consumer.close()


def test_new_owner_commits_the_stored_offsets_on_assignment(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 3_000)
    produce(broker.bootstrap, records)
    client = redis_srv.client()
    first = start_daemon()
    ref = reference(records)
    wait_for("the backlog applied", lambda: not differences(client, ref),
             diagnose=lambda: first.log()[-2000:])
    assert first.terminate() == 0, first.log()[-2000:]
    stored = _stored(client, names)
    assert sum(stored.values()) == sum(1 for t, _, _ in records if t != names.ticks)
    tps = sorted(stored)

    # the group's Kafka offsets fall behind Redis (the group is empty: a plain commit)
    rewind = _group_consumer(broker.bootstrap, names.group)
    try:
        rewind.commit(offsets=[TopicPartition(t, p, 0) for t, p in tps], asynchronous=False)
    finally:
        rewind.close()
    assert set(_committed(broker.bootstrap, names.group, tps).values()) == {0}

    port = free_port()
    second = start_daemon("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    wait_for("Kafka's committed offsets to equal the stored ones",
             lambda: _committed(broker.bootstrap, names.group, tps) == stored, timeout=60,
             diagnose=lambda: f"{_committed(broker.bootstrap, names.group, tps)} vs {stored}\n"
             + second.log()[-2000:])

    def lags() -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return {line.split(" ")[0]: float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("pm_consumer_lag_records{")}

    # every partition with records reports its lag, and none is there
    wait_for("a lag series per partition", lambda: len(lags()) >= len(tps), timeout=30,
             diagnose=lambda: f"{lags()}\n{second.log()[-1500:]}")
    series = lags()
    assert set(series.values()) == {0.0}, series
    assert differences(client, ref) == []  # nothing re-applied
    assert second.terminate() == 0
