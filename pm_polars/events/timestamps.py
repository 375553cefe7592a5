"""Columnar event-time normalisation: every accepted ``ts`` form -> int64 ns since epoch, UTC.

Accepted forms (the wire contract):

* an epoch **number**, its unit told apart by magnitude of the integer part ``I = |trunc(x)|``:
  ``I < 1e11`` -> seconds, ``< 1e14`` -> milliseconds, ``< 1e17`` -> microseconds, else
  nanoseconds. Fractions are exact (the decimal text is used, never a float), digits below
  one nanosecond are truncated toward zero. Negative values (before 1970) are allowed.
* a **numeric string** spelling such a number (``"1795600550123"``, ``"1795600550.5"``;
  plain decimal only, no exponent) - treated exactly like the number.
* an **ISO-8601 string** ``YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)fraction]][Z|z|+HH[:MM]|+HHMM|+HH]``;
  a string without offset is UTC (see ``isotime``).
* absent/null -> the Kafka message timestamp (milliseconds) when known, else null.

Results outside the int64 nanosecond range (about 1677-09-21 .. 2262-04-11) are rejected.
Everything is Polars expressions over whole columns; no per-row Python.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import polars as pl
import pyarrow as pa

from pm_polars.events.isotime import NS_MAX, NS_PER_S, checked_ns, i64, iso_ns

_NUMERIC = r"^-?[0-9]+(?:\.[0-9]+)?$"
_SHOWN = 80  # characters of an offending value quoted in a reason


def _quoted(col: str) -> pl.Expr:
    """``'value'`` (cut to ``_SHOWN`` characters) for reasons."""
    return pl.format("'{}'", pl.col(col).str.slice(0, _SHOWN))


def canonical_number(expr: pl.Expr) -> pl.Expr:
    """Decimal text without trailing fractional zeros: ``"12.500"`` -> ``"12.5"``, ``"3.0"`` -> ``"3"``."""
    stripped = expr.str.strip_chars_end("0").str.strip_chars_end(".")
    return pl.when(expr.str.contains(".", literal=True)).then(stripped).otherwise(expr)


def _unit(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``mult`` (ns per unit) and ``width`` (fraction digits kept) from ``whole``."""
    whole = pl.col("whole")

    def by_magnitude(s: int, ms: int, us: int, ns: int) -> pl.Expr:
        return (
            pl.when(whole < 10**11)
            .then(i64(s))
            .when(whole < 10**14)
            .then(i64(ms))
            .when(whole < 10**17)
            .then(i64(us))
            .otherwise(i64(ns))
        )

    return frame.with_columns(
        by_magnitude(NS_PER_S, 1_000_000, 1_000, 1).alias("mult"),
        by_magnitude(9, 6, 3, 0).alias("width"),
    )


def _integer_ns(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``(ns, ok)`` expressions for an Int64 epoch value (the common case: no text, no
    fraction): ``ns = x * unit`` where it fits int64 (|x| * unit <= NS_MAX), else null."""
    whole = pl.when(x != i64(-(2**63))).then(x.abs())  # |int64 min| overflows: null
    mult = (
        pl.when(whole < 10**11)
        .then(i64(NS_PER_S))
        .when(whole < 10**14)
        .then(i64(1_000_000))
        .when(whole < 10**17)
        .then(i64(1_000))
        .otherwise(i64(1))
    )
    ok = (whole <= i64(NS_MAX) // mult).fill_null(False)
    return pl.when(ok).then(x) * mult, ok  # no product of a value that does not fit


def _text_ns(num: pl.Series) -> pl.DataFrame:
    """``ns``/``ok`` for plain decimal text ``-?digits(.digits)?`` (null text -> ok=False)."""
    frame = pl.DataFrame({"num": num}).select(
        pl.col("num").str.starts_with("-").fill_null(False).alias("neg"),
        pl.col("num").str.strip_prefix("-").str.split_exact(".", 1).alias("parts"),
    )
    frame = _unit(
        frame.select(
            "neg",
            pl.col("parts").struct.field("field_0").str.to_integer(strict=False).alias("whole"),
            pl.col("parts").struct.field("field_1").fill_null("").alias("digits"),
        )
    )
    padded = pl.concat_str([pl.col("digits"), pl.lit("000000000")]).str.slice(0, pl.col("width"))
    frac = pl.when(pl.col("width") > 0).then(padded.str.to_integer(strict=False)).otherwise(i64(0))
    return checked_ns(frame.with_columns(frac.alias("frac")))


def _on_subset(
    mask: pl.Series, values: pl.Series, parse: Callable[[pl.Series], pl.DataFrame]
) -> pl.DataFrame:
    """Run ``parse`` only on the rows selected by ``mask``; other rows: null / False."""
    n = len(mask)
    out = pl.DataFrame(
        {
            "ns": pl.repeat(None, n, dtype=pl.Int64, eager=True),
            "matched": pl.repeat(False, n, eager=True),
            "ok": pl.repeat(False, n, eager=True),
        }
    )
    if not mask.any():
        return out
    where = mask.arg_true()
    got = parse(values.gather(where))
    return out.with_columns(
        out[name].scatter(where, got[name]) for name in got.columns if name in out.columns
    )


_OUT_OF_RANGE = "ts: out of range for int64 nanoseconds since epoch, got {}"


def _fallback(fallback_ms: str | None) -> pl.Expr:
    """The Kafka timestamp (ms; negative = unknown) in ns, or null."""
    if fallback_ms is None:
        return pl.lit(None, dtype=pl.Int64)
    fb = pl.col(fallback_ms).cast(pl.Int64)
    return pl.when(fb >= 0).then(fb * i64(1_000_000))


# [start, end) of the integer part -> ns per unit (see the module docstring)
_UNITS = (
    (0, 10**11, NS_PER_S),
    (10**11, 10**14, 1_000_000),
    (10**14, 10**17, 1_000),
    (10**17, 2**63, 1),
)


def _common_unit(values: pl.Series) -> int | None:
    """ns per unit when every value is >= 0, of one unit, and fits int64 in ns; else None."""
    low, high = values.min(), values.max()
    if not isinstance(low, int) or not isinstance(high, int) or low < 0:
        return None
    for start, end, mult in _UNITS:
        if start <= low and high < end:
            return mult if high <= NS_MAX // mult else None
    return None


@cache
def _integer_only(integer: str, fallback_ms: str | None) -> tuple[pl.Expr, pl.Expr]:
    """``ts`` / ``ts_error`` when no row has a numeric text or string ``ts``."""
    x = pl.col(integer).cast(pl.Int64)
    ns, ok = _integer_ns(x)
    ts = pl.when(x.is_not_null()).then(ns).otherwise(_fallback(fallback_ms))
    error = pl.when(x.is_not_null() & ~ok).then(pl.format(_OUT_OF_RANGE, x.cast(pl.String)))
    return ts.cast(pl.Int64).alias("ts"), error.cast(pl.String).alias("ts_error")


def normalize_ts(
    df: pl.DataFrame,
    *,
    integer: str,
    number: str,
    text: str,
    fallback_ms: str | None = None,
) -> pl.DataFrame:
    """Add ``ts`` (Int64 ns since epoch UTC) and ``ts_error`` (String reason or null).

    Per row at most one of the inputs is non-null: ``integer`` (Int64 epoch value),
    ``number`` (decimal text of any other JSON number, e.g. ``"1795600550.123"``) or
    ``text`` (a JSON string). ``fallback_ms`` (Kafka timestamp, ms; negative = unknown) is
    used when all three are null.
    """
    if df[number].null_count() == df.height and df[text].null_count() == df.height:
        values = df[integer]
        mult = _common_unit(values)
        if mult is not None and values.null_count() == 0:  # the common case: a multiply
            no_error = pl.Series("ts_error", pa.nulls(df.height, pa.large_string()))
            return df.hstack([(values * mult).alias("ts"), no_error])
        return df.with_columns(*_integer_only(integer, fallback_ms))
    t = pl.col(text)
    work = df.select(
        pl.coalesce(pl.col(number), pl.when(t.str.contains(_NUMERIC)).then(t)).alias("num"),
        t.alias("text"),
    )
    has_num = work["num"].is_not_null()
    decimal = _on_subset(has_num, work["num"], _text_ns)
    iso = _on_subset(~has_num & work["text"].is_not_null(), work["text"], iso_ns)
    staged = df.with_columns(
        work["num"].alias("_ts_num"),
        decimal["ns"].alias("_ts_num_ns"),
        decimal["ok"].alias("_ts_num_ok"),
        iso["ns"].alias("_ts_iso_ns"),
        iso["matched"].alias("_ts_iso_matched"),
        iso["ok"].alias("_ts_iso_ok"),
    )
    x = pl.col(integer).cast(pl.Int64)
    int_ns, int_ok = _integer_ns(x)
    has_int, has_number = x.is_not_null(), pl.col("_ts_num").is_not_null()
    has_text = t.is_not_null()
    ts = (
        pl.when(has_int)
        .then(int_ns)
        .when(has_number)
        .then(pl.col("_ts_num_ns"))
        .when(has_text)
        .then(pl.col("_ts_iso_ns"))
        .otherwise(_fallback(fallback_ms))
    )
    shown_num = canonical_number(pl.col("_ts_num")).str.slice(0, _SHOWN)
    error = (
        pl.when(has_int & ~int_ok)
        .then(pl.format(_OUT_OF_RANGE, x.cast(pl.String)))
        .when(has_int)
        .then(pl.lit(None, dtype=pl.String))
        .when(has_number & ~pl.col("_ts_num_ok"))
        .then(pl.format(_OUT_OF_RANGE, shown_num))
        .when(has_number)
        .then(pl.lit(None, dtype=pl.String))
        .when(has_text & ~pl.col("_ts_iso_matched"))
        .then(
            pl.format("ts: expected an epoch number or an ISO-8601 datetime, got {}", _quoted(text))
        )
        .when(has_text & ~pl.col("_ts_iso_ok"))
        .then(pl.format("ts: invalid or out-of-range date/time {}", _quoted(text)))
    )
    temps = [c for c in staged.columns if c.startswith("_ts_")]
    return staged.with_columns(
        ts.cast(pl.Int64).alias("ts"), error.cast(pl.String).alias("ts_error")
    ).drop(temps)
