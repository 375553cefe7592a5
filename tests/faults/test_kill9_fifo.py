"""kill -9 of a daemon booking FIFO (``--cost-basis fifo``): lots are state like the rest.

The chaos run of ``test_kill9`` (see ``support.chaos.kill_chaos``) with the daemons and the
reference engine both on FIFO, over a shorter stream: after every kill the frozen Redis
documents (quantities, FIFO realized P&L, cash, fees) equal the FIFO reference of what the
stored offsets claim was consumed; after every restart the caught-up state equals the FIFO
reference of everything produced. At the end, the open lots stored in the partitions'
state rows are exactly the reference's lots (same units, prices and opening fills, oldest
first): no lot lost, doubled or reordered by a crash.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from support import KafkaBroker, RedisServer
from support.chaos import Names, build_stream, kill_chaos, reference

from pm_polars.engine.lots import lots_of_rows

pytestmark = pytest.mark.integration


def _stored_lots(redis_srv: RedisServer, names: Names) -> pl.DataFrame:
    client = redis_srv.client()
    rows: list[str] = []
    for key in client.scan_iter(f"pm:state:{names.group}:*:positions", count=1000):
        rows += [str(v) for v in client.hgetall(key).values()]
    return lots_of_rows(pl.Series(rows, dtype=pl.String))


def test_kill_9_with_fifo_lots_state_always_equals_fifo_reference(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path
) -> None:
    fifo = replace(names, cost_basis="fifo")
    stream = build_stream(fifo, 12_000, seed=23, duplicate_rate=0.01, malformed_rate=0.003,
                          poison_rate=0.002, redeliver_rate=0.003)
    figures = kill_chaos(
        broker.bootstrap, redis_srv.client(), redis_srv.url, fifo, stream, tmp_path,
        kills=3, seed=77, batch_choices=(20, 100, 500, 2000), say=print,
    )
    print("\n".join(figures.lines()))
    assert len(figures.kills) == 3
    assert figures.checks == 3 + 4
    ref = reference(stream.items, "fifo")
    want = ref.lots().drop("lot").sort("portfolio_id", "instrument_token", "ts", "fill_id")
    assert want.height > 10  # open lots over many positions, some holding several
    assert want.group_by("portfolio_id", "instrument_token").len()["len"].max() > 1  # type: ignore[operator]
    got = _stored_lots(redis_srv, fifo).drop("lot").sort(
        "portfolio_id", "instrument_token", "ts", "fill_id")
    assert got.equals(want)
    # FIFO really differs from average cost on this stream (the comparison above matters)
    avg = reference(stream.items)
    assert not ref.portfolios()["total_realized_pnl"].equals(
        avg.portfolios()["total_realized_pnl"])
