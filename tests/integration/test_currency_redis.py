"""A currency book through the daemon's own publish path (``BookWriter``: ``apply_batch``,
the checkpoint's MULTI/EXEC with the Overall/AUM script) into a real Redis, over two
partitions and several batches: every ``portfolio:{id}`` document, each ``{source}_Overall``
and ``aum`` equal the engine's (``fxviews``) fed the same events, for random books with
USD stocks, an inverse contract, rates that arrive late or move, and sources spread over
both partitions (instruments as ``tests/unit/test_currencies``: BitMEX XBTUSD, USDINR)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import T0, fill, tick
from support.book_writer import BookWriter
from support.documents import same
from support.redis_server import RedisServer

from pm_polars import PortfolioEngine
from pm_polars.publish.keys import Keys

AAPL, XBTUSD, NIFTY, USDINR, BTCINR = 1, 2, 3, 9, 8
INSTRUMENTS = pl.DataFrame({
    "instrument_token": [AAPL, XBTUSD, NIFTY, USDINR, BTCINR],
    "multiplier": [1.0, 1.0, 50.0, 1.0, 1.0],
    "quote_currency": ["USD", "USD", "INR", "INR", "INR"],
    "base_currency": [None, "BTC", None, "USD", "BTC"],
    "inverse": [False, True, False, False, False],
    "fx_pair": [None, None, None, "USDINR", "BTCINR"],
})
_fill = st.tuples(st.sampled_from(["S1", "S2", "S3"]), st.sampled_from([AAPL, XBTUSD, NIFTY]),
                  st.sampled_from(["BUY", "SELL"]), st.integers(1, 20),
                  st.integers(5_000, 50_000).map(lambda c: c / 100), st.sampled_from([0.0, 1.5]))
_tick = st.tuples(st.sampled_from([AAPL, XBTUSD, NIFTY, USDINR, BTCINR]),
                  st.integers(5_000, 50_000).map(lambda c: c / 100))
_batch = st.tuples(st.lists(_fill, max_size=4), st.lists(_tick, max_size=3))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_batch, min_size=1, max_size=4), st.sampled_from(["paper", "live"]))
def test_published_currency_book_equals_the_engine(
        redis_srv: RedisServer, batches: list[tuple[list[Any], list[Any]]], source2: str
) -> None:
    client = redis_srv.client(decode_responses=True)
    prefix = f"{uuid.uuid4().hex[:8]}:"
    writer = BookWriter(client, prefix, instruments=INSTRUMENTS, starting_cash=10_000.0)
    engine = PortfolioEngine(instruments=INSTRUMENTS, config=writer.book.config)
    n = 0
    for fills, ticks in batches:
        parts: dict[int, list[dict[str, Any]]] = {}
        events: list[dict[str, Any]] = []
        for strategy, tok, side, qty, price, fee in fills:
            n += 1
            source = source2 if strategy == "S3" else "paper"
            f = fill(strategy, tok, side, qty, price, fee=fee, ts=T0 + n, fill_id=str(n),
                     source=source)
            parts.setdefault(0 if strategy == "S1" else 1, []).append(f)
            events.append(f)
        marks = []
        for tok, price in ticks:
            n += 1
            marks.append(tick(tok, price, ts=T0 + n))
        writer.batch(parts, marks)
        engine.apply(events + marks)
    keys = Keys(prefix)
    pids = engine.portfolio_ids()
    sources = sorted({pid.split("_")[0] for pid in pids})
    for pid in [*pids, *(f"{s}_Overall" for s in sources)]:
        same(json.loads(client.get(keys.portfolio(pid)) or "{}"), engine.portfolio(pid), pid)
    if pids:
        same(json.loads(client.get(keys.aum) or "{}"), engine.aum(), "aum")
