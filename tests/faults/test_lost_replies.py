"""Lost EXEC replies: Redis applies a checkpoint but the daemon never hears back.

A proxy between the daemon and Redis (``support.tcp_proxy``) lets checkpoint transactions
that move fill offsets (WATCH ... MULTI ... HSET meta next_offset ... EXEC) run and then resets the connection instead
of delivering their replies. The daemon sees an error for a write that happened: it must
retry, notice that its partitions' stored offsets moved (the WATCH/compare step), reload
them from Redis and carry on -- never apply the batch a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from support import KafkaBroker, RedisServer
from support.chaos import (
    Daemons,
    Item,
    Names,
    build_stream,
    check_equal,
    produce_items,
    progress,
    read_dead_letters,
    scrape,
    wait_caught_up,
)
from support.daemon import DaemonProcess, wait_for
from support.ports import free_port
from support.tcp_proxy import LossyProxy

pytestmark = pytest.mark.integration


@dataclass
class Run:
    items: list[Item]
    daemon: DaemonProcess
    proxy: LossyProxy
    metrics: dict[str, float]


@pytest.fixture
def lossy(redis_srv: RedisServer) -> Iterator[LossyProxy]:
    proxy = LossyProxy(redis_srv.port)
    try:
        yield proxy
    finally:
        proxy.close()


def _lose_replies(broker: KafkaBroker, redis_srv: RedisServer, names: Names,
                  daemons: Daemons, proxy: LossyProxy, *, events: int, losses: int,
                  min_stale: int) -> Run:
    """Produce ``events`` in ``losses`` parts; lose one checkpoint reply per part (more at
    the end until ``min_stale`` stale reloads were counted); wait until caught up."""
    items = build_stream(names, events, seed=81, redeliver_rate=0.003).items
    head = len(items) // 5
    produce_items(broker.bootstrap, items[:head])
    port = free_port()
    d = Daemons(daemons.bootstrap, proxy.url, names, daemons.workdir)
    daemon = d.start("--max-events", "200", "--max-wait-ms", "5", "--metrics-port",
                     str(port), "--metrics-host", "127.0.0.1")
    daemons.started.append(daemon)
    client = redis_srv.client()  # the test reads Redis directly
    wait_for("first batch", lambda: progress(client, names) > 0, timeout=60, diagnose=d.tail)
    rest = items[head:]
    step = len(rest) // losses
    for n in range(losses):
        produce_items(broker.bootstrap, rest[n * step:(n + 1) * step if n < losses - 1
                                             else len(rest)])
        # a checkpoint that moves fill offsets: HSET ...:meta next_offset N inside MULTI
        proxy.arm(1, marker=b"next_offset")
        wait_for(f"lost reply {n + 1}", _dropped(proxy, n + 1), timeout=60, diagnose=d.tail)
        # the next loss must hit another batch, not the retry of this one
        wait_for("the batch after the loss", _advanced(client, names), timeout=60,
                 interval=0.01, diagnose=d.tail)
        assert daemon.alive(), d.tail()
    wait_caught_up(client, names, items, diagnose=d.tail, alive=daemon.alive)
    check_equal(client, names, items, diagnose=d.tail)
    metrics = scrape(port)
    assert metrics.get("pm_stale_partition_writes_total", 0.0) >= min_stale
    return Run(items, daemon, proxy, metrics)


def test_lost_exec_replies_are_not_applied_twice(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons,
    lossy: LossyProxy,
) -> None:
    run = _lose_replies(broker, redis_srv, names, daemons, lossy, events=14_000, losses=10,
                        min_stale=1)
    dlq = read_dead_letters(broker.bootstrap, names, run.items)
    assert not dlq.problems, "\n".join(dlq.problems)
    stale = run.metrics.get("pm_stale_partition_writes_total", 0.0)
    print(f"lost EXEC replies: {lossy.dropped}; stale-partition reloads: {stale:.0f}")
    assert lossy.dropped == 10
    # every lost checkpoint was noticed as applied (its offsets had moved) and reloaded
    assert stale == 10 and "event=stale_partition" in run.daemon.log()
    assert run.daemon.terminate() == 0


def test_events_metric_counts_fills_applied_by_a_lost_checkpoint(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons,
    lossy: LossyProxy,
) -> None:
    run = _lose_replies(broker, redis_srv, names, daemons, lossy, events=5_000, losses=3,
                        min_stale=1)
    labels = [i.label for i in run.items]
    applied = labels.count("fill") + labels.count("odd")
    assert run.metrics['pm_events_total{type="fill"}'] == applied
    assert run.metrics['pm_events_total{type="duplicate"}'] == labels.count("duplicate")
    dead = labels.count("malformed") + labels.count("poison")
    assert run.metrics['pm_events_total{type="reject"}'] == dead


def _advanced(client: redis.Redis, names: Names) -> Callable[[], bool]:
    start = progress(client, names)
    return lambda: progress(client, names) > start


def _dropped(proxy: LossyProxy, n: int) -> Callable[[], bool]:
    return lambda: proxy.dropped >= n
