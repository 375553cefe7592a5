"""kill -9 of a daemon booking fractional quantities (``--quantity-decimals 8``) FIFO.

The chaos run of ``test_kill9`` (``support.chaos.kill_chaos``) over a short stream whose
every fill quantity is a fraction of 8 decimal places (``q x 0.00012345`` units), with the
daemons and the reference engine at ``quantity_decimals`` 8 and FIFO: after every kill the
frozen Redis documents (quantities exactly, money to 1e-9) equal the reference of what the
stored offsets claim was consumed, after every restart the reference of everything
produced; at the end the stored FIFO lots are the reference's atoms exactly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from support import KafkaBroker, RedisServer
from support.chaos import Names, build_stream, kill_chaos, reference

from pm_polars.engine.lot_state import lots_of_rows

pytestmark = pytest.mark.integration


def test_kill_9_with_fractional_fifo_state_always_equals_reference(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path
) -> None:
    frac = replace(names, cost_basis="fifo", quantity_decimals=8)
    stream = build_stream(frac, 5_000, seed=31, duplicate_rate=0.01, malformed_rate=0.003,
                          poison_rate=0.002, redeliver_rate=0.003, fractional=True)
    figures = kill_chaos(
        broker.bootstrap, redis_srv.client(), redis_srv.url, frac, stream, tmp_path,
        kills=2, seed=5, batch_choices=(20, 100, 500), say=print,
    )
    print("\n".join(figures.lines()))
    assert len(figures.kills) == 2 and figures.checks == 2 + 3
    ref = reference(stream.items, "fifo", 8)
    assert (ref.positions()["quantity"] % 1 != 0).sum() > 10  # fractional positions held
    client = redis_srv.client()
    rows: list[str] = []
    for key in client.scan_iter(f"pm:state:{frac.group}:*:positions", count=1000):
        rows += [str(v) for v in client.hgetall(key).values()]
    order = ["portfolio_id", "instrument_token", "ts", "fill_id"]
    got = lots_of_rows(pl.Series(rows, dtype=pl.String)).drop("lot").sort(order)
    want = ref.state.lots.drop("lot").sort(order)  # atoms of 10^-8 units
    assert want.height > 10 and got.equals(want)
