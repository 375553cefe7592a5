"""Recovery: restart from stored offsets, kill -9 mid-stream, Redis restarted mid-run.

In every case the final Redis state must equal the in-process engine applied once to every
event (duplicates of a fill_id count once, also across restarts).
"""

from __future__ import annotations

import re
import time

import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.feeds import feed, reference
from support.fixtures import StartDaemon
from support.names import Names
from support.published import differences

pytestmark = pytest.mark.integration


def _progress(client, names: Names) -> int:  # type: ignore[no-untyped-def]
    """Fill records committed so far (sum of stored next offsets)."""
    total = 0
    for key in client.scan_iter(f"pm:state:{names.group}:*:meta"):
        total += int(client.hget(key, "next_offset") or 0)
    return total


def _fill_count(records: list, names: Names) -> int:  # type: ignore[type-arg]
    return sum(1 for t, _, _ in records if t != names.ticks)


def test_restart_resumes_from_stored_offsets_nothing_lost_or_doubled(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 8_000)
    first, second = records[:4_000], records[4_000:]
    fills_first = [r for r in first if r[0] != names.ticks]
    redelivered = fills_first[::7]  # byte-identical duplicates of already applied fills
    produce(broker.bootstrap, first)
    client = redis_srv.client()
    daemon = start_daemon()
    ref_first = reference(first)
    wait_for("first half", lambda: not differences(client, ref_first),
             diagnose=lambda: daemon.log()[-2000:])
    assert daemon.terminate() == 0
    stored = {k.split(":")[3] + ":" + k.split(":")[4]: client.hget(k, "next_offset")
              for k in client.scan_iter(f"pm:state:{names.group}:*:meta")}

    produce(broker.bootstrap, second + redelivered)
    restarted = start_daemon()
    everything = first + second + redelivered
    ref = reference(everything)
    wait_for("both halves after restart", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + restarted.log()[-2000:])
    wait_for("all offsets", lambda: _progress(client, names) == _fill_count(everything, names))
    # it resumed from Redis offsets (not from the beginning)
    starts = dict(re.findall(r"partition_loaded partition=(\S+) next_offset=(\w+)",
                             restarted.log()))
    assert stored and {p: o for p, o in starts.items() if o != "None"} == stored, starts
    assert restarted.terminate() == 0


def test_kill_9_mid_stream_then_restart_gives_exact_state(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 30_000, seed=11)
    produce(broker.bootstrap, records)
    total = _fill_count(records, names)
    client = redis_srv.client()
    daemon = start_daemon("--max-events", "200", "--max-wait-ms", "5")
    progress = wait_for("some batches committed", lambda: _progress(client, names) > 0,
                        diagnose=lambda: daemon.log()[-2000:], interval=0.02)
    time.sleep(0.3)
    daemon.kill()
    at_kill = _progress(client, names)
    assert 0 < progress <= at_kill < total, (progress, at_kill, total)  # really mid-stream

    restarted = start_daemon("--max-events", "5000")
    ref = reference(records)
    wait_for("exact state after kill -9", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + restarted.log()[-2000:])
    wait_for("all offsets", lambda: _progress(client, names) == total)
    assert restarted.terminate() == 0


def test_redis_restarted_mid_run_daemon_waits_then_catches_up(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 16_000, seed=5)
    before, during = records[:6_000], records[6_000:]
    produce(broker.bootstrap, before)
    client = redis_srv.client()
    daemon = start_daemon("--max-events", "300", "--max-wait-ms", "5")
    wait_for("first part", lambda: not differences(client, reference(before)),
             diagnose=lambda: daemon.log()[-2000:])

    produce(broker.bootstrap, during)
    wait_for("the daemon busy on the second part",
             lambda: _progress(client, names) > _fill_count(before, names), interval=0.02)
    redis_srv.stop()  # SIGKILL: a crash (AOF fsync always keeps acknowledged writes)
    time.sleep(1.5)
    assert daemon.alive()
    redis_srv.start()

    ref = reference(records)
    wait_for("catch-up after Redis came back", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + daemon.log()[-3000:])
    wait_for("all offsets", lambda: _progress(client, names) == _fill_count(records, names))
    log = daemon.log()
    assert "event=retry" in log and "event=recovered" in log
    assert daemon.terminate() == 0
