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

from typing import Any

import polars as pl
import pyarrow as pa

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
_TS_TYPES = {TS_INT: pa.int64(), TS_DECIMAL: pa.decimal128(38, 9), TS_STRING: pa.string()}
# Integer fields are read as float64 (pyarrow's int64 conversion error names no row); values
# that are not exact integers below 2**53 are re-decoded by the Python decoder.
_EXACT_FLOAT_INT = 2**53
_INT_FIELDS = ("quantity", "instrument_token", "sig_token")
_SIGNAL = pa.struct(
    [
        ("strategy_id", pa.string()),
        ("instrument_token", pa.float64()),
        ("signal_type", pa.string()),
    ]
)


def arrow_schema(ts_kind: str, fill_id_is_number: bool) -> pa.Schema:
    """Explicit pyarrow schema for one routing variant (JSON types differ per variant)."""
    return pa.schema(
        [
            ("event_type", pa.string()),
            ("source", pa.string()),
            ("fill_id", pa.int64() if fill_id_is_number else pa.string()),
            ("ts", _TS_TYPES[ts_kind]),
            ("quantity", pa.float64()),
            ("fill_price", pa.float64()),
            ("fee", pa.float64()),
            ("instrument_token", pa.float64()),
            ("last_price", pa.float64()),
            ("original_signal", _SIGNAL),
        ]
    )


def table_to_raw(table: pa.Table, ts_kind: str) -> tuple[pl.DataFrame, pl.Series]:
    """Convert a pyarrow JSON read (``arrow_schema`` layout) to ``RAW_SCHEMA`` columns.

    Also returns a mask of rows to re-decode in Python: an integer field holding a value
    that float64 cannot prove to be the exact integer sent (fraction, NaN, >= 2**53).
    """
    ts = table.column("ts")
    table = table.drop_columns(["ts"])
    for kind, name in ((TS_INT, "ts_int"), (TS_DECIMAL, "ts_num"), (TS_STRING, "ts_str")):
        dtype = {TS_INT: pa.int64(), TS_DECIMAL: _TS_TYPES[TS_DECIMAL]}.get(kind, pa.string())
        table = table.append_column(name, ts if kind == ts_kind else pa.nulls(len(table), dtype))
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    sig = pl.col("original_signal")
    df = df.select(
        pl.col("event_type"),
        pl.col("source"),
        pl.col("fill_id").cast(pl.String),
        pl.col("ts_int"),
        pl.col("ts_num").cast(pl.String),  # plain decimal text (Arrow's cast may give 1E-9)
        pl.col("ts_str"),
        pl.col("quantity"),
        pl.col("fill_price"),
        pl.col("fee"),
        pl.col("instrument_token"),
        pl.col("last_price"),
        sig.is_not_null().alias("sig_present"),
        sig.struct.field("strategy_id"),
        sig.struct.field("instrument_token").alias("sig_token"),
        sig.struct.field("signal_type"),
        pl.lit(None, dtype=pl.String).alias("parse_error"),
    )
    inexact = [
        pl.col(c).is_not_null() & ~(pl.col(c).is_finite() & (pl.col(c) == pl.col(c).floor()))
        | (pl.col(c).abs() >= _EXACT_FLOAT_INT)
        for c in _INT_FIELDS
    ]
    recheck = df.select(pl.any_horizontal(inexact).fill_null(False)).to_series()
    ints = [
        pl.when(pl.col(c).abs() < _EXACT_FLOAT_INT).then(pl.col(c)).cast(pl.Int64)
        for c in _INT_FIELDS
    ]
    return df.with_columns(ints), recheck


def rows_to_raw(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``RAW_SCHEMA`` frame from Python-decoded rows (dicts keyed by ``RAW_SCHEMA``)."""
    return pl.DataFrame(rows, schema=RAW_SCHEMA)
