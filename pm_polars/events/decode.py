"""Decode stage entry points: raw Kafka values, frames or dicts -> ``DecodedBatch``.

Every input form is brought to the same typed rows (``schema.RAW_SCHEMA``) and judged by the
same rule table over whole columns (``rules``), so the same event gets the same result (same
values, same reject reason) whatever its form:

* messages: one pyarrow read of the whole batch (``read.read_clean`` for a batch proved
  clean over its bytes; else ``read``, ``isolate``), the records it refuses one by one in
  Python (``fallback``);
* frames and Arrow tables: their typed columns, checked column by column (``typed``);
* dicts: each checked in Python (``fallback.dict_record``), no JSON round trip.

Invariant: ``fills.height + ticks.height + rejects.height == len(input)``; ``seq`` is the
record's position in the input plus ``seq_start`` in all three frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from pm_polars.events import typed
from pm_polars.events.fallback import dict_record, parse_record, quote_raw
from pm_polars.events.isolate import read_fast, to_frames
from pm_polars.events.read import (
    as_bytes,
    positions,
    read_clean,
    table_to_raw,
    to_binary,
    utf8_text,
)
from pm_polars.events.rules import split
from pm_polars.events.schema import (
    FILL_SCHEMA,
    RAW_SCHEMA,
    REJECT_SCHEMA,
    TICK_SCHEMA,
    TS_INT,
    empty,
)

log = logging.getLogger(__name__)
_BYTES_LIKE = (bytes, bytearray, memoryview)
RawOf = Callable[[pl.Series], pl.Series]  # failed-row mask -> their records as Binary


@dataclass(frozen=True)
class DecodedBatch:
    """Valid fills and ticks plus every rejected record, each frame in ``seq`` order.

    ``fills`` follows ``FILL_SCHEMA``, ``ticks`` ``TICK_SCHEMA``, ``rejects`` ``REJECT_SCHEMA``.
    Every input record lands in exactly one of the three frames, so ``size`` equals the
    number of records that were decoded.
    """

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame

    @property
    def size(self) -> int:
        """Total number of records: fills + ticks + rejects."""
        return self.fills.height + self.ticks.height + self.rejects.height

    @classmethod
    def empty(cls) -> DecodedBatch:
        """A batch of zero records (all three frames empty, with their schemas)."""
        return cls(empty(FILL_SCHEMA), empty(TICK_SCHEMA), empty(REJECT_SCHEMA))


def _column(name: str, values: Sequence[Any] | pl.Series, dtype: Any, n: int) -> pl.Series:
    """A per-record column; its length must match the batch."""
    if len(values) != n:
        raise ValueError(f"{name}: got {len(values)} values for {n} messages")
    if isinstance(values, pl.Series):
        return values.cast(dtype, strict=False).alias(name)
    return pl.Series(name, list(values), dtype=dtype)


def _judge(
    rows: pl.DataFrame, seq_start: int, extra: list[pl.Series], raw_of: RawOf,
    quantity_decimals: int = 0, positive_prices: bool = True,
) -> DecodedBatch:
    """Rows in input order (``RAW_SCHEMA``) -> the batch, through the rule table."""
    if rows.height == 0:
        return DecodedBatch.empty()
    seq = positions(rows.height, seq_start, "seq")
    fills, ticks, rejects = split(rows.hstack([seq.alias("seq"), *extra]), raw_of,
                                  quantity_decimals, positive_prices)
    return DecodedBatch(fills, ticks, _raw_values(rejects))


def _raw_values(rejects: pl.DataFrame) -> pl.DataFrame:
    """Reasons about a number quote it as the record wrote it (``fallback.quote_raw``)."""
    if rejects.height == 0:
        return rejects
    reasons = rejects.get_column("reason").to_list()
    raws = rejects.get_column("raw").to_list()
    quoted = [r if r is None or raw is None else quote_raw(raw, r)
              for raw, r in zip(raws, reasons, strict=True)]
    if quoted == reasons:
        return rejects
    return rejects.with_columns(pl.Series("reason", quoted, dtype=pl.String))


def _in_order(idx: pl.Series, n: int) -> bool:
    """``idx`` is exactly ``0, 1, ..., n - 1``: n values from 0 to n - 1, strictly rising."""
    if len(idx) != n or (n and (idx[0] != 0 or idx[-1] != n - 1)):
        return False
    return n < 3 or bool((idx.slice(1) > idx.slice(0, n - 1)).all())


def _read(arr: pa.Array, clean: pa.Table | None = None) -> pl.DataFrame:
    """``RAW_SCHEMA`` rows, in order, of the messages in ``arr`` (null = tombstone);
    ``clean``: their clean read (``read_clean``) when there is one (no second read)."""
    n = len(arr)
    if clean is not None:
        rows, again = table_to_raw(clean, TS_INT)
        if not len(again):
            return pl.DataFrame([rows.get_column(name) for name in RAW_SCHEMA])  # no query
        parsed, slow = [rows], again.to_list()
    else:
        reads, slow, _ = read_fast(utf8_text(arr))
        parsed, slow = to_frames(reads, slow)
    if slow:
        slow.sort()
        slow_raw = arr.take(pa.array(slow, pa.int64())).to_pylist()
        rows = pl.DataFrame([parse_record(raw) for raw in slow_raw], schema=RAW_SCHEMA)
        parsed.append(rows.with_columns(idx=pl.Series(slow, dtype=pl.Int64)))
        log.debug("%d of %d records decoded in Python", len(slow), n)
    rows = parsed[0] if len(parsed) == 1 else pl.concat(parsed, how="vertical").sort("idx")
    if not _in_order(rows.get_column("idx"), n):
        raise RuntimeError(f"decode lost track of records: {rows.height} rows for {n} messages")
    return pl.DataFrame([rows.get_column(name) for name in RAW_SCHEMA])  # no query


def decode_messages(
    values: Sequence[bytes | None],
    *,
    topics: Sequence[str] | None = None,
    partitions: Sequence[int] | None = None,
    offsets: Sequence[int] | None = None,
    kafka_timestamps_ms: Sequence[int | None] | None = None,
    seq_start: int = 0,
    quantity_decimals: int = 0,
    positive_prices: bool = True,
) -> DecodedBatch:
    """Decode raw Kafka message values (one JSON object each; ``None`` = tombstone).

    ``quantity_decimals``: decimal places a fill's ``quantity`` may carry (0: integers, as
    ever; ``d`` > 0: quantities come out as atoms of ``10**-d`` units, see ``rules``).
    ``positive_prices``: True (default) refuses a price <= 0; False leaves the sign to the
    engine step, which knows which instruments allow it (``rules``).

    ``topics``/``partitions``/``offsets`` (same length as ``values``) are carried to every
    output frame; ``kafka_timestamps_ms`` (ms, ``None``/negative = unknown) stands in for a
    missing/null ``ts``. ``str`` values are accepted too (encoded as UTF-8).
    """
    arr = to_binary(values)
    n = len(arr)
    given = {"topic": (topics, pl.String), "partition": (partitions, pl.Int32)}
    given["offset"] = (offsets, pl.Int64)
    extra = [_column(k, v, dtype, n) for k, (v, dtype) in given.items() if v is not None]
    if kafka_timestamps_ms is not None:
        extra.append(_column("kafka_ts_ms", kafka_timestamps_ms, pl.Int64, n))
    if n == 0:
        return DecodedBatch.empty()

    def raw_of(failed: pl.Series) -> pl.Series:  # the rejects' records alone, as Binary
        return pl.Series("raw", arr.filter(failed.to_arrow())).cast(pl.Binary)

    return _judge(_read(arr, read_clean(arr, quantity_decimals)), seq_start, extra, raw_of,
                  quantity_decimals,
                  positive_prices)


def decode_frame(data: pl.DataFrame | pa.Table, *, seq_start: int = 0,
                 quantity_decimals: int = 0, positive_prices: bool = True) -> DecodedBatch:
    """Decode rows of a frame (wire layout or flattened signal columns, see ``typed``).

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
    rows = typed.frame_rows(df, quantity_decimals)
    extra = [s for s in typed.provenance(df) if s is not None]
    return _judge(rows, seq_start, extra, lambda failed: typed.row_json(df.filter(failed)),
                  quantity_decimals, positive_prices)


def decode_dicts(events: Sequence[Mapping[str, Any]], *, seq_start: int = 0,
                 quantity_decimals: int = 0, positive_prices: bool = True) -> DecodedBatch:
    """Decode events given as dicts (notebooks, tests): each is type-checked as the JSON
    object it stands for, then judged with the batch. ``datetime`` values stand for ISO-8601
    strings; a value JSON cannot hold makes its event a reject (``raw`` = its ``repr``)."""
    items = list(events)
    if not items:
        return DecodedBatch.empty()
    rows = pl.DataFrame([dict_record(e) for e in items], schema=RAW_SCHEMA)
    return _judge(rows, seq_start, [], lambda failed: typed.dict_json(items, failed),
                  quantity_decimals, positive_prices)


def _mixed(items: list[object], seq_start: int, quantity_decimals: int = 0,
           positive_prices: bool = True) -> DecodedBatch:
    """Messages and dicts in one list: each part decoded with its own path, then merged."""
    is_dict = [isinstance(x, Mapping) for x in items]
    msgs: list[bytes | None] = []
    for i, item in enumerate(items):
        if not is_dict[i]:
            if item is not None and not isinstance(item, (str, *_BYTES_LIKE)):
                raise TypeError(
                    f"decode_any: item {i} is a {type(item).__name__}; "
                    "expected bytes, str, None or a dict"
                )
            msgs.append(as_bytes(i, item))
    a = decode_messages(msgs, quantity_decimals=quantity_decimals,
                        positive_prices=positive_prices)
    b = decode_dicts([x for x in items if isinstance(x, Mapping)],
                     quantity_decimals=quantity_decimals, positive_prices=positive_prices)
    where = [i for i, d in enumerate(is_dict) if not d] + [i for i, d in enumerate(is_dict) if d]
    position = pl.Series("seq", where, dtype=pl.Int64)  # messages first, then dicts

    def renumber(a_part: pl.DataFrame, b_part: pl.DataFrame) -> pl.DataFrame:
        b_part = b_part.with_columns(pl.col("seq") + len(msgs))
        both = pl.concat([a_part, b_part], how="diagonal")  # optional columns in one part
        return both.with_columns(position.gather(both["seq"]) + seq_start).sort("seq")

    return DecodedBatch(
        renumber(a.fills, b.fills), renumber(a.ticks, b.ticks), renumber(a.rejects, b.rejects)
    )


def decode_any(batch: object, *, seq_start: int = 0,
               quantity_decimals: int = 0, positive_prices: bool = True) -> DecodedBatch:
    """Dispatch on the batch type: messages, dicts, a frame, or an already decoded batch.

    * ``DecodedBatch`` -> returned as is;
    * ``pl.DataFrame`` / ``pa.Table`` / ``pa.RecordBatch`` -> ``decode_frame``;
    * a list/tuple of ``bytes``/``str``/``None`` -> ``decode_messages``; of dicts ->
      ``decode_dicts``; a mix of both -> each part by its own path, in input order;
    * a ``pl.Series`` / Arrow array of strings or binary -> ``decode_messages``.

    ``quantity_decimals``, ``positive_prices``: see ``decode_messages`` (a ``DecodedBatch``
    is taken as is).
    """
    d, pp = quantity_decimals, positive_prices
    if isinstance(batch, DecodedBatch):
        return batch
    if isinstance(batch, pl.DataFrame | pa.Table | pa.RecordBatch):
        return decode_frame(batch, seq_start=seq_start, quantity_decimals=d, positive_prices=pp)
    if isinstance(batch, pl.Series | pa.Array | pa.ChunkedArray):
        series = batch if isinstance(batch, pl.Series) else pl.Series(batch)
        if series.dtype in (pl.String, pl.Binary, pl.Null):
            return decode_messages(series.cast(pl.Binary).to_list(), seq_start=seq_start,
                                   quantity_decimals=d, positive_prices=pp)
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
        return decode_dicts(items, seq_start=seq_start, quantity_decimals=d, positive_prices=pp)
    if not any(isinstance(x, Mapping) for x in items):
        for i, item in enumerate(items):
            if item is not None and not isinstance(item, (str, *_BYTES_LIKE)):
                raise TypeError(
                    f"decode_any: item {i} is a {type(item).__name__}; "
                    "expected bytes, str, None or a dict"
                )
        return decode_messages(items, seq_start=seq_start, quantity_decimals=d,
                               positive_prices=pp)
    return _mixed(items, seq_start, d, pp)
