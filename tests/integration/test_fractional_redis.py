"""Fractional quantities through the daemon's state codec and a real Redis: the atoms (and
FIFO lots) written are the atoms read back, and the restored book continues exactly."""

from __future__ import annotations

import json
from typing import Any, cast

import polars as pl
import pytest
from reference import T0, fill, tick
from support.book_writer import BookWriter
from support.redis_server import RedisServer
from support.resp import parse_commands

from pm_polars import PortfolioEngine
from pm_polars.cli import main
from pm_polars.daemon.checkpoint.codec import decode_state, encode_state
from pm_polars.engine.config import QuantityDecimalsMismatch
from pm_polars.publish import aggregate_lua


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


BTC = 1  # a crypto-style instrument, multiplier 1, quantities to 8 decimals


def test_fractional_quantities_published_as_exact_decimal_units(
        redis_srv: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon's publish path (``BookWriter``) at ``quantity_decimals`` 8, by hand:

    * partition 0, S1 BUY 0.1 @ 100; partition 1, S2 BUY 0.2 @ 100: ``paper_Overall`` holds
      exactly 0.3 (summed as atoms across two partitions' contributions, not
      0.30000000000000004), average price 100;
    * S3 BUY 0.015 @ 60,000 and 0.005 @ 62,000: 0.02 at (900 + 310) / 0.02 = 60,500;
      SELL 0.02 @ 63,000: flat exactly 0, realized 0.02 x (63,000 - 60,500) = 50, cash
      1,000,000 - 900 - 310 + 1,260 = 1,000,050.
    """
    client = redis_srv.client(decode_responses=True)
    writer = BookWriter(client, quantity_decimals=8)
    writer.batch({0: [fill("S1", BTC, "BUY", 0.1, 100.0, fee=0.0, ts=T0, fill_id="a"),
                      fill("S3", BTC, "BUY", 0.015, 60_000.0, fee=0.0, ts=T0, fill_id="c")],
                  1: [fill("S2", BTC, "BUY", 0.2, 100.0, fee=0.0, ts=T0, fill_id="b")]})
    writer.batch({0: [fill("S3", BTC, "BUY", 0.005, 62_000.0, fee=0.0, ts=T0 + 1,
                           fill_id="d")]})
    mid = json.loads(client.get("portfolio:paper_S3") or "null")["positions"]["1"]
    assert (mid["quantity"], mid["average_price"]) == (0.02, 60_500.0)
    writer.batch({0: [fill("S3", BTC, "SELL", 0.02, 63_000.0, fee=0.0, ts=T0 + 2,
                           fill_id="e")]})
    s3_text = client.get("portfolio:paper_S3") or ""
    s3 = json.loads(s3_text)
    pos = s3["positions"]["1"]
    assert '"quantity":0,' in s3_text and pos["quantity"] == 0  # a JSON int: flat exactly
    assert (pos["buy_quantity"], pos["sell_quantity"]) == (0.02, 0.02)
    assert pos["realized_pnl"] == pytest.approx(50.0, abs=1e-9)
    assert s3["cash"] == pytest.approx(1_000_050.0, abs=1e-6)
    assert s3["open_positions"] == 0
    s1 = json.loads(client.get("portfolio:paper_S1") or "null")["positions"]["1"]
    assert s1["quantity"] == 0.1 and client.hget("position:paper_S1:1", "quantity") == "0.1"
    overall_text = client.get("portfolio:paper_Overall") or ""
    overall = json.loads(overall_text)["positions"]["1"]
    # 0.1 + 0.2 + 0 as exact decimals; bought 0.1 + 0.2 + 0.02 = 0.32, sold 0.02
    assert '"quantity":0.3,' in overall_text
    assert (overall["quantity"], overall["buy_quantity"], overall["sell_quantity"]) == (
        0.3, 0.32, 0.02)
    assert overall["average_price"] == pytest.approx(100.0, rel=1e-12)
    assert client.hget("position:paper_Overall:1", "quantity") == "0.3"
    assert overall["realized_pnl"] == pytest.approx(50.0, abs=1e-9)
    assert json.loads(client.get("portfolio:paper_Overall") or "null")["open_positions"] == 2
    meta = client.hgetall("pm:state:g:orders.filled.all:0:meta")
    assert meta["quantity_decimals"] == "8"
    assert main(["show", "paper_Overall", "--redis-url", redis_srv.url]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 "))
    assert [c.strip() for c in row.strip("|").split("|")][4] == "0.3"  # qty, every place


def test_state_of_other_quantity_decimals_is_refused_at_load(redis_srv: RedisServer) -> None:
    """A state booked at d = 8 holds atoms of 10^-8: loading it at d = 0 (or 2) would read
    0.1 BTC as 10,000,000 units, so it is refused naming the setting; at d = 8 it resumes."""
    client = redis_srv.client(decode_responses=True)
    writer = BookWriter(client, quantity_decimals=8)
    writer.batch({0: [fill("S1", BTC, "BUY", 0.1, 100.0, fee=0.0, ts=T0, fill_id="a")]})
    for wrong in (0, 2):
        with pytest.raises(QuantityDecimalsMismatch, match=(
                f"booked with --quantity-decimals 8 .* but --quantity-decimals is {wrong}; "
                "restart with --quantity-decimals 8")):
            BookWriter(client, quantity_decimals=wrong)
    again = BookWriter(client, quantity_decimals=8)
    again.batch({0: [fill("S1", BTC, "SELL", 0.1, 110.0, fee=0.0, ts=T0 + 1, fill_id="b")]})
    pos = json.loads(client.get("portfolio:paper_S1") or "null")["positions"]["1"]
    assert pos["quantity"] == 0 and pos["realized_pnl"] == pytest.approx(1.0, abs=1e-9)


def test_overall_script_sums_atoms_and_writes_exact_units_on_a_cluster_call(
        redis_srv: RedisServer) -> None:
    """The aggregate script on its own, as a Redis Cluster call (``cluster=True``: the
    Overall position hashes come back to the caller): two partitions' atoms at d = 8 are
    summed exactly and written as decimal text, padded and signed as needed."""
    client = redis_srv.client(decode_responses=True)

    def part(q: int, bought: int, day_q: int, cost: float) -> str:
        return json.dumps({"totals": {}, "trading_day": None, "positions": {"1": {
            "quantity": q, "buy_quantity": bought, "day_quantity": day_q, "cost": cost,
            "multiplier": 1.0, "last_price": 100.0}}})

    client.hset("parts", mapping={"t:0": part(10_000_000, 12_345_678_901, -3, 10.0),
                                  "t:1": part(20_000_000, 0, -2, 20.0)})
    keys = {"parts:paper": "parts", "doc:paper": "doc"}
    arg = aggregate_lua.request(prefix="", group="g", sources=["paper"], aum=False, owners=[],
                                prices=[], tick_offsets_key="", tick_offsets=[], keys=keys,
                                cluster=True, marks={"1": 100.0}, decimals=8)
    _, hashes = cast(list[Any], client.eval(aggregate_lua.SCRIPT, 2, "parts", "doc", arg))
    doc = client.get("doc") or ""
    assert '"quantity":0.3,' in doc and '"buy_quantity":123.45678901,' in doc
    assert '"day_quantity":-0.00000005,' in doc
    position = json.loads(doc)["positions"]["1"]
    assert position["average_price"] == pytest.approx(100.0, rel=1e-15)  # 30 / 0.3
    [[key, fields]] = json.loads(hashes)
    hashed = dict(zip(fields[::2], fields[1::2], strict=True))
    assert key == "position:paper_Overall:1" and hashed["quantity"] == "0.3"
    assert hashed["sell_quantity"] == "0"
