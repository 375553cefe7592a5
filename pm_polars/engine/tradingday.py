"""The trading day of an event, and which day each event of a batch is booked in.

An event's *trading day* is the date of its ``ts`` (ns UTC) on the wall clock of
``day_roll_tz``, the day starting at ``day_roll_time`` (``"HH:MM"``): with
``Asia/Kolkata``/``"09:00"`` an event at 08:59 IST on 5 March belongs to 4 March and one at
09:00 exactly to 5 March (an event exactly at the roll time belongs to the new day).
Days are held as ``Int32`` days since 1970-01-01 (``iso`` gives the ISO date text).

The book's day moves with event time only, never with the wall clock, so a replay rolls
exactly as the live run did. Within a batch, in arrival order (``seq``, shared by fills and
ticks), the *booked day* of an event is the latest trading day seen so far, the book's
included: an event stamped in an earlier day than that is booked in the current day and
counted as late (``_late``); a ts-less event belongs to the current day. A batch is split
only where its booked days differ (``segments``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

DAY_ROLL_TZ = "Asia/Kolkata"
DAY_ROLL_TIME = "00:00"
EPOCH = date(1970, 1, 1)
DAY = "_day"  # booked day column added to fills and ticks (Int32 days since epoch)
LATE = "_late"  # count of late events a row stands for (Int64)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def check_tz(name: str, setting: str = "day_roll_tz") -> str:
    """``name`` if it is an IANA timezone, else ``ValueError`` naming the setting."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{setting}={name!r} is not an IANA timezone; use a name such as "
            f"'Asia/Kolkata', 'Europe/London' or 'UTC'") from exc
    return name


def roll_minutes(text: str, setting: str = "day_roll_time") -> int:
    """Minutes after local midnight of ``"HH:MM"``, else ``ValueError`` naming the setting."""
    match = _HHMM.match(text.strip())
    if match is None:
        raise ValueError(f"{setting}={text!r} is not a time of day; use HH:MM, e.g. '09:15'")
    return int(match.group(1)) * 60 + int(match.group(2))


def day_expr(ts: pl.Expr, tz: str, minutes: int) -> pl.Expr:
    """The trading day (Int32 days since epoch) of ``ts`` (Int64 ns UTC); null stays null."""
    local = (
        pl.from_epoch(ts, time_unit="ns").dt.replace_time_zone("UTC")
        .dt.convert_time_zone(tz).dt.replace_time_zone(None)
    )
    if minutes:
        local = local - pl.duration(minutes=minutes)
    return local.dt.date().cast(pl.Int32)


def day_of(ts_ns: int, tz: str, minutes: int) -> int:
    """``day_expr`` for one timestamp (Python; used for single values and tests)."""
    utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_ns // 1000)
    local = utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None) - timedelta(minutes=minutes)
    return (local.date() - EPOCH).days


@lru_cache(maxsize=64)
def bounds_ns(day: int, tz: str, minutes: int) -> tuple[int, int]:
    """``[start, end)`` of trading ``day`` in ns UTC (its roll instant and the next one)."""
    def start(d: int) -> int:
        local = datetime.combine(EPOCH + timedelta(days=d), datetime.min.time()) + \
            timedelta(minutes=minutes)
        aware = local.replace(tzinfo=ZoneInfo(tz))
        return int((aware - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) \
            * 1000
    return start(day), start(day + 1)


def iso(day: int | None) -> str | None:
    """ISO date text of a day number (``None`` stays ``None``)."""
    return None if day is None else (EPOCH + timedelta(days=day)).isoformat()


def of_iso(text: str) -> int:
    """Day number of an ISO date."""
    return (date.fromisoformat(text) - EPOCH).days


def assign(fills: pl.DataFrame, ticks: pl.DataFrame, book_day: int | None, tz: str,
           minutes: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``fills`` and ``ticks`` with their booked day (``DAY``) and late flag (``LATE``).

    Frames that already carry ``DAY`` (assigned upstream, e.g. by the daemon before it
    reduced the ticks) are returned as they are.
    """
    if DAY in fills.columns and DAY in ticks.columns:
        return fills, ticks
    raw = [f.select("seq", day_expr(pl.col("ts"), tz, minutes).alias("_raw"))
           for f in (fills, ticks)]
    ends = [int(d) for r in raw for d in (r.get_column("_raw").min(),  # type: ignore[arg-type]
                                           r.get_column("_raw").max()) if d is not None]
    lo, hi = (min(ends), max(ends)) if ends else (None, None)
    undated = book_day is None and any(f.get_column("ts").null_count() for f in (fills, ticks))
    if hi is None or (book_day is not None and hi <= book_day) or (
            book_day is None and lo == hi and not undated):
        booked = hi if book_day is None else book_day  # one day: no order needed
        out = []
        for f, r in zip((fills, ticks), raw, strict=True):
            late = (r.get_column("_raw") < booked).fill_null(False) if booked is not None \
                else pl.repeat(False, f.height, eager=True)
            out.append(f.with_columns(pl.lit(booked, pl.Int32).alias(DAY),
                                      late.cast(pl.Int64).alias(LATE)))
        return out[0], out[1]
    both = pl.concat([r.with_columns(pl.lit(i, pl.Int8).alias("_f"))
                      for i, r in enumerate(raw)]).sort("seq")
    # a ts-less event belongs to the day of the events before it; before the book's first
    # dated event that is no day (null): it applies before the first roll
    running = pl.col("_raw").cum_max().forward_fill()
    if book_day is not None:
        running = pl.max_horizontal(running, pl.lit(book_day, pl.Int32))
    both = both.with_columns(running.cast(pl.Int32).alias(DAY)).with_columns(
        (pl.col("_raw") < pl.col(DAY)).fill_null(False).cast(pl.Int64).alias(LATE))
    out = []
    for i, f in enumerate((fills, ticks)):
        part = both.filter(pl.col("_f") == i).select("seq", DAY, LATE)
        out.append(f.join(part, on="seq", how="left", maintain_order="left"))
    return out[0], out[1]


def within_day(fills: pl.DataFrame, ticks: pl.DataFrame, book_day: int | None, tz: str,
               minutes: int) -> int | None:
    """The usual case without tz math or a query: every event of the batch is before the
    book's next roll. Returns the number of late events (stamped before the book's day
    started), or ``None`` when the batch may reach a later day (then ``assign`` it)."""
    if book_day is None or DAY in fills.columns:
        return None
    start, end = bounds_ns(book_day, tz, minutes)
    late = 0
    for f in (fills, ticks):
        if not f.height:
            continue
        ts = f.get_column("ts")
        newest, oldest = ts.max(), ts.min()
        if newest is not None and int(newest) >= end:  # type: ignore[arg-type]
            return None
        if oldest is not None and int(oldest) < start:  # type: ignore[arg-type]
            late += int((ts < start).sum())
    return late


def segments(fills: pl.DataFrame, ticks: pl.DataFrame) -> list[int]:
    """The distinct booked days of an assigned batch, ascending (usually one)."""
    days: set[int] = set()
    for f in (fills, ticks):
        if f.height:
            col = f.get_column(DAY)
            lo, hi = col.min(), col.max()
            days.update([lo, hi] if lo == hi else col.unique().to_list())  # type: ignore[list-item]
    return sorted(d for d in days if d is not None)


def late_count(fills: pl.DataFrame, ticks: pl.DataFrame) -> int:
    """Late events an assigned batch stands for."""
    return sum(int(f.get_column(LATE).sum() or 0) for f in (fills, ticks) if f.height)
