"""Scale-out: two daemons in one group split the fill partitions, both read every tick,
the survivor takes over when one is killed, and Overall/aum stay right across both."""

from __future__ import annotations

import re

import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import DaemonProcess, wait_for
from support.feeds import feed, reference
from support.fixtures import StartDaemon
from support.names import Names
from support.published import differences

pytestmark = pytest.mark.integration


def _owned(daemon: DaemonProcess) -> set[str]:
    """Partitions the daemon owns according to its assigned/revoked log lines."""
    owned: set[str] = set()
    for kind, parts in re.findall(r"event=(assigned|revoked|lost) partitions=(\S+)",
                                  daemon.log()):
        names = set() if parts == "-" else set(parts.split(","))
        owned = owned | names if kind == "assigned" else owned - names
    return owned


def test_two_daemons_split_partitions_and_survivor_takes_over(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 15_000, seed=3)
    part_a, part_b, part_c = records[:5_000], records[5_000:10_000], records[10_000:]
    produce(broker.bootstrap, part_a)
    client = redis_srv.client()
    first = start_daemon()
    second = start_daemon()
    def logs() -> str:
        return first.log()[-2000:] + "\n----\n" + second.log()[-2000:]

    wait_for("the group to split", lambda: _owned(first) and _owned(second)
             and len(_owned(first) | _owned(second)) == 6, diagnose=logs)
    assert not _owned(first) & _owned(second)
    ref = reference(part_a)
    wait_for("state across both instances", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + logs())

    # both instances read every tick: each one's portfolios carry the latest marks
    produce(broker.bootstrap, part_b)
    ref = reference(part_a + part_b)
    wait_for("ticks and fills on both", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + logs())
    for d in (first, second):
        assert "event=ticks_assigned" in d.log()
    owners = client.hgetall(f"pm:parts:{names.group}:aum")
    assert len(owners) >= 2  # contributions from partitions of both instances

    first.kill()
    produce(broker.bootstrap, part_c)
    wait_for("the survivor to own everything", lambda: len(_owned(second)) == 6,
             diagnose=logs)
    ref = reference(records)
    wait_for("state after takeover", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + logs())
    assert second.terminate() == 0
