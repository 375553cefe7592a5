"""Events the engine refuses after decode, as reject rows, and the position bound.

Decode judges each record alone (``pm_polars.events.rules``); some rules need the engine's
state: how far event time may jump (``timebound``), the dedupe window and conflicting
re-sends (``dedupe``), and the bound on a position's size (here). Each refused event
becomes a ``REJECT_SCHEMA`` row with its reason; ``raw`` is the JSON of the decoded event
(the daemon puts the Kafka record's own bytes back, by ``seq``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl

from pm_polars.engine.plans import run
from pm_polars.events.schema import FILL_EVENT, REJECT_SCHEMA, TICK_EVENT, empty

# |position| in units: float64 holds every integer up to 2**53 exactly, int64 never wraps
MAX_POSITION = 2**53
_KEYS = ["portfolio_id", "instrument_token"]
_PROVENANCE = ["topic", "partition", "offset"]


def _ms(ts: int | None) -> int | Decimal | None:
    """ns -> epoch ms, exact (a fraction as a decimal)."""
    if ts is None:
        return None
    return ts // 10**6 if ts % 10**6 == 0 else Decimal(ts) / 10**6


def wire_json(events: pl.DataFrame) -> pl.Series:
    """Each decoded fill or tick row written back as its wire JSON (``ts`` in epoch ms)."""
    out = []
    fill = "side" in events.columns
    for r in events.iter_rows(named=True):
        if fill:
            event: dict[str, Any] = {
                "event_type": FILL_EVENT, "source": r["source"], "fill_id": r["fill_id"],
                "ts": _ms(r["ts"]), "quantity": r["quantity"], "fill_price": r["fill_price"],
                "fee": r["fee"], "original_signal": {
                    "strategy_id": r["strategy_id"], "instrument_token": r["instrument_token"],
                    "signal_type": r["side"]}}
        else:
            event = {"event_type": TICK_EVENT, "instrument_token": r["instrument_token"],
                     "last_price": r["last_price"], "ts": _ms(r["ts"])}
        out.append(json.dumps(event, default=str).encode())
    return pl.Series("raw", out, dtype=pl.Binary)


def rejects_of(events: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    """``REJECT_SCHEMA`` rows for ``events`` (fill or tick rows), each with ``reason``;
    ``raw`` is the event's wire JSON (the engine never saw the record's own bytes)."""
    if events.height == 0:
        return empty(REJECT_SCHEMA)
    raw = wire_json(events)
    return events.with_columns(raw, reason.cast(pl.String).alias("reason")).select(
        [pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items()]
    )


def merge_rejects(*frames: pl.DataFrame) -> pl.DataFrame:
    """Reject frames as one, in ``seq`` order."""
    parts = [f for f in frames if f.height]
    if not parts:
        return frames[0]
    return parts[0] if len(parts) == 1 else pl.concat(parts).sort("seq")


def position_bound(positions: pl.DataFrame, fills: pl.DataFrame
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(fills kept, rejects)``: a fill that would take its position beyond
    ``MAX_POSITION`` units either way is refused (later fills of the position apply to
    the position without it, in arrival order). One check of the batch's total quantity
    when no position can get near the bound (every real batch)."""
    if fills.height == 0:
        return fills, empty(REJECT_SCHEMA)
    held = positions.get_column("quantity").abs().max() if positions.height else 0
    total = float(fills.get_column("quantity").cast(pl.Float64).sum())
    if float(held or 0) + total <= MAX_POSITION:  # type: ignore[arg-type]
        return fills, empty(REJECT_SCHEMA)
    prior = positions.lazy().select(*_KEYS, pl.col("quantity").cast(pl.Float64).alias("_q0"))
    walk = run(
        fills.lazy().join(prior, on=_KEYS, how="left", maintain_order="left")
        .with_columns(
            (pl.col("_q0").fill_null(0.0)
             + pl.col("signed_qty").cast(pl.Float64).cum_sum().over(_KEYS)).alias("_q"))
    )
    over = walk.filter(pl.col("_q").abs() > MAX_POSITION).select(_KEYS).unique()
    if over.height == 0:
        return fills, empty(REJECT_SCHEMA)
    # only the positions that pass the bound are walked fill by fill (exact integers)
    suspects = walk.join(over, on=_KEYS, how="semi", maintain_order="left")
    now: dict[tuple[str, int], int] = {}
    for pid, token, q0 in positions.join(over, on=_KEYS, how="semi").select(
            *_KEYS, "quantity").iter_rows():
        now[(pid, token)] = q0
    gone: list[int] = []
    for seq, pid, token, signed in suspects.select("seq", *_KEYS, "signed_qty").iter_rows():
        q = now.get((pid, token), 0) + signed
        if abs(q) > MAX_POSITION:
            gone.append(seq)
        else:
            now[(pid, token)] = q
    refused = fills.filter(pl.col("seq").is_in(gone))
    fills = fills.filter(~pl.col("seq").is_in(gone))
    reason = pl.format(
        "quantity: the position of {} in {} would pass {} units (the exact-integer limit), "
        "got {}", "portfolio_id", "instrument_token", pl.lit(MAX_POSITION), "quantity"
    )
    return fills, rejects_of(refused, reason)
