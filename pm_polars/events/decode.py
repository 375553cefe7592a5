"""Decode stage entry points: raw Kafka values, frames or dicts -> ``DecodedBatch``.

Every input is turned into JSON messages and decoded by ``pipeline.decode_binary``, so the
same event gets the same result (same values, same reject reason) whatever its form.
Invariant: ``fills.height + ticks.height + rejects.height == len(input)``; ``seq`` is the
record's position in the input plus ``seq_start`` in all three frames.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from pm_polars.events import frames
from pm_polars.events.batch import DecodedBatch
from pm_polars.events.pipeline import as_bytes, decode_binary, to_binary

_BYTES_LIKE = (bytes, bytearray, memoryview)


def decode_messages(
    values: Sequence[bytes | None],
    *,
    topics: Sequence[str] | None = None,
    partitions: Sequence[int] | None = None,
    offsets: Sequence[int] | None = None,
    kafka_timestamps_ms: Sequence[int | None] | None = None,
    seq_start: int = 0,
) -> DecodedBatch:
    """Decode raw Kafka message values (one JSON object each; ``None`` = tombstone).

    ``topics``/``partitions``/``offsets`` (same length as ``values``) are carried to every
    output frame; ``kafka_timestamps_ms`` (ms, ``None``/negative = unknown) stands in for a
    missing/null ``ts``. ``str`` values are accepted too (encoded as UTF-8).
    """
    return decode_binary(
        to_binary(values),
        seq_start=seq_start,
        topics=topics,
        partitions=partitions,
        offsets=offsets,
        kafka_timestamps_ms=kafka_timestamps_ms,
    )


def decode_frame(data: pl.DataFrame | pa.Table, *, seq_start: int = 0) -> DecodedBatch:
    """Decode rows of a frame (wire layout or flattened signal columns, see ``frames``).

    Missing columns are missing fields; ``topic``/``partition``/``offset`` columns, when
    present, are the provenance. A reject's ``raw`` is the JSON of its (whole) row.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    df = pl.from_arrow(data) if isinstance(data, pa.Table) else data
    if not isinstance(df, pl.DataFrame):
        raise TypeError(
            f"decode_frame expects a Polars DataFrame or an Arrow table, got {type(data).__name__}"
        )
    payload = frames.to_json(frames.wire_layout(df)).cast(pl.Binary).to_arrow()
    if len(payload) != df.height:
        raise RuntimeError(f"frame encoding lost rows: {len(payload)} of {df.height}")
    prov = frames.provenance(df)
    batch = decode_binary(
        payload,
        seq_start=seq_start,
        topics=prov["topic"],
        partitions=prov["partition"],
        offsets=prov["offset"],
    )
    if batch.rejects.height == 0:
        return batch
    idx = (batch.rejects["seq"] - seq_start).to_list()
    subset = df[idx]
    try:
        raw = frames.to_json(subset)
    except Exception:  # noqa: BLE001 - columns json_encode cannot write: wire fields only
        raw = frames.to_json(frames.wire_layout(subset))
    rejects = batch.rejects.with_columns(raw.cast(pl.Binary).alias("raw"))
    return DecodedBatch(batch.fills, batch.ticks, rejects)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encode_event(event: object) -> bytes | str:
    """JSON bytes of a dict (compact), or the reason it cannot be encoded (a str)."""
    try:
        return json.dumps(event, default=_json_default, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return f"not JSON-serializable: {exc}"


def _decode_encoded(
    encoded: list[bytes | str | None], items: Sequence[object], seq_start: int
) -> DecodedBatch:
    """Decode encoded events; str entries are encoding failures, reported as rejects."""
    failed = {i: e for i, e in enumerate(encoded) if isinstance(e, str)}
    msgs = [None if isinstance(e, str) else e for e in encoded]
    batch = decode_messages(msgs, seq_start=seq_start)
    if not failed:
        return batch
    patch = pl.DataFrame(
        {
            "seq": [i + seq_start for i in failed],
            "raw": [repr(items[i]).encode("utf-8", "backslashreplace") for i in failed],
            "reason": list(failed.values()),
        },
        schema={"seq": pl.Int64, "raw": pl.Binary, "reason": pl.String},
    )
    rejects = batch.rejects.update(patch, on="seq")
    return DecodedBatch(batch.fills, batch.ticks, rejects)


def decode_dicts(events: Sequence[Mapping[str, Any]], *, seq_start: int = 0) -> DecodedBatch:
    """Decode events given as dicts (notebooks, tests): each is JSON-encoded, then decoded.

    ``datetime`` values are written as ISO-8601 strings; an event that cannot be
    JSON-encoded becomes a reject (``raw`` = its ``repr``).
    """
    items = list(events)
    return _decode_encoded([_encode_event(e) for e in items], items, seq_start)


def decode_any(batch: object, *, seq_start: int = 0) -> DecodedBatch:
    """Dispatch on the batch type: messages, dicts, a frame, or an already decoded batch.

    * ``DecodedBatch`` -> returned as is;
    * ``pl.DataFrame`` / ``pa.Table`` / ``pa.RecordBatch`` -> ``decode_frame``;
    * a list/tuple of ``bytes``/``str``/``None`` -> ``decode_messages``; of dicts ->
      ``decode_dicts``; a mix of both -> each dict JSON-encoded, then ``decode_messages``;
    * a ``pl.Series`` / Arrow array of strings or binary -> ``decode_messages``.
    """
    if isinstance(batch, DecodedBatch):
        return batch
    if isinstance(batch, pl.DataFrame | pa.Table | pa.RecordBatch):
        return decode_frame(batch, seq_start=seq_start)
    if isinstance(batch, pl.Series | pa.Array | pa.ChunkedArray):
        series = batch if isinstance(batch, pl.Series) else pl.Series(batch)
        if series.dtype in (pl.String, pl.Binary, pl.Null):
            return decode_messages(series.cast(pl.Binary).to_list(), seq_start=seq_start)
        raise TypeError(
            f"decode_any: a series of messages must be String or Binary, got {series.dtype}"
        )
    if isinstance(batch, str | bytes | bytearray | memoryview | Mapping):
        raise TypeError(
            f"decode_any expects a batch, got a single {type(batch).__name__}: wrap it in a list"
        )
    if not isinstance(batch, Sequence):
        raise TypeError(
            f"decode_any: unsupported batch type {type(batch).__name__}; expected a list of "
            "bytes/str or dicts, a Polars DataFrame, an Arrow table or a DecodedBatch"
        )
    items = list(batch)
    if items and all(isinstance(x, Mapping) for x in items):
        return decode_dicts(items, seq_start=seq_start)
    encoded: list[bytes | str | None] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            encoded.append(_encode_event(item))
        elif item is None or isinstance(item, (str, *_BYTES_LIKE)):
            encoded.append(as_bytes(i, item))
        else:
            raise TypeError(
                f"decode_any: item {i} is a {type(item).__name__}; expected bytes, str, None or a dict"
            )
    return _decode_encoded(encoded, items, seq_start)
