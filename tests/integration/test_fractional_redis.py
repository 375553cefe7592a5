"""Fractional quantities through the daemon's state codec and a real Redis: the atoms (and
FIFO lots) written are the atoms read back, and the restored book continues exactly."""

from __future__ import annotations

from typing import cast

import polars as pl
from reference import T0, fill, tick
from support.redis_server import RedisServer
from support.resp import parse_commands

from pm_polars import PortfolioEngine
from pm_polars.daemon.checkpoint.codec import decode_state, encode_state


def test_fractional_fifo_state_round_trips_through_redis(redis_srv: RedisServer) -> None:
    eng = PortfolioEngine(quantity_decimals=8, cost_basis="fifo")
    result = eng.apply([fill("S", 1, "BUY", 0.015, 60_000.0, fill_id="a", ts=T0 + 0),
                        fill("S", 1, "BUY", 0.005, 62_000.0, fill_id="b", ts=T0 + 1),
                        fill("T", 1, "BUY", 0.1, 61_000.0, fill_id="c", ts=T0 + 2),
                        fill("S", 1, "SELL", 0.012, 63_000.0, fill_id="d", ts=T0 + 3),
                        tick(1, 64_000.0, ts=T0 + 4)])
    fills = result.fills.with_columns(pl.lit("t").alias("topic"),
                                      pl.lit(0, pl.Int32).alias("partition"))
    writes = encode_state(eng.state, None, fills, {("t", 0): 5}, updated_ns=1,
                          key=lambda tp, table: f"{tp[0]}:{tp[1]}:{table}")
    client = redis_srv.client(decode_responses=True)
    for args in parse_commands(b"".join(writes.commands)):
        client.execute_command(*args)
    tables = {t: cast(dict[str, str], client.hgetall(f"t:0:{t}"))
              for t in ("positions", "cash", "marks", "meta")}
    seen = cast(list[tuple[str, float]], client.zrange("t:0:seen", 0, -1, withscores=True))
    back = decode_state(tables["positions"], tables["cash"], tables["marks"], seen,
                        tables["meta"], instruments=eng.state.instruments)
    key = ["portfolio_id", "instrument_token"]
    assert back.positions.sort(key).equals(eng.state.positions.sort(key))
    assert back.lots.sort(*key, "lot").equals(eng.state.lots.sort(*key, "lot"))
    assert back.lots["quantity"].to_list() == [300_000, 500_000, 10_000_000]  # atoms
    restored = PortfolioEngine.of_state(back, eng.config)
    assert restored.portfolios().equals(eng.portfolios())
    restored.apply([fill("S", 1, "SELL", 0.008, 61_000.0, fill_id="e", ts=T0 + 4)])
    s = restored.positions(["paper_S"]).to_dicts()[0]
    assert s["quantity"] == 0.0 and restored.state.lots.filter(
        pl.col("portfolio_id") == "paper_S").height == 0
    assert abs(s["realized_pnl"] - 34.0) < 1e-9  # 0.012 x 3,000 + 0.003 x 1,000 - 0.005 x 1,000
