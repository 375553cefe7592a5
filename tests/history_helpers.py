"""Builders for the history tests: decoded batches from plain event lists, days in ns.

Events are dicts made by :func:`fill` and :func:`tick`; :func:`batch` turns a list of them
into a ``DecodedBatch`` whose ``seq`` is the position in the list (arrival order), so fills
and ticks interleave exactly as listed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pm_polars import PortfolioEngine
from pm_polars.archive import ArchiveWriter, save_engine_config
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA, conform, empty

D1, D2, D3 = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)
START = 1_000_000.0


def at(day: date, hour: int = 4, minute: int = 0, second: int = 0) -> int:
    """ns since epoch of ``day`` ``hour:minute:second`` UTC."""
    moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp()) * 10**9


def fill(
    strategy: str, token: int, side: str, qty: int, price: float, ts: int, *,
    fee: float = 0.0, fill_id: str | None = None, source: str = "paper",
    topic: str | None = None, partition: int | None = None, offset: int | None = None,
) -> dict[str, Any]:
    return {
        "kind": "fill", "portfolio_id": f"{source}_{strategy}", "source": source,
        "strategy_id": strategy, "instrument_token": token, "side": side, "quantity": qty,
        "signed_qty": qty if side == "BUY" else -qty, "fill_price": price, "fee": fee,
        "fill_id": fill_id, "ts": ts, "topic": topic, "partition": partition, "offset": offset,
    }


def tick(token: int, price: float, ts: int | None, *, topic: str | None = None,
         partition: int | None = None, offset: int | None = None) -> dict[str, Any]:
    return {"kind": "tick", "instrument_token": token, "last_price": price, "ts": ts,
            "topic": topic, "partition": partition, "offset": offset}


def reject(reason: str, *, topic: str | None = None, partition: int | None = None,
           offset: int | None = None) -> dict[str, Any]:
    return {"kind": "reject", "raw": b"{bad", "reason": reason, "topic": topic,
            "partition": partition, "offset": offset}


def batch(events: list[dict[str, Any]]) -> DecodedBatch:
    """A decoded batch of ``events`` with ``seq`` = position in the list."""
    rows: dict[str, list[dict[str, Any]]] = {"fill": [], "tick": [], "reject": []}
    for seq, ev in enumerate(events):
        rows[ev["kind"]].append({**{k: v for k, v in ev.items() if k != "kind"}, "seq": seq})

    def frame(kind: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        if not rows[kind]:
            return empty(schema)
        return conform(pl.DataFrame(rows[kind], schema_overrides=schema), schema)

    return DecodedBatch(frame("fill", FILL_SCHEMA), frame("tick", TICK_SCHEMA),
                        frame("reject", REJECT_SCHEMA))


# The three-day book of tests/unit/test_eod.py (hand-worked there): starting cash 1,000,000,
# fees 1 per fill, A multiplier 1, B multiplier 2.
A, B = 256265, 738561
INSTRUMENTS = pl.DataFrame({"instrument_token": [A, B], "multiplier": [1.0, 2.0]})
DAYS = {
    D1: [fill("S1", A, "BUY", 10, 95.0, at(D1, 4), fee=1.0, fill_id="a1"),
         fill("S2", B, "SELL", 10, 100.0, at(D1, 4, 1), fee=1.0, fill_id="b1"),
         tick(A, 100.0, at(D1, 9)), tick(B, 98.0, at(D1, 9))],
    D2: [fill("S1", A, "BUY", 5, 102.0, at(D2, 4), fee=1.0, fill_id="a2"),
         fill("S1", A, "SELL", 8, 105.0, at(D2, 5), fee=1.0, fill_id="a3"),
         fill("S2", B, "BUY", 4, 97.0, at(D2, 5, 30), fee=1.0, fill_id="b2"),
         tick(A, 104.0, at(D2, 9)), tick(B, 96.0, at(D2, 9))],
    D3: [fill("S1", A, "SELL", 7, 106.0, at(D3, 4), fee=1.0, fill_id="a4"),
         tick(A, 107.0, at(D3, 9))],
}


def build_book(root: Path) -> PortfolioEngine:
    """Archive the book under ``root`` day by day through a live engine; returns it."""
    eng = PortfolioEngine(starting_cash=START, instruments=INSTRUMENTS)
    save_engine_config(root, eng)
    with ArchiveWriter(root, fsync=False) as w:
        for events in DAYS.values():
            w.submit(eng.apply_decoded(batch(events)))
    return eng
