"""Frame input: turn rows of a Polars frame into the JSON messages they stand for.

A frame is decoded by encoding each row as the JSON object it represents and sending those
through the message decoder, so a frame and the equivalent JSON bytes get identical results
(same type rules, same reasons). Encoding is columnar (Polars ``json_encode`` plus
``concat_str``); float columns are written by hand so NaN and infinities survive as the
``NaN`` / ``Infinity`` literals (``json_encode`` would turn them into ``null``).

Layouts accepted: the wire layout (``original_signal`` as a struct column), or flattened
(``strategy_id``, ``instrument_token``, ``signal_type`` as top-level columns). Datetime
columns are written as epoch nanoseconds (naive = UTC); categoricals as strings.
"""

from __future__ import annotations

import json

import polars as pl

WIRE_FIELDS = (
    "event_type",
    "source",
    "fill_id",
    "ts",
    "quantity",
    "fill_price",
    "fee",
    "original_signal",
    "instrument_token",
    "last_price",
)
_FLAT_SIGNAL = ("strategy_id", "instrument_token", "signal_type")


def _binary_text(series: pl.Series) -> pl.Series:
    """Binary as text: the UTF-8 string when every value is valid UTF-8, else hex."""
    try:
        return series.cast(pl.String)
    except Exception:  # noqa: BLE001 - invalid UTF-8 somewhere in the column
        return series.bin.encode("hex")


def _plain(df: pl.DataFrame) -> pl.DataFrame:
    """Top-level columns in JSON-writable form: datetimes -> Int64 epoch ns (naive = UTC);
    categoricals -> strings; decimals -> float64 (``ts``: exact decimal text, which reads as
    a numeric string); binary -> text. ``TypeError`` for Object columns."""
    fixes: list[pl.Expr | pl.Series] = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            fixes.append(pl.col(name).dt.epoch("ns").alias(name))
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            fixes.append(pl.col(name).cast(pl.String))
        elif isinstance(dtype, pl.Decimal):
            fixes.append(pl.col(name).cast(pl.String if name == "ts" else pl.Float64))
        elif dtype == pl.Binary:
            fixes.append(_binary_text(df[name]).alias(name))
        elif isinstance(dtype, pl.Object):
            raise TypeError(f"column {name!r}: Object values cannot be written as JSON")
    return df.with_columns(fixes) if fixes else df


def wire_layout(df: pl.DataFrame) -> pl.DataFrame:
    """The frame restricted to wire fields, with ``original_signal`` built if flattened."""
    if "original_signal" not in df.columns and (
        "strategy_id" in df.columns or "signal_type" in df.columns
    ):
        parts = [pl.col(c) for c in _FLAT_SIGNAL if c in df.columns]
        df = df.with_columns(pl.struct(parts).alias("original_signal"))
    present = [c for c in WIRE_FIELDS if c in df.columns]
    if not present:  # keep one (null) column: a frame without columns has no rows
        return df.with_columns(pl.lit(None, dtype=pl.String).alias("event_type")).select(
            "event_type"
        )
    return _plain(df.select(present))


def _float_token(name: str) -> pl.Expr:
    x = pl.col(name).cast(pl.Float64)
    return (
        pl.when(x.is_null())
        .then(pl.lit("null"))
        .when(x.is_nan())
        .then(pl.lit("NaN"))
        .when(x == float("inf"))
        .then(pl.lit("Infinity"))
        .when(x == float("-inf"))
        .then(pl.lit("-Infinity"))
        .otherwise(x.cast(pl.String))
    )


def to_json(df: pl.DataFrame) -> pl.Series:
    """One JSON object (String) per row of ``df``; null cells are written as ``null``."""
    df = _plain(df)
    floats = [n for n, dt in df.schema.items() if dt.is_float()]
    others = [n for n in df.columns if n not in floats]
    parts: list[pl.Expr] = []
    if others:
        encoded = pl.struct(others).struct.json_encode()
        parts.append(encoded.str.strip_prefix("{").str.strip_suffix("}"))
    for name in floats:
        parts.append(pl.concat_str([pl.lit(json.dumps(name) + ":"), _float_token(name)]))
    if not parts:  # no columns (hence no rows)
        return pl.Series("json", [], dtype=pl.String)
    body = pl.concat_str(parts, separator=",")
    try:
        return df.select(pl.concat_str([pl.lit("{"), body, pl.lit("}")]).alias("json")).to_series()
    except pl.exceptions.PanicException as exc:  # e.g. binary nested in a struct
        raise TypeError(f"frame cannot be written as JSON: {exc}") from None


def provenance(df: pl.DataFrame) -> dict[str, pl.Series | None]:
    """``topic``/``partition``/``offset`` columns of the frame, if it has them."""
    wanted = {"topic": pl.String, "partition": pl.Int32, "offset": pl.Int64}
    return {
        name: df[name].cast(dtype, strict=False) if name in df.columns else None
        for name, dtype in wanted.items()
    }
