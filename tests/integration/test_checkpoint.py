"""The checkpoint against a real redis-server: Overall/aum summed across partitions in Lua,
compare-and-set on offsets, idempotent re-execution, and loading state back."""

from __future__ import annotations

import json
import zlib

import polars as pl
import pytest
from support import RedisServer
from support.published import differences

from pm_polars import PortfolioEngine
from pm_polars.daemon.apply import apply_batch
from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint.store import Checkpoint
from pm_polars.daemon.intake import Decoded
from pm_polars.daemon.tick_table import TickTable
from pm_polars.demo.feed import generate_messages
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.instruments import load_instruments
from pm_polars.events import decode_messages
from pm_polars.publish.keys import Keys

pytestmark = pytest.mark.integration
GROUP, TICKS = "g", "ticks"


def _decoded(n: int, seed: int) -> tuple[Decoded, dict[tuple[str, int], int], list[bytes]]:
    msgs = list(generate_messages(seed, n, fill_rate=0.3, malformed_rate=0.0))
    fills = [m for m in msgs if m.topic != "market.ticks"]
    ticks = [m for m in msgs if m.topic == "market.ticks"]
    parts = [zlib.crc32(m.key) % 2 for m in fills]
    f = decode_messages([m.value for m in fills], topics=["fills"] * len(fills),
                        partitions=parts, offsets=list(range(len(fills))))
    t = decode_messages([m.value for m in ticks], topics=[TICKS] * len(ticks),
                        partitions=[0] * len(ticks), offsets=list(range(len(ticks))),
                        seq_start=len(fills))
    offsets = {("fills", p): len(fills) for p in (0, 1)}
    committable = {**offsets, (TICKS, 0): 4_000}
    return (Decoded(f.fills, t.ticks, f.rejects, len(msgs), committable=committable), offsets,
            [m.value for m in msgs])


def _book(checkpoint: Checkpoint) -> Book:
    book = Book(checkpoint, TickTable(), config=EngineConfig.of(1e7, 86_400.0),
                instruments=load_instruments(None))
    book.load([("fills", 0), ("fills", 1)])
    return book


def test_commit_sums_partitions_cas_and_reload(redis_srv: RedisServer) -> None:
    client = redis_srv.client()
    checkpoint = Checkpoint(client, Keys(), GROUP, TICKS)
    book = _book(checkpoint)
    decoded, offsets, values = _decoded(6_000, seed=21)
    applied = apply_batch(decoded, book)
    outcome = checkpoint.commit(applied.plan)
    assert outcome.committed and not outcome.conflicts

    ref = PortfolioEngine(starting_cash=1e7)
    ref.apply(values)
    assert differences(client, ref) == []
    assert client.hget(f"pm:ticks:{TICKS}:offsets", "0") == "4000"

    # the same plan again: offsets moved on, so it is refused and nothing changes
    before = client.get("portfolio:paper_Overall")
    again = checkpoint.commit(applied.plan)
    assert not again.committed and set(again.stale) == {("fills", 0), ("fills", 1)}
    assert client.get("portfolio:paper_Overall") == before

    # an EXEC applied twice (lost reply + blind retry) leaves the same values
    for pc in applied.plan.partitions:
        pc.expected_offset = offsets[pc.tp]
    assert checkpoint.commit(applied.plan).committed
    assert differences(client, ref) == []
    assert client.hget(f"pm:ticks:{TICKS}:offsets", "0") == "4000"  # never backwards

    # loading a partition back gives its engine's exact state
    key = ["portfolio_id", "instrument_token"]
    whole = book.engine.state
    for tp in book.parts:
        snap, offset = checkpoint.load_partition(tp, instruments=load_instruments(None))
        assert offset == offsets[tp] and snap is not None
        mine = pl.col("portfolio_id").is_in([p for p, t in applied.claims.items() if t == tp])
        assert snap.positions.height > 0
        assert snap.positions.sort(key).equals(whole.positions.filter(mine).sort(key))
        assert snap.cash.sort("portfolio_id").equals(
            whole.cash.filter(mine).sort("portfolio_id"))


def _ticks(price: float, ts_ns: int, next_offset: int) -> Decoded:
    ms = b"%d.%06d" % (ts_ns // 10**6, ts_ns % 10**6)  # epoch ms, exact to the ns
    raw = (b'{"event_type":"market_tick","instrument_token":1,"last_price":%r,"ts":%s}'
           % (price, ms))
    d = decode_messages([raw], topics=[TICKS], partitions=[0], offsets=[next_offset - 1])
    return Decoded(d.fills, d.ticks, d.rejects, 1, committable={(TICKS, 0): next_offset})


def test_prices_and_tick_offsets_never_move_backwards(redis_srv: RedisServer) -> None:
    client = redis_srv.client()
    checkpoint = Checkpoint(client, Keys("p:"), GROUP, TICKS)

    def instance() -> Book:  # a fresh instance with its own tick table
        return Book(checkpoint, TickTable(), config=EngineConfig.of(1e7, 60.0),
                    instruments=load_instruments(None))

    ts = 1_795_600_000_000_000_123
    assert checkpoint.commit(apply_batch(_ticks(10.0, ts, 5), instance()).plan).committed
    # a lagging instance writes an older tick and a smaller offset: both are ignored
    assert checkpoint.commit(apply_batch(_ticks(9.0, ts - 1, 3), instance()).plan).committed
    assert json.loads(str(client.hget("p:prices", "1"))) == {"last_price": 10.0, "ts": ts}
    assert client.hget(f"p:pm:ticks:{TICKS}:offsets", "0") == "5"
    offsets, prices = checkpoint.load_ticks()
    assert offsets == {0: 5} and TickTable.from_prices(prices).table.row(0) == (
        1, 10.0, ts, None, None)  # no quote: bid, ask null
