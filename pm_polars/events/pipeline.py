"""The decode pipeline for one batch of raw messages (all columnar but the Python fallback).

1. bytes -> Arrow binary array; UTF-8 check (a bad message is found by bisection);
2. ``fastparse``: pyarrow reads every message it provably can, per routing variant;
3. ``pyparse``: the remaining records, one by one, with a precise reason when invalid;
4. ``validate``: one rule chain over all rows, then the split into fills / ticks / rejects.

Invariant: ``fills.height + ticks.height + rejects.height == len(input)``, and ``seq`` is
the record's position in the input plus ``seq_start`` in all three frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.batch import DecodedBatch
from pm_polars.events.fastparse import parse_fast
from pm_polars.events.pyparse import parse_record
from pm_polars.events.rawschema import rows_to_raw
from pm_polars.events.validate import split

log = logging.getLogger(__name__)


def as_bytes(i: int, value: object) -> bytes | None:
    """Message ``i`` as bytes (``str`` encoded as UTF-8); ``TypeError`` for other types."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")  # lone surrogates -> invalid UTF-8
    raise TypeError(f"message {i}: expected bytes, str or None, got {type(value).__name__}")


def to_binary(values: Sequence[object]) -> pa.Array:
    """Messages as an Arrow ``large_binary`` array (``None`` -> null)."""
    try:
        return pa.array(values, type=pa.large_binary())
    except (pa.ArrowException, TypeError, ValueError):
        return pa.array([as_bytes(i, v) for i, v in enumerate(values)], type=pa.large_binary())


def _utf8_text(arr: pa.Array) -> pl.Series:
    """The messages as a String series; null for tombstones and for invalid UTF-8."""
    try:
        text = arr.cast(pa.large_string())
    except pa.ArrowInvalid:
        bad: list[int] = []
        stack = [(0, len(arr))]
        while stack:
            lo, hi = stack.pop()
            try:
                arr[lo:hi].cast(pa.large_string())
            except pa.ArrowInvalid:
                if hi - lo == 1:
                    bad.append(lo)
                else:
                    mid = (lo + hi) // 2
                    stack += [(lo, mid), (mid, hi)]
        mask = pl.repeat(False, len(arr), eager=True).scatter(bad, True).to_arrow()
        text = pc.if_else(mask, pa.scalar(None, pa.large_binary()), arr).cast(pa.large_string())
    series = pl.from_arrow(text)
    assert isinstance(series, pl.Series)
    return series


def _column(name: str, values: Sequence[Any] | pl.Series | None, dtype: Any, n: int) -> pl.Series:
    """A per-message column (all null when not given); its length must match the batch."""
    if values is None:
        return pl.repeat(None, n, dtype=dtype, eager=True).alias(name)
    if len(values) != n:
        raise ValueError(f"{name}: got {len(values)} values for {n} messages")
    if isinstance(values, pl.Series):
        return values.cast(dtype, strict=False).alias(name)
    return pl.Series(name, list(values), dtype=dtype)


def decode_binary(
    arr: pa.Array,
    *,
    seq_start: int,
    topics: Sequence[str] | pl.Series | None = None,
    partitions: Sequence[int] | pl.Series | None = None,
    offsets: Sequence[int] | pl.Series | None = None,
    kafka_timestamps_ms: Sequence[int | None] | None = None,
) -> DecodedBatch:
    """Decode an Arrow binary array of messages (null = tombstone) into a ``DecodedBatch``.

    Provenance sequences, when given, have one value per message; ``kafka_timestamps_ms``
    (ms since epoch, ``None``/negative = unknown) stands in for a missing/null ``ts``.
    """
    n = len(arr)
    extra = [
        _column("topic", topics, pl.String, n),
        _column("partition", partitions, pl.Int32, n),
        _column("offset", offsets, pl.Int64, n),
        _column("kafka_ts_ms", kafka_timestamps_ms, pl.Int64, n),
    ]
    if n == 0:
        return DecodedBatch.empty()
    parsed, slow = parse_fast(_utf8_text(arr))
    if slow:
        slow.sort()
        slow_raw = arr.take(pa.array(slow, pa.int64())).to_pylist()
        rows = rows_to_raw([parse_record(raw) for raw in slow_raw])
        parsed.append(rows.with_columns(idx=pl.Series(slow, dtype=pl.Int64)))
        log.debug("%d of %d records decoded in Python", len(slow), n)
    rows = pl.concat(parsed, how="vertical")
    if len(parsed) > 1:
        rows = rows.sort("idx")
    if rows.height != n or not rows["idx"].equals(pl.int_range(n, eager=True), check_names=False):
        raise RuntimeError(f"decode lost track of records: {rows.height} rows for {n} messages")
    raw = pl.from_arrow(arr)
    assert isinstance(raw, pl.Series)
    rows = rows.with_columns(
        (pl.col("idx") + seq_start).alias("seq"), raw.cast(pl.Binary).alias("raw"), *extra
    )
    fills, ticks, rejects = split(rows)
    return DecodedBatch(fills, ticks, rejects)
