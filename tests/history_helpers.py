"""Builders for the history tests: decoded batches from plain event lists, days in ns.

Events are dicts made by :func:`fill` and :func:`tick`; :func:`batch` turns a list of them
into a ``DecodedBatch`` whose ``seq`` is the position in the list (arrival order), so fills
and ticks interleave exactly as listed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl

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
