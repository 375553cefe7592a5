"""Columnar event-time normalisation: every accepted ``ts`` form -> int64 ns since epoch, UTC.

Accepted forms (the wire contract):

* an epoch **number** in **milliseconds** (the wire format), from ``1e11`` (1973-03-03)
  to ``MS_MAX`` (2262-04-11, the end of int64 nanoseconds); any other value (seconds, microseconds or nanoseconds sent
  by mistake, a negative time) is refused, never rescaled by a guess. Fractions are exact
  (the decimal text is used, never a float), digits below one nanosecond are truncated.
* a **numeric string** spelling such a number (``"1795600550123"``, ``"1795600550.5"``;
  plain decimal only, no exponent) - treated exactly like the number.
* an **ISO-8601 string** ``YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)fraction]][Z|z|+HH[:MM]|+HHMM|+HH]``;
  a string without offset is UTC. Fraction digits beyond nanoseconds are truncated. The
  calendar is checked exactly (month lengths, leap years); ``24:00`` and leap seconds
  (``:60``) are invalid. The arithmetic is integer-only (no ``str.to_datetime``, which wraps
  out-of-range years and accepts ``:60`` in Polars 2.1).
* absent/null -> the Kafka message timestamp (milliseconds) when known, else null.

Results outside the int64 nanosecond range (about 1677-09-21 .. 2262-04-11) are rejected.
Everything is Polars expressions over whole columns; no per-row Python.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

_ISO = (
    r"^(?<y>[0-9]{4})-(?<mo>[0-9]{2})-(?<d>[0-9]{2})[Tt ](?<h>[0-9]{2}):(?<mi>[0-9]{2})"
    r"(?::(?<s>[0-9]{2})(?:[.,](?<f>[0-9]+))?)?"
    r"(?:(?<z>[Zz])|(?<sign>[+-])(?<oh>[0-9]{2})(?::?(?<om>[0-9]{2}))?)?$"
)

NS_MAX = 2**63 - 1
NS_PER_S = 1_000_000_000


def i64(value: int) -> pl.Expr:
    """An Int64 literal (mixing Int32 literals into integer division panics Polars 2.1)."""
    return pl.lit(value, dtype=pl.Int64)


def checked_ns(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns neg, whole, frac, mult -> ``ns = ±(whole * mult + frac)`` and exact ``ok``."""
    staged = frame.with_columns(
        (pl.col("whole") <= i64(NS_MAX) // pl.col("mult")).fill_null(False).alias("fits")
    ).with_columns(
        (pl.when(pl.col("fits")).then(pl.col("whole")).otherwise(i64(0)) * pl.col("mult")).alias(
            "product"
        )
    )
    staged = staged.with_columns(
        (pl.col("fits") & (pl.col("frac") <= i64(NS_MAX) - pl.col("product")))
        .fill_null(False)
        .alias("ok")
    ).with_columns(
        pl.when(pl.col("ok")).then(pl.col("product") + pl.col("frac")).alias("magnitude")
    )
    magnitude = pl.col("magnitude")
    return staged.select(
        pl.when(pl.col("neg")).then(-magnitude).otherwise(magnitude).alias("ns"), pl.col("ok")
    )


def _days_from_civil(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), y >= 0."""
    yy = y - (m <= 2).cast(pl.Int64)
    era = yy // i64(400)
    yoe = yy - era * i64(400)
    shifted = m + pl.when(m > 2).then(i64(-3)).otherwise(i64(9))
    doy = (i64(153) * shifted + i64(2)) // i64(5) + d - i64(1)
    doe = yoe * i64(365) + yoe // i64(4) - yoe // i64(100) + doy
    return era * i64(146_097) + doe - i64(719_468)


def _month_days(y: pl.Expr, m: pl.Expr) -> pl.Expr:
    leap = ((y % i64(4) == 0) & (y % i64(100) != 0)) | (y % i64(400) == 0)
    return (
        pl.when(m == 2)
        .then(pl.when(leap).then(i64(29)).otherwise(i64(28)))
        .when(m.is_in([4, 6, 9, 11]))
        .then(i64(30))
        .otherwise(i64(31))
    )


def iso_ns(text: pl.Series) -> pl.DataFrame:
    """``ns``, ``matched`` (ISO shape) and ``ok`` (valid calendar, in range) per string."""
    if not text.str.contains(_ISO).any():  # no ISO shape at all: skip the calendar
        return _unparsed(len(text))
    groups = pl.DataFrame({"text": text}).select(
        pl.col("text").str.extract_groups(_ISO).struct.unnest()
    )
    ints = [
        pl.col(name).str.to_integer(strict=False).fill_null(i64(0)).alias(name)
        if name in ("s", "oh", "om")
        else pl.col(name).str.to_integer(strict=False).alias(name)
        for name in ("y", "mo", "d", "h", "mi", "s", "oh", "om")
    ]
    frac_text = pl.concat_str([pl.col("f").fill_null(""), pl.lit("000000000")]).str.slice(0, 9)
    p = groups.select(
        *ints,
        frac_text.str.to_integer(strict=False).alias("f"),
        pl.when(pl.col("sign") == "-").then(i64(-1)).otherwise(i64(1)).alias("sign"),
    )
    y, mo, d, h, mi, s = (pl.col(c) for c in ("y", "mo", "d", "h", "mi", "s"))
    oh, om = pl.col("oh"), pl.col("om")
    valid = (
        mo.is_between(1, 12)
        & (d >= 1)
        & (d <= _month_days(y, mo))
        & (h <= 23)
        & (mi <= 59)
        & (s <= 59)
        & (oh <= 23)
        & (om <= 59)
    )
    offset = pl.col("sign") * (oh * i64(3_600) + om * i64(60))
    secs = _days_from_civil(y, mo, d) * i64(86_400) + h * i64(3_600) + mi * i64(60) + s - offset
    p = p.with_columns(
        y.is_not_null().alias("matched"), valid.fill_null(False).alias("valid"), secs.alias("secs")
    )
    # secs may be negative with a positive fraction: split into sign and magnitude first.
    neg, frac = pl.col("secs") < 0, pl.col("f")
    p = p.with_columns(
        neg.fill_null(False).alias("neg"),
        pl.when(neg)
        .then(-pl.col("secs") - (frac > 0).cast(pl.Int64))
        .otherwise(pl.col("secs"))
        .alias("whole"),
        pl.when(neg & (frac > 0)).then(i64(NS_PER_S) - frac).otherwise(frac).alias("frac"),
        i64(NS_PER_S).alias("mult"),
    )
    scaled = checked_ns(p)
    ok = scaled["ok"] & p["valid"]
    return pl.DataFrame({"ns": scaled["ns"], "matched": p["matched"], "ok": ok}).with_columns(
        pl.when(pl.col("ok")).then(pl.col("ns")).alias("ns")
    )


_NUMERIC = r"^-?[0-9]+(?:\.[0-9]+)?$"
_SHOWN = 80  # characters of an offending value quoted in a reason


def _quoted(col: str) -> pl.Expr:
    """``'value'`` (cut to ``_SHOWN`` characters) for reasons."""
    return pl.format("'{}'", pl.col(col).str.slice(0, _SHOWN))


def canonical_number(expr: pl.Expr) -> pl.Expr:
    """Decimal text without trailing fractional zeros: ``"12.500"`` -> ``"12.5"``, ``"3.0"`` -> ``"3"``."""
    stripped = expr.str.strip_chars_end("0").str.strip_chars_end(".")
    return pl.when(expr.str.contains(".", literal=True)).then(stripped).otherwise(expr)


# The epoch-unit rule, the one place it is written: a number is epoch MILLISECONDS (the
# wire format), and only a plausible one: [start, end) of its value -> (ns per unit,
# fraction digits kept). A value outside (seconds, microseconds or nanoseconds by mistake,
# a negative or absurd time) is refused, never rescaled.
MS_LOW, MS_MAX = 10**11, NS_MAX // 1_000_000  # 1973-03-03T09:46:40Z .. 2262-04-11T23:47:16.854Z
MS_HIGH = MS_MAX + 1  # the first whole millisecond refused
UNITS = ((MS_LOW, MS_HIGH, 1_000_000, 6),)


def _by_magnitude(whole: pl.Expr, pick: int) -> pl.Expr:
    """Per value of ``whole`` (>= 0), column ``pick`` of its ``UNITS`` row."""
    expr = i64(UNITS[-1][pick])
    for row in reversed(UNITS[:-1]):
        expr = pl.when(whole < row[1]).then(i64(row[pick])).otherwise(expr)
    return expr


def _unit(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``mult`` (ns per unit) and ``width`` (fraction digits kept) from ``whole``."""
    whole = pl.col("whole")
    return frame.with_columns(
        _by_magnitude(whole, 2).alias("mult"), _by_magnitude(whole, 3).alias("width")
    )


def _integer_ns(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``(ns, ok)`` expressions for an Int64 epoch value (the common case: no text, no
    fraction): ``ns = x * 1e6`` where ``x`` is in the millisecond range, else null."""
    ok = ((x >= i64(MS_LOW)) & (x < i64(MS_HIGH))).fill_null(False)
    return pl.when(ok).then(x) * i64(UNITS[0][2]), ok  # no product of a value out of range


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
    frame = frame.with_columns(frac.alias("frac"))
    plausible = (~pl.col("neg") & (pl.col("whole") >= MS_LOW) & (pl.col("whole") < MS_HIGH))
    checked = checked_ns(frame)
    return checked.with_columns(
        (pl.col("ok") & frame.select(plausible.fill_null(False)).to_series()).alias("ok"))


def _on_subset(
    mask: pl.Series, values: pl.Series, parse: Callable[[pl.Series], pl.DataFrame]
) -> pl.DataFrame:
    """Run ``parse`` only on the rows selected by ``mask``; other rows: null / False."""
    n = len(mask)
    out = _unparsed(n)
    if not mask.any():
        return out
    where = mask.arg_true()
    got = parse(values.gather(where))
    return out.with_columns(
        out[name].scatter(where, got[name]) for name in got.columns if name in out.columns
    )


def _unparsed(n: int) -> pl.DataFrame:
    """``ns`` null, ``matched`` and ``ok`` false for ``n`` rows (from Arrow: no query)."""
    false = pa.array(np.zeros(n, dtype=bool))
    return pl.DataFrame(
        [pl.Series("ns", pa.nulls(n, pa.int64())), pl.Series("matched", false),
         pl.Series("ok", false)]
    )


_OUT_OF_RANGE = (
    "ts: must be epoch milliseconds from 1e11 (1973-03-03) to 9223372036854 (2262-04-11), "
    "got {}; seconds, microseconds and nanoseconds are refused, never rescaled"
)
OUT_OF_RANGE = _OUT_OF_RANGE


def _fallback(fallback_ms: str | None) -> pl.Expr:
    """The Kafka timestamp (ms; negative = unknown) in ns, or null."""
    if fallback_ms is None:
        return pl.lit(None, dtype=pl.Int64)
    fb = pl.col(fallback_ms).cast(pl.Int64)
    return pl.when(fb >= 0).then(fb * i64(1_000_000))


def common_unit(values: pl.Series) -> int | None:
    """ns per unit when every value is >= 0, of one unit, and fits int64 in ns; else None."""
    low, high = values.min(), values.max()
    if not isinstance(low, int) or not isinstance(high, int) or low < 0:
        return None
    for start, end, mult, _ in UNITS:
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


def _integers(
    df: pl.DataFrame, integer: str, fallback_ms: str | None
) -> tuple[pl.Series, pl.Series]:
    """``ts`` / ``ts_error`` of the integer ``ts`` column (null: the Kafka timestamp)."""
    values = df.get_column(integer)
    mult = 1 if values.null_count() == len(values) else common_unit(values)
    if mult is None:  # mixed units, negative, or too large for ns: judged value by value
        got = df.select(*_integer_only(integer, fallback_ms))
        return got.get_column("ts"), got.get_column("ts_error")
    ts = (values * mult).alias("ts")  # the common case: one multiply
    if ts.null_count() and fallback_ms is not None:
        fb = df.get_column(fallback_ms).cast(pl.Int64)
        ts = ts.fill_null(fb.zip_with(fb >= 0, pl.Series([None], dtype=pl.Int64)) * 1_000_000)
    return ts, pl.Series("ts_error", pa.nulls(df.height, pa.string_view()))


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
    used when all three are null. Integers cost a multiply; only the rows with a numeric
    text or a string ``ts`` take the general path.
    """
    ts, error = _integers(df, integer, fallback_ms)
    nums, texts = df.get_column(number), df.get_column(text)
    if nums.null_count() == df.height and texts.null_count() == df.height:
        return df.hstack([ts.alias("ts"), error.alias("ts_error")])  # no query: null counts
    special = nums.is_not_null() | texts.is_not_null()
    if special.any():
        where = special.arg_true()
        names = [integer, number, text, *([fallback_ms] if fallback_ms else [])]
        sub = _general(df.select(names)[where], integer=integer, number=number, text=text)
        ts = ts.scatter(where, sub.get_column("ts"))
        error = error.scatter(where, sub.get_column("ts_error"))
    return df.hstack([ts.alias("ts"), error.alias("ts_error")])


def _general(
    df: pl.DataFrame,
    *,
    integer: str,
    number: str,
    text: str,
    fallback_ms: str | None = None,
) -> pl.DataFrame:
    """``normalize_ts`` for rows of any form (numeric text and strings too): the columns
    ``ts`` and ``ts_error`` added, by expressions over the whole frame."""
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
