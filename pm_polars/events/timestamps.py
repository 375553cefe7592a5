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

import polars as pl

from pm_polars.events.isotime import NS_PER_S, checked_ns, i64, iso_ns

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


def _integer_ns(values: pl.Series) -> pl.DataFrame:
    """``ns``/``ok`` for integer epoch values (the common case: no text, no fraction)."""
    x = pl.col("x")
    frame = pl.DataFrame({"x": values}).select(
        (x < 0).fill_null(False).alias("neg"),
        pl.when(x != i64(-(2**63))).then(x.abs()).alias("whole"),  # |int64 min| overflows
        i64(0).alias("frac"),
    )
    return checked_ns(_unit(frame))


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
    t = pl.col(text)
    work = df.select(
        pl.col(integer).cast(pl.Int64).alias("int"),
        pl.coalesce(pl.col(number), pl.when(t.str.contains(_NUMERIC)).then(t)).alias("num"),
        t.alias("text"),
    )
    whole = _integer_ns(work["int"])
    has_num = work["num"].is_not_null()
    decimal = _on_subset(has_num, work["num"], _text_ns)
    iso = _on_subset(~has_num & work["text"].is_not_null(), work["text"], iso_ns)
    fallback: pl.Expr = pl.lit(None, dtype=pl.Int64)
    if fallback_ms is not None:
        fb = pl.col(fallback_ms).cast(pl.Int64)
        fallback = pl.when(fb >= 0).then(fb * i64(1_000_000))
    staged = df.with_columns(
        work["int"].is_not_null().alias("_ts_has_int"),
        whole["ns"].alias("_ts_int_ns"),
        whole["ok"].alias("_ts_int_ok"),
        work["num"].alias("_ts_num"),
        decimal["ns"].alias("_ts_num_ns"),
        decimal["ok"].alias("_ts_num_ok"),
        iso["ns"].alias("_ts_iso_ns"),
        iso["matched"].alias("_ts_iso_matched"),
        iso["ok"].alias("_ts_iso_ok"),
    )
    has_int, has_number = pl.col("_ts_has_int"), pl.col("_ts_num").is_not_null()
    has_text = t.is_not_null()
    ts = (
        pl.when(has_int)
        .then(pl.col("_ts_int_ns"))
        .when(has_number)
        .then(pl.col("_ts_num_ns"))
        .when(has_text)
        .then(pl.col("_ts_iso_ns"))
        .otherwise(fallback)
    )
    out_of_range = "ts: out of range for int64 nanoseconds since epoch, got {}"
    shown_num = canonical_number(pl.col("_ts_num")).str.slice(0, _SHOWN)
    error = (
        pl.when(has_int & ~pl.col("_ts_int_ok"))
        .then(pl.format(out_of_range, pl.col(integer).cast(pl.String)))
        .when(has_int)
        .then(pl.lit(None, dtype=pl.String))
        .when(has_number & ~pl.col("_ts_num_ok"))
        .then(pl.format(out_of_range, shown_num))
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
