"""kill -9 of the daemon at random points over a stream of fills, ticks, duplicates and poison.

A shorter version of ``bench/chaos.py`` (which does 20 kills over 200k events): 5 kills over
~25k events. What it proves (see ``support.chaos.kill_chaos``):

* after every kill, with the daemon dead, the Redis state is *exactly* the reference engine
  applied to the records its stored offsets claim were consumed: state and offsets are
  written atomically, whatever instant the process died at (mid-batch, between the
  dead-letter flush and the EXEC, during start-up, group join or partition load);
* after every restart the caught-up state equals the reference of everything produced:
  nothing lost, nothing doubled (also the number of applied fill ids equals the number of
  unique valid fills, though ~1 % of records are byte-identical redeliveries, some of fills
  applied before an earlier kill);
* every malformed/poison record reached the dead-letter topic with a reason, and nothing
  else did (copies of one record are allowed: dead letters are at-least-once).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import KafkaBroker, RedisServer
from support.chaos import Names, build_stream, kill_chaos

pytestmark = pytest.mark.integration


def test_kill_9_at_random_points_state_always_equals_reference(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path
) -> None:
    stream = build_stream(names, 25_000, seed=11, duplicate_rate=0.01, malformed_rate=0.003,
                          poison_rate=0.002, redeliver_rate=0.003)
    counts = stream.counts()
    assert counts["duplicate"] > 100 and counts["poison"] > 20 and counts["malformed"] > 20
    figures = kill_chaos(
        broker.bootstrap, redis_srv.client(), redis_srv.url, names, stream, tmp_path,
        kills=5, seed=2024, batch_choices=(20, 100, 500, 2000), say=print,
    )
    print("\n".join(figures.lines()))
    assert len(figures.kills) == 5
    assert sum(k.mid_stream for k in figures.kills) >= 3, figures.kills
    assert figures.dead_letters_unique == stream.dead
    assert figures.checks == 5 + 6  # one after each kill, one after each of the 6 chunks
