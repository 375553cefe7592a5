"""The intermediate "raw row" contract shared by the two JSON decoders.

Both decoders (pyarrow over a whole batch in ``fastparse``, plain Python per record in
``pyparse``) produce rows of ``RAW_SCHEMA``: the wire fields with their JSON types checked but
their *values* not yet validated. ``validate`` then judges every row columnarly, so a record
gets the same result whichever decoder happened to read it.

Column meanings:

* ``ts_int``: an integer ``ts`` within int64 (the common case), else null.
* ``ts_num``: decimal text of any other numeric ``ts`` (exact, e.g. ``"1795600550.123"``).
* ``ts_str``: a string ``ts`` as sent, else null.
* ``instrument_token`` / ``last_price``: top-level tick fields; ``sig_token``, ``strategy_id``,
  ``signal_type``: the fields of ``original_signal`` (``sig_present`` = it was an object).
* ``parse_error``: reason found while decoding (bad JSON, wrong JSON type, ...), else null.
"""

from __future__ import annotations

import functools
from functools import cache
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

RAW_SCHEMA: dict[str, pl.DataType] = {
    "event_type": pl.String(),
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts_int": pl.Int64(),
    "ts_num": pl.String(),
    "ts_str": pl.String(),
    "quantity": pl.Int64(),
    "fill_price": pl.Float64(),
    "fee": pl.Float64(),
    "instrument_token": pl.Int64(),
    "last_price": pl.Float64(),
    "sig_present": pl.Boolean(),
    "strategy_id": pl.String(),
    "sig_token": pl.Int64(),
    "signal_type": pl.String(),
    "parse_error": pl.String(),
}

FILL_KEYS = frozenset(
    {"event_type", "source", "fill_id", "ts", "quantity", "fill_price", "fee", "original_signal"}
)
TICK_KEYS = frozenset({"event_type", "instrument_token", "last_price", "ts"})
SIGNAL_KEYS = frozenset({"strategy_id", "instrument_token", "signal_type"})

# How pyarrow reads ``ts`` per routing variant. A decimal holds a fractional epoch number
# exactly (up to 29 integer and 9 fractional digits; anything else fails the read and falls
# back to the Python decoder).
TS_INT, TS_DECIMAL, TS_STRING = "int", "decimal", "string"
_TEXT = pa.string_view()
_TS_TYPES = {TS_INT: pa.int64(), TS_DECIMAL: pa.decimal128(38, 9), TS_STRING: _TEXT}
# Integer fields are read as float64 (pyarrow's int64 conversion error names no row); values
# that are not exact integers below 2**53 are re-decoded by the Python decoder.
_EXACT_FLOAT_INT = 2**53
_SIGNAL = pa.struct(
    [
        ("strategy_id", _TEXT),
        ("instrument_token", pa.float64()),
        ("signal_type", _TEXT),
    ]
)


@cache
def arrow_schema(ts_kind: str, fill_id_is_number: bool) -> pa.Schema:
    """Explicit pyarrow schema for one routing variant (JSON types differ per variant).

    Strings are read as ``string_view``, Polars' own layout (no copy into a frame)."""
    return pa.schema(
        [
            ("event_type", _TEXT),
            ("source", _TEXT),
            ("fill_id", pa.int64() if fill_id_is_number else _TEXT),
            ("ts", _TS_TYPES[ts_kind]),
            ("quantity", pa.float64()),
            ("fill_price", pa.float64()),
            ("fee", pa.float64()),
            ("instrument_token", pa.float64()),
            ("last_price", pa.float64()),
            ("original_signal", _SIGNAL),
        ]
    )


def _exact_ints(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """An integer field read as float64 -> int64, and the rows to re-decode (``None``: none).

    A value float64 cannot prove to be the exact integer sent (fraction, NaN, infinite,
    ``|x| >= 2**53``) is null here and its row is re-decoded.
    """
    bounds = pc.min_max(values)  # NaN is skipped; the safe cast refuses it
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or (-_EXACT_FLOAT_INT < low and high < _EXACT_FLOAT_INT):
        try:
            return pc.cast(values, pa.int64()), None  # raises on a fraction, NaN or inf
        except pa.ArrowInvalid:
            pass
    exact = pc.and_(
        pc.and_(pc.is_finite(values), pc.equal(values, pc.floor(values))),
        pc.less(pc.abs(values), _EXACT_FLOAT_INT),
    )
    ints = pc.if_else(exact, values, pa.scalar(None, pa.float64())).cast(pa.int64())
    return ints, pc.and_kleene(pc.is_valid(values), pc.invert(exact))  # never null


def _ts_columns(ts: pa.ChunkedArray, ts_kind: str) -> list[pa.ChunkedArray | pa.Array]:
    """``ts_int``, ``ts_num``, ``ts_str`` from the ``ts`` column of an ``ts_kind`` read."""
    n = len(ts)
    out: list[pa.ChunkedArray | pa.Array] = [
        pa.nulls(n, pa.int64()),
        pa.nulls(n, pa.large_string()),
        pa.nulls(n, pa.large_string()),
    ]
    if ts_kind == TS_INT:
        out[0] = ts
    elif ts_kind == TS_DECIMAL:  # Polars writes plain decimal text (Arrow's cast may give 1E-9)
        out[1] = pl.Series(ts).cast(pl.String).to_arrow()
    else:
        out[2] = ts
    return out


def _series(name: str, column: pa.ChunkedArray | pa.Array) -> pl.Series:
    """A Polars series of an Arrow column, its chunks kept (no concatenating copy)."""
    if isinstance(column, pa.ChunkedArray) and column.num_chunks > 1:
        series = pl.from_arrow(column, rechunk=False)
        assert isinstance(series, pl.Series)
        return series.alias(name)
    return pl.Series(name, column)


def table_to_raw(
    table: pa.Table, ts_kind: str, idx: pl.Series | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """Convert a pyarrow JSON read (``arrow_schema`` layout) to ``RAW_SCHEMA`` + ``idx``.

    ``idx`` (the records' positions; default ``0..n-1``) becomes a column. Rows where an
    integer field holds a value float64 cannot prove to be the exact integer sent (fraction,
    NaN, >= 2**53) are left out; their ``idx`` is returned for the Python decoder.
    """
    sig = table.column("original_signal")
    quantity, recheck_q = _exact_ints(table.column("quantity"))
    token, recheck_t = _exact_ints(table.column("instrument_token"))
    sig_token, recheck_s = _exact_ints(pc.struct_field(sig, "instrument_token"))
    fill_id = table.column("fill_id")
    columns = [
        table.column("event_type"),
        table.column("source"),
        pc.cast(fill_id, pa.string()) if pa.types.is_integer(fill_id.type) else fill_id,
        *_ts_columns(table.column("ts"), ts_kind),
        quantity,
        table.column("fill_price"),
        table.column("fee"),
        token,
        table.column("last_price"),
        pc.is_valid(sig),
        pc.struct_field(sig, "strategy_id"),
        sig_token,
        pc.struct_field(sig, "signal_type"),
        pa.nulls(table.num_rows, pa.large_string()),
    ]
    position = pl.int_range(table.num_rows, dtype=pl.Int64, eager=True) if idx is None else idx
    rows = pl.DataFrame(
        [_series(name, column) for name, column in zip(RAW_SCHEMA, columns, strict=True)]
        + [position.cast(pl.Int64).alias("idx")]
    )
    checks = [c for c in (recheck_q, recheck_t, recheck_s) if c is not None]
    if not checks:
        return rows, pl.Series("idx", [], dtype=pl.Int64)
    again = pl.Series(functools.reduce(pc.or_kleene, checks)).fill_null(False)
    return rows.filter(~again), rows["idx"].filter(again)


def rows_to_raw(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``RAW_SCHEMA`` frame from Python-decoded rows (dicts keyed by ``RAW_SCHEMA``)."""
    return pl.DataFrame(rows, schema=RAW_SCHEMA)
