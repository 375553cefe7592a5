"""A short soak: one daemon under a steady stream (fills, ticks, duplicates, poison) for
about 15 s at 2,000 events/s (``PM_SOAK_SECONDS`` to change it; 30,000 events, as 30 s at
1,000/s gave before). The only assertion is correctness: the final
state equals the reference and the dead letters are complete. RSS start/end and the maximum
lag are printed (``pytest -s``); ``bench/chaos.py --soak`` is the 10-minute version.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import KafkaBroker, RedisServer
from support.chaos import Names, build_stream, soak
from support.ports import free_port

pytestmark = pytest.mark.integration

RATE = 2_000.0  # events/s


def test_soak_steady_rate_state_equals_reference(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path
) -> None:
    seconds = float(os.environ.get("PM_SOAK_SECONDS", "15"))
    stream = build_stream(names, int(RATE * seconds), seed=71, redeliver_rate=0.003)
    figures = soak(broker.bootstrap, redis_srv.client(), redis_srv.url, names, stream,
                   tmp_path, rate=RATE, port=free_port(), say=print)
    print("\n".join(figures.lines()))
    assert figures.events == len(stream.items)
