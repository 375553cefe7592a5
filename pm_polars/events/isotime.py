"""ISO-8601 date-time strings -> int64 nanoseconds since the Unix epoch, UTC (columnar).

Accepted shape: ``YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)fraction]][Z|z|+HH[:MM]|+HHMM|+HH]``.
No offset means UTC. Fraction digits beyond nanoseconds are truncated. The calendar is
checked exactly (month lengths, leap years); ``24:00``, leap seconds (``:60``) and results
outside the int64 nanosecond range (about 1677-09-21 .. 2262-04-11) are invalid. The
arithmetic is integer-only (no ``str.to_datetime``, which wraps out-of-range years and
accepts ``:60`` in Polars 2.1).
"""

from __future__ import annotations

import polars as pl

NS_MAX = 2**63 - 1
NS_PER_S = 1_000_000_000
_ISO = (
    r"^(?<y>[0-9]{4})-(?<mo>[0-9]{2})-(?<d>[0-9]{2})[Tt ](?<h>[0-9]{2}):(?<mi>[0-9]{2})"
    r"(?::(?<s>[0-9]{2})(?:[.,](?<f>[0-9]+))?)?"
    r"(?:(?<z>[Zz])|(?<sign>[+-])(?<oh>[0-9]{2})(?::?(?<om>[0-9]{2}))?)?$"
)


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
