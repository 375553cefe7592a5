"""Events the engine refuses after decode, as reject rows, and the position bound.

Decode judges each record alone (``pm_polars.events.rules``); some rules need the engine's
state: how far event time may jump (``timebound``), the dedupe window and conflicting
re-sends (``dedupe``), and the bound on a position's size (here). Each refused event
becomes a ``REJECT_SCHEMA`` row with its reason; ``raw`` is the JSON of the decoded event
(the daemon puts the Kafka record's own bytes back, by ``seq``).
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine.plans import run
from pm_polars.events.schema import REJECT_SCHEMA, empty
from pm_polars.events.typed import to_json

# |position| in units (in atoms with ``quantity_decimals`` > 0): float64 holds every integer
# up to 2**53 exactly, int64 never wraps
MAX_POSITION = 2**53
_KEYS = ["portfolio_id", "instrument_token"]
_PROVENANCE = ["topic", "partition", "offset"]


def rejects_of(events: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    """``REJECT_SCHEMA`` rows for ``events`` (fill or tick rows), each with ``reason``."""
    if events.height == 0:
        return empty(REJECT_SCHEMA)
    body = events.drop([c for c in ["seq", *_PROVENANCE] if c in events.columns])
    raw = to_json(body).cast(pl.Binary).alias("raw")
    return events.with_columns(raw, reason.cast(pl.String).alias("reason")).select(
        [pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items()]
    )


def merge_rejects(*frames: pl.DataFrame) -> pl.DataFrame:
    """Reject frames as one, in ``seq`` order."""
    parts = [f for f in frames if f.height]
    if not parts:
        return frames[0]
    return parts[0] if len(parts) == 1 else pl.concat(parts).sort("seq")


def position_bound(positions: pl.DataFrame, fills: pl.DataFrame, scale: int = 1
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(fills kept, rejects)``: a fill that would take its position beyond
    ``MAX_POSITION`` units either way is refused (later fills of the position apply to
    the position without it, in arrival order). One check of the batch's total quantity
    when no position can get near the bound (every real batch). ``scale``: atoms per unit
    (the bound is ``MAX_POSITION`` atoms)."""
    if fills.height == 0:
        return fills, empty(REJECT_SCHEMA)
    held = positions.get_column("quantity").abs().max() if positions.height else 0
    total = float(fills.get_column("quantity").cast(pl.Float64).sum())
    if float(held or 0) + total <= MAX_POSITION:  # type: ignore[arg-type]
        return fills, empty(REJECT_SCHEMA)
    prior = positions.lazy().select(*_KEYS, pl.col("quantity").cast(pl.Float64).alias("_q0"))
    refused: list[pl.DataFrame] = []
    while True:
        walk = run(
            fills.lazy().join(prior, on=_KEYS, how="left", maintain_order="left")
            .with_columns(
                (pl.col("_q0").fill_null(0.0)
                 + pl.col("signed_qty").cast(pl.Float64).cum_sum().over(_KEYS)).alias("_q")
            )
        )
        over = walk.filter(pl.col("_q").abs() > MAX_POSITION)
        if over.height == 0:
            break
        first = over.group_by(_KEYS).agg(pl.col("seq").min())
        gone = fills.join(first.select("seq"), on="seq", how="semi")
        refused.append(gone)
        fills = fills.join(first.select("seq"), on="seq", how="anti")
    limit = pl.lit(MAX_POSITION if scale == 1 else f"{MAX_POSITION / scale:.8g}")
    got = pl.col("quantity") if scale == 1 else pl.col("quantity") / float(scale)
    reason = pl.format(
        "quantity: the position of {} in {} would pass {} units (the exact-integer limit), "
        "got {}", "portfolio_id", "instrument_token", limit, got
    )
    return fills, rejects_of(pl.concat(refused).sort("seq"), reason)
