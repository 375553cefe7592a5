"""Redis and the broker failing under a running daemon (which is never restarted here).

* Redis SIGKILLed twice at random points mid-stream (AOF, fsync always) and restarted after
  a random 0.5-2.5 s: what the crashed server persisted is checked on a copy of its data
  directory (a second redis-server) against the offsets it stores -- atomic, nothing half
  written -- then the daemon reconnects and the final state equals the reference.
* Redis unreachable for 10 s (SIGSTOP: connections hang instead of being refused, and
  commands sent before the stop run after SIGCONT, replies lost) while more events arrive:
  the daemon waits, keeps its process, then catches up with nothing lost or doubled.
* The broker unreachable for 10 s (SIGSTOP: it keeps its log, connections hang, requests
  time out or are answered late) right after the rest of the stream was produced, while
  the daemon is consuming, dead-lettering and committing: it keeps its process, then
  catches up with the exact reference state and every poison record dead-lettered.
* The broker killed and restarted: tansu keeps everything in memory, so the restarted
  broker is *empty* (topics, offsets and groups gone, offsets restarting at 0). What this
  can prove honestly: during the outage the daemon neither crashes nor writes anything
  (Redis stays exactly at the reference of what it had consumed); after the restart it
  reconnects, rejoins its group and applies newly produced events on top of the state it
  had -- nothing applied twice, fills, ticks and dead letters all flowing again. It cannot
  prove that records the broker lost are recovered (a real Kafka keeps its log), nor
  replay from stored offsets into a log whose offsets were reused.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from support import KafkaBroker, RedisServer, kafka_broker
from support.chaos import (
    Daemons,
    Names,
    build_stream,
    check_equal,
    ends,
    fillers,
    frozen_problems,
    produce_items,
    progress,
    read_dead_letters,
    scrape,
    stored,
    wait_caught_up,
)
from support.daemon import wait_for
from support.ports import free_port

pytestmark = pytest.mark.integration


def _health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _at_least(client: redis.Redis, names: Names, target: int) -> Callable[[], bool]:
    return lambda: progress(client, names) >= target


def test_redis_killed_twice_mid_stream_aof_consistent_then_exact(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons,
    tmp_path: Path,
) -> None:
    rng = random.Random(77)
    items = build_stream(names, 16_000, seed=31).items
    half = len(items) // 2
    produce_items(broker.bootstrap, items[:half])
    port = free_port()
    daemon = daemons.start("--max-events", "150", "--max-wait-ms", "5", "--metrics-port",
                           str(port), "--metrics-host", "127.0.0.1")
    client = redis_srv.client()
    crashes = []
    for round_, (lo, hi) in enumerate(((0, half), (half, len(items)))):
        if round_ == 1:
            produce_items(broker.bootstrap, items[half:])
        base = progress(client, names)
        target = base + int(rng.uniform(0.2, 0.7) * (hi - lo))
        wait_for("progress to the crash point", _at_least(client, names, target),
                 interval=0.005, diagnose=daemons.tail)
        redis_srv.stop()  # SIGKILL, whatever the daemon was doing
        copy = tmp_path / f"redis-copy-{round_}"
        shutil.copytree(redis_srv.directory, copy)
        down = rng.uniform(0.5, 2.5)
        t0 = time.monotonic()
        with RedisServer(directory=copy) as checker:  # what the crashed server persisted
            problems = frozen_problems(checker.client(), items[:hi], names)
            at = progress(checker.client(), names)
        assert not problems, "AOF state is not what its offsets claim:\n" + "\n".join(
            problems[:15])
        time.sleep(max(0.0, down - (time.monotonic() - t0)))
        assert daemon.alive(), daemons.tail()
        redis_srv.start()
        crashes.append((at, hi, round(down, 2)))
        print(f"redis crash {round_ + 1}: {at:,} of {hi:,} records committed, persisted state "
              f"consistent; down {down:.1f} s")
    wait_caught_up(client, names, items, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)
    dlq = read_dead_letters(broker.bootstrap, names, items)
    assert not dlq.problems, "\n".join(dlq.problems)
    assert all(at < hi for at, hi, _ in crashes)  # both crashes were mid-stream
    assert scrape(port)["pm_redis_errors_total"] >= 2
    log = daemon.log()
    assert "event=retry" in log and "event=recovered" in log
    assert daemon.alive() and daemon.terminate() == 0  # one process throughout


def test_redis_unreachable_for_10_s_daemon_waits_then_catches_up(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons
) -> None:
    items = build_stream(names, 12_000, seed=41).items
    first = len(items) // 3
    produce_items(broker.bootstrap, items[:first])
    port = free_port()
    daemon = daemons.start("--max-events", "200", "--max-wait-ms", "5", "--metrics-port",
                           str(port), "--metrics-host", "127.0.0.1")
    client = redis_srv.client()
    wait_for("progress", lambda: progress(client, names) > first // 4, interval=0.005,
             diagnose=daemons.tail)
    assert redis_srv.proc is not None
    pid = redis_srv.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        produce_items(broker.bootstrap, items[first:])  # arrives while Redis is unreachable
        time.sleep(5.0)
        health = _health(port)
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t0)))
        assert daemon.alive(), daemons.tail()
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"redis stopped {time.monotonic() - t0:.1f} s; /healthz during the outage: {health}")
    wait_caught_up(client, names, items, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)
    dlq = read_dead_letters(broker.bootstrap, names, items)
    assert not dlq.problems, "\n".join(dlq.problems)
    metrics = scrape(port)
    assert metrics["pm_redis_errors_total"] >= 1
    log = daemon.log()
    assert "event=retry what=checkpoint" in log and "event=recovered" in log
    print(f"redis errors retried: {metrics['pm_redis_errors_total']:.0f}, stale partition "
          f"reloads: {metrics.get('pm_stale_partition_writes_total', 0):.0f}")
    assert daemon.terminate() == 0


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker only this test stops (the session broker must keep its topics)."""
    with kafka_broker() as b:
        yield b


@pytest.fixture
def own_names(own_broker: KafkaBroker) -> Names:
    """Unique topics, created on ``own_broker``."""
    names = Names("b" + os.urandom(5).hex())
    names.create(own_broker.bootstrap)
    return names


@pytest.fixture
def own_daemons(own_broker: KafkaBroker, redis_srv: RedisServer, own_names: Names,
                tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(own_broker.bootstrap, redis_srv.url, own_names, tmp_path)
    try:
        yield d
    finally:
        d.kill_all()


def test_broker_restart_daemon_survives_reconnects_and_applies_new_events_once(
    own_broker: KafkaBroker, redis_srv: RedisServer, own_names: Names, own_daemons: Daemons
) -> None:
    broker, names, daemons = own_broker, own_names, own_daemons
    items = build_stream(names, 12_000, seed=51).items
    before, after = items[:5_000], items[5_000:]
    produce_items(broker.bootstrap, before)
    daemon = daemons.start("--max-events", "500")
    client = redis_srv.client()
    wait_caught_up(client, names, before, diagnose=daemons.tail)
    check_equal(client, names, before, diagnose=daemons.tail)
    frozen = stored(client, names)

    broker.stop()  # SIGKILL: memory storage, everything is gone
    time.sleep(4.0)
    assert daemon.alive(), daemons.tail()
    assert stored(client, names) == frozen  # nothing written without a broker
    check_equal(client, names, before, timeout=1.0)
    broker.start()  # same port, empty
    names.create(broker.bootstrap)
    # A real Kafka never reuses an offset; a restarted memory broker does. Tombstones
    # pinned to each partition up to the offset stored in Redis stand in for the lost
    # records, so the new events get offsets past what was consumed. Whether the daemon
    # resumes at its stored offsets (skipping them) or, having fetched while the log was
    # empty, resets to the beginning (dead-lettering them), the state must be the same.
    pad = fillers(names, *frozen)
    produce_items(broker.bootstrap, pad)
    produce_items(broker.bootstrap, after)
    fills_end, _ = ends(pad + after, names)
    # tick offsets only move up (several instances share them): compare fill offsets
    wait_for("new records committed",
             lambda: all(stored(client, names)[0].get(tp) == o
                         for tp, o in fills_end.items()),
             timeout=90, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)
    dlq = read_dead_letters(broker.bootstrap, names, pad + after)
    assert not dlq.problems, "\n".join(dlq.problems)
    assert dlq.unique > 0
    assert daemon.alive() and daemon.terminate() == 0  # the same process throughout
    log = daemon.log()
    assert "event=kafka_error" in log  # it did notice the outage


def test_broker_unreachable_for_10_s_daemon_waits_then_catches_up(
    own_broker: KafkaBroker, redis_srv: RedisServer, own_names: Names, own_daemons: Daemons
) -> None:
    broker, names, daemons = own_broker, own_names, own_daemons
    items = build_stream(names, 12_000, seed=61).items
    first = len(items) // 3
    produce_items(broker.bootstrap, items[:first])
    daemon = daemons.start("--max-events", "200", "--max-wait-ms", "5")
    client = redis_srv.client()
    wait_for("fills applied", lambda: sum(stored(client, names)[0].values()) > 0,
             interval=0.005, diagnose=daemons.tail)  # group joined, fills flowing
    produce_items(broker.bootstrap, items[first:])  # in the log before the outage
    assert broker.proc is not None
    pid = broker.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        time.sleep(5.0)
        mid = stored(client, names)
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t0)))
        assert daemon.alive(), daemons.tail()
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"broker stopped {time.monotonic() - t0:.1f} s; fill offsets stored at 5 s: "
          f"{sum(mid[0].values())} of {sum(ends(items, names)[0].values())}")
    wait_caught_up(client, names, items, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)
    dlq = read_dead_letters(broker.bootstrap, names, items)
    assert not dlq.problems, "\n".join(dlq.problems)
    assert dlq.unique > 0
    assert daemon.alive() and daemon.terminate() == 0  # the same process throughout

