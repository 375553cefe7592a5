"""Typed inputs: a Polars frame or Arrow table -> ``schema.RAW_SCHEMA`` rows, by columns.

A frame's column already has one type, so a field's JSON-type check is one check per column,
not per row: a String ``quantity`` column fails every fill that holds a value, with the same
reason the message path gives for ``"quantity": "75"``. Only the fields of each row's own
event type are checked (``schema.FIELDS``), in the same order as ``fallback``. No row is
written as JSON to be parsed back; only rejected rows are, for their ``raw``.

Layouts accepted: the wire layout (``original_signal`` a struct column), or flattened
(``strategy_id``, ``instrument_token``, ``signal_type`` top-level). Datetime columns stand
for exact instants (naive = UTC); categoricals for strings; decimals for exact numbers;
Binary columns for UTF-8 strings (a value that is not valid UTF-8 is a reject, never hex).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from pm_polars.events.fallback import number_ts
from pm_polars.events.read import utf8_text
from pm_polars.events.schema import EVENT_TYPE, FIELDS, RAW_SCHEMA, SIGNAL, WIRE_FIELDS, Field

_FLAT_SIGNAL = ("strategy_id", "instrument_token", "signal_type")
_INT64_MAX = 2**63 - 1
Conv = tuple[dict[str, pl.Expr], pl.Expr | None]  # RAW columns, type error (String) or None


def _json_kind(dtype: pl.DataType) -> str:
    """The JSON type a column's values stand for."""
    if dtype.is_numeric() or isinstance(dtype, pl.Datetime):
        return "number"
    if dtype == pl.Boolean:
        return "boolean"
    if isinstance(dtype, pl.List | pl.Array):
        return "array"
    if isinstance(dtype, pl.Struct):
        return "object"
    return "string"


def _text(series: pl.Series) -> pl.Series:
    """A column as strings; Binary values that are not valid UTF-8 become null."""
    if series.dtype == pl.Binary:
        arrow = series.to_arrow().cast(pa.large_binary())
        return pl.Series(series.name, utf8_text(arrow)).cast(pl.String)
    return series.cast(pl.String)


def _wrong(f: Field, c: pl.Expr, got: str, expected: str) -> pl.Expr:
    return pl.when(c.is_not_null()).then(pl.lit(f"{f.path}: expected {expected}, got {got}"))


def _lower(x: pl.Expr) -> pl.Expr:
    return x.cast(pl.String).str.to_lowercase()


def _convert(f: Field, s: pl.Series) -> Conv:
    """``f``'s RAW column(s) from ``s`` (its input column) and the type error per row."""
    dtype, c, kind = s.dtype, pl.lit(s), _json_kind(s.dtype)
    if isinstance(dtype, pl.Object):
        raise TypeError(f"column {s.name!r}: Object values cannot be decoded (as JSON)")
    if isinstance(dtype, pl.Datetime) and f.kind == "ts":
        return _datetime_ts(c)
    if isinstance(dtype, pl.Datetime):
        c, dtype = c.dt.epoch("ns"), pl.Int64()
    if dtype == pl.Null:
        return {}, None
    if kind == "string" and f.kind != "ts":
        text = _text(s) if dtype != pl.String else s
        bad = pl.when(c.is_not_null() & pl.lit(text).is_null()).then(
            pl.lit(f"{f.path}: not valid UTF-8")
        )
        if f.kind in ("string", "id"):
            return {f.column: pl.lit(text)}, bad
        return {}, _wrong(f, c, "string", "a number")
    if f.kind == "string":
        return {}, _wrong(f, c, kind, "a string")
    if f.kind == "ts":
        return _ts(c, s, dtype, kind)
    if kind != "number":
        expected = "a string or a number" if f.kind == "id" else "a number"
        return {}, _wrong(f, c, kind, expected)
    if f.kind == "number":
        return {f.column: c.cast(pl.Float64)}, None
    if dtype.is_integer():
        if f.kind == "id":
            return {f.column: c.cast(pl.String)}, None
        fits = c.cast(pl.Int64, strict=False)
        out = pl.when(c.is_not_null() & fits.is_null()).then(
            pl.lit(f"{f.path}: out of range for a 64-bit integer")
        )
        return {f.column: fits}, out
    x = c.cast(pl.Float64)
    if f.kind == "id":
        bad = pl.when(~x.is_finite()).then(
            pl.format(f"{f.path}: must be finite, got {{}}", _lower(x))
        )
        return {f.column: c.cast(pl.String)}, bad
    integral = x.is_finite() & (x == x.floor())
    fits = integral & (x.abs() < 2.0**63)
    error = (
        pl.when(~integral)
        .then(pl.format(f"{f.path}: must be an integer, got {{}}", _lower(x)))
        .when(~fits)
        .then(pl.lit(f"{f.path}: out of range for a 64-bit integer"))
    )
    return {f.column: pl.when(fits).then(x).cast(pl.Int64)}, error


def _datetime_ts(c: pl.Expr) -> Conv:
    """A Datetime column is an exact instant (its own unit; naive = UTC): as exact decimal
    epoch milliseconds, the wire unit, so it is judged like the number that writes it."""
    ns = c.dt.epoch("ns")
    ms = ns.floordiv(pl.lit(1_000_000, dtype=pl.Int64))
    rest = (ns - ms * pl.lit(1_000_000, dtype=pl.Int64)).cast(pl.String).str.zfill(6)
    return {"ts_num": pl.concat_str([ms.cast(pl.String), pl.lit("."), rest])}, None


def _ts(c: pl.Expr, s: pl.Series, dtype: pl.DataType, kind: str) -> Conv:
    if kind == "string":
        return {"ts_str": pl.lit(_text(s) if dtype != pl.String else s)}, None
    if kind != "number":
        return {}, _wrong(_TS, c, kind, "an epoch number or an ISO-8601 string")
    if dtype.is_integer():
        fits = c.cast(pl.Int64, strict=False)
        return {"ts_int": fits, "ts_num": pl.when(fits.is_null()).then(c.cast(pl.String))}, None
    if isinstance(dtype, pl.Decimal):
        return {"ts_num": c.cast(pl.String)}, None
    parsed = [number_ts(x) for x in s.cast(pl.Float64).to_list()]  # floats: exact text in Python
    num = pl.Series([p[0] for p in parsed], dtype=pl.String)
    error = pl.Series([p[1] for p in parsed], dtype=pl.String)
    return {"ts_num": pl.lit(num)}, pl.lit(error)


_TS = next(f for fields in FIELDS.values() for f in fields if f.kind == "ts")


def _signal(df: pl.DataFrame) -> tuple[dict[str, pl.Series], pl.Series, pl.Expr | None]:
    """The signal's input columns by key, ``sig_present`` and the ``original_signal``
    type error."""
    n = df.height
    if SIGNAL in df.columns:
        col = df[SIGNAL]
        if isinstance(col.dtype, pl.Struct):
            fields = {k: col.struct.field(k) for k in col.struct.fields}
            return fields, col.is_not_null(), None
        if col.dtype == pl.Null:
            return {}, pl.repeat(False, n, eager=True), None
        got = _json_kind(col.dtype)
        error = pl.when(pl.lit(col).is_not_null()).then(
            pl.lit(f"{SIGNAL}: expected an object, got {got}")
        )
        return {}, pl.repeat(False, n, eager=True), error
    if "strategy_id" in df.columns or "signal_type" in df.columns:
        return (
            {k: df[k] for k in _FLAT_SIGNAL if k in df.columns},
            pl.repeat(True, n, eager=True),
            None,
        )
    return {}, pl.repeat(False, n, eager=True), None


def _fraction(f: Field, source: pl.Series, got: dict[str, pl.Expr],
              error: pl.Expr | None) -> tuple[dict[str, pl.Expr], pl.Expr | None]:
    """A quantity column that may hold fractions (``quantity_decimals`` > 0): its finite
    non-integral values as exact decimal text in ``quantity_num`` (a Decimal column's digits;
    a float's shortest repr, as ``json.dumps`` writes it), not a type error."""
    dtype = source.dtype
    if not (isinstance(dtype, pl.Decimal) or dtype.is_float()):
        return got, error
    c = pl.lit(source)
    x = c.cast(pl.Float64)
    fractional = x.is_finite() & (x != x.floor())
    text = c.cast(pl.String)
    if isinstance(dtype, pl.Decimal):
        text = text.str.replace(r"0+$", "").str.replace(r"\.$", "")
    got = {**got, "quantity_num": pl.when(fractional).then(text)}
    return got, None if error is None else pl.when(~fractional).then(error)


def frame_rows(df: pl.DataFrame, quantity_decimals: int = 0) -> pl.DataFrame:
    """``RAW_SCHEMA`` rows of a frame; ``TypeError`` for a wire field of Object values.
    ``quantity_decimals`` > 0: a fractional ``quantity`` is kept as ``quantity_num``."""
    if EVENT_TYPE.key in df.columns:
        values, et_error = _convert(EVENT_TYPE, df[EVENT_TYPE.key])
    else:
        values, et_error = {}, None
    et = values.get(EVENT_TYPE.column, pl.lit(None, dtype=pl.String))
    if et_error is not None:
        et = pl.when(et_error.is_null()).then(et)
    columns: dict[str, pl.Expr] = {EVENT_TYPE.column: et}
    errors = [] if et_error is None else [et_error]
    signal, sig_present, sig_error = _signal(df)
    for event, fields in FIELDS.items():
        mine = et == event
        for i, f in enumerate(fields):
            if f.in_signal and not any(g.in_signal for g in fields[:i]) and sig_error is not None:
                errors.append(pl.when(mine).then(sig_error))
            source = signal.get(f.key) if f.in_signal else df.get_column(f.key, default=None)
            if source is None:
                continue
            got, error = _convert(f, source)
            if quantity_decimals and f.column == "quantity":
                got, error = _fraction(f, source, got, error)
            for name, expr in got.items():  # read for every row; rules look at their own
                columns.setdefault(name, expr)
            if error is not None:
                errors.append(pl.when(mine).then(error))
    columns["sig_present"] = pl.lit(sig_present)
    columns["parse_error"] = pl.coalesce(errors) if errors else pl.lit(None, dtype=pl.String)
    exprs = [
        columns.get(name, pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in RAW_SCHEMA.items()
    ]
    return df.select(exprs) if df.height else pl.DataFrame(schema=RAW_SCHEMA)


def provenance(df: pl.DataFrame) -> list[pl.Series | None]:
    """``topic``/``partition``/``offset`` columns of the frame (``None`` where absent)."""
    wanted = {"topic": pl.String, "partition": pl.Int32, "offset": pl.Int64}
    return [
        df[name].cast(dtype, strict=False) if name in df.columns else None
        for name, dtype in wanted.items()
    ]


# ---- rejected rows written as JSON (their ``raw``) ---------------------------------------


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


def row_json(df: pl.DataFrame) -> pl.Series:
    """The JSON of each (rejected) row; only the wire fields when the row cannot be written."""
    try:
        return to_json(df)
    except Exception:  # noqa: BLE001 - columns json_encode cannot write: wire fields only
        return to_json(wire_layout(df))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dict_json(items: Sequence[Any], failed: pl.Series) -> pl.Series:
    """The JSON of each rejected dict (its ``repr`` when it cannot be written)."""
    out: list[bytes] = []
    for i in failed.arg_true().to_list():
        try:
            out.append(json.dumps(items[i], default=_json_default, separators=(",", ":")).encode())
        except (TypeError, ValueError, RecursionError):
            out.append(repr(items[i]).encode("utf-8", "backslashreplace"))
    return pl.Series("raw", out, dtype=pl.Binary)
