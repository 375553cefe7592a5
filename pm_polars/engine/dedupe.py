"""Idempotent redelivery: fills whose ``(source, fill_id)`` was seen before are dropped.

The memory of seen ids is part of the engine state (and of every snapshot), so a duplicate
is recognised within a batch, across batches, and after a restart. Entries older than the
retention horizon (newest event time seen minus ``retention_ns``) are forgotten.
Fills without a ``fill_id`` are never treated as duplicates.
"""

from __future__ import annotations

import polars as pl

SEEN_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts": pl.Int64(),  # event time of the first sighting (ns UTC); the clock if it had none
}

_KEY = ["source", "fill_id"]


def split_duplicates(
    fills: pl.DataFrame, seen: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``fills`` into (fresh, duplicates), keeping arrival order in both."""
    if fills.height == 0:
        return fills, fills
    has_id = pl.col("fill_id").is_not_null()
    repeat_in_batch = has_id & ~pl.struct(_KEY).is_first_distinct()
    seen_before = pl.struct(_KEY).is_in(seen.select(pl.struct(_KEY)).to_series().implode())
    marked = fills.with_columns((repeat_in_batch | (has_id & seen_before)).alias("_dup"))
    fresh = marked.filter(~pl.col("_dup")).drop("_dup")
    dups = marked.filter(pl.col("_dup")).drop("_dup")
    return fresh, dups


def remember(
    seen: pl.DataFrame, fresh: pl.DataFrame, clock_ns: int | None, retention_ns: int | None
) -> pl.DataFrame:
    """Add ``fresh`` fills' ids to ``seen`` and forget entries beyond the retention horizon."""
    new = fresh.filter(pl.col("fill_id").is_not_null()).select(
        "source", "fill_id", pl.col("ts").fill_null(pl.lit(clock_ns, pl.Int64)).cast(pl.Int64)
    )
    out = pl.concat([seen, new]) if new.height else seen
    if retention_ns is not None and clock_ns is not None:
        out = out.filter(pl.col("ts").is_null() | (pl.col("ts") >= clock_ns - retention_ns))
    return out
