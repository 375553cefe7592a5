"""Idempotent redelivery: fills whose ``(source, fill_id)`` was seen before are dropped.

The memory of seen ids is part of the engine state (and of every snapshot), so a duplicate
is recognised within a batch, across batches, and after a restart. Entries older than the
retention horizon (newest event time seen minus ``retention_ns``) are forgotten.
Fills without a ``fill_id`` are never treated as duplicates.

Matching is done on a 64-bit hash of the key first (integer membership tests are several
times faster than on strings) and confirmed on the exact strings for the few candidates,
so a hash collision can never drop a fill.
"""

from __future__ import annotations

import polars as pl

SEEN_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts": pl.Int64(),  # event time of the first sighting (ns UTC); the clock if it had none
}

_KEY = ["source", "fill_id"]
_HASH_SEED = 0x706D  # fixed; hashes live in memory only and are recomputed on restore


def key_hash() -> pl.Expr:
    """64-bit hash of ``(source, fill_id)`` (null when there is no fill_id)."""
    return (
        pl.when(pl.col("fill_id").is_not_null())
        .then(pl.struct(_KEY).hash(seed=_HASH_SEED))
        .alias("_h")
    )


def with_hashes(seen: pl.DataFrame) -> pl.DataFrame:
    """The in-memory form of the seen table: ``SEEN_SCHEMA`` plus the key hash ``_h``."""
    return seen.with_columns(key_hash()) if "_h" not in seen.columns else seen


def split_duplicates(
    fills: pl.DataFrame, seen: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``fills`` into (fresh, duplicates), keeping arrival order in both.

    ``seen`` is the in-memory seen table (see ``with_hashes``).
    """
    if fills.height == 0 or fills.get_column("fill_id").null_count() == fills.height:
        return fills, fills.clear()
    h = pl.col("_h")
    marked = fills.with_columns(key_hash()).with_columns(
        (h.is_not_null() & (h.is_in(seen.get_column("_h").implode()) | h.is_duplicated()))
        .alias("_cand")
    )
    if not marked.get_column("_cand").any():
        return fills, fills.clear()
    cand = marked.filter(pl.col("_cand"))
    exact_seen = pl.struct(_KEY).is_in(seen.select(pl.struct(_KEY)).to_series().implode())
    repeat = ~pl.struct(_KEY).is_first_distinct()
    dup_seq = cand.filter(exact_seen | repeat).get_column("seq")
    is_dup = pl.col("seq").is_in(dup_seq.implode())
    return fills.filter(~is_dup), fills.filter(is_dup)


def remember(
    seen: pl.DataFrame, fresh: pl.DataFrame, clock_ns: int | None, retention_ns: int | None
) -> pl.DataFrame:
    """Add ``fresh`` fills' ids to ``seen`` and forget entries beyond the retention horizon."""
    new = fresh.filter(pl.col("fill_id").is_not_null()).select(
        "source", "fill_id", pl.col("ts").fill_null(pl.lit(clock_ns, pl.Int64)).cast(pl.Int64)
    )
    out = pl.concat([seen, with_hashes(new)]) if new.height else seen
    if retention_ns is not None and clock_ns is not None:
        out = out.filter(pl.col("ts").is_null() | (pl.col("ts") >= clock_ns - retention_ns))
    return out
