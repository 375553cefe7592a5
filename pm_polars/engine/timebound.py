"""Event-time admission: no single event can move the clock or a mark beyond a bound.

The engine's clock is the *high-water mark* of event time: the newest ``ts`` (ns UTC) of
the events admitted so far (fills, duplicates included, and ticks; events without ``ts``
do not move it). Events are judged in arrival order (``seq``, fills and ticks together),
each against the mark left by the events admitted before it, so the verdicts do not depend
on how a stream is cut into batches. An event is refused with a reason when

1. its ``ts`` is more than ``max_skew_ns`` ahead of the wall clock (``now_ns``; the live
   daemon sets it, a notebook or backtest leaves it off);
2. its ``ts`` is more than ``max_jump_ns`` ahead of the high-water mark (none before the
   first event time: the first ``ts`` of a fresh engine is taken as is);
3. it is a fill whose ``ts`` is older than ``dedupe_retention_ns`` behind the mark: its id
   may have been forgotten, so whether it is a redelivery cannot be checked.

The dedupe stage gets the mark before a fill (``_hwm``, null before any event time) for its
per-fill window: a column of the fills after the event-by-event pass, else ``marks(seqs)``
for the few fills that need it.

Columnar: the mark before each event is a cumulative max over the admitted ones. Refusing
an event can only lower later marks, so the refused set is found by iterating "assume these
admitted, refuse what fails" from "all admitted" until nothing changes; the fixed point is
exactly the event-by-event verdict (by induction over ``seq``). A clean batch costs a
min/max per column (``_quick``): its newest ``ts`` against the first mark plus the jump,
its oldest fill against the last mark minus the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pm_polars.engine.config import EngineConfig
from pm_polars.engine.refusals import NO_REJECTS, rejects_of

_LOW = -(2**63)
HWM = "_hwm"


@dataclass(frozen=True)
class Admitted:
    """The admitted fills and ticks, the refused ones as rejects, the high-water mark
    after the batch, and ``marks(seqs)``: ``seq`` and ``_hwm`` of the admitted fills at
    ``seqs`` (asked only for suspected redeliveries and fills without ``ts``; the fills
    carry ``_hwm`` already when the batch took the slow path)."""

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame
    clock_ns: int | None
    marks: Callable[[pl.Series], pl.DataFrame] = field(default=lambda seqs: pl.DataFrame(
        schema={"seq": pl.Int64, HWM: pl.Int64}))


def duration(ns: int) -> str:
    """``ns`` as the largest whole unit that divides it: ``7d``, ``5m``, ``90s``, ``1500ms``."""
    for unit, size in (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9),
                       ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _iso(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Datetime("ns")).dt.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")


def _marks_before(events: pl.DataFrame, admitted: pl.Series, clock: int | None) -> pl.Series:
    """The high-water mark before each event, over the ``admitted`` ones (null: none)."""
    ts = events.get_column("ts")
    moving = ts.zip_with(admitted & ts.is_not_null(), pl.Series([_LOW], dtype=pl.Int64))
    before = moving.fill_null(_LOW).cum_max().shift(1, fill_value=_LOW)
    if clock is not None:
        before = before.clip(lower_bound=clock)
    return before.replace(_LOW, None)


def _jumps(events: pl.DataFrame, clock: int | None, jump: int) -> tuple[pl.Series, pl.Series]:
    """(refused, mark before) per event under the jump bound, event by event."""
    ts = events.get_column("ts")
    n = len(ts)
    admitted = pl.Series([True] * n)
    newest = ts.max()
    if newest is None:
        return ~admitted, _marks_before(events, admitted, clock)
    first = clock if clock is not None else ts.drop_nulls()[0]
    if int(newest) <= first + jump:  # type: ignore[arg-type]
        return ~admitted, _marks_before(events, admitted, clock)
    while True:
        before = _marks_before(events, admitted, clock)
        refused = (ts > before + jump).fill_null(False)
        if (refused == ~admitted).all():
            return refused, before
        admitted = ~refused


def admit(clock: int | None, fills: pl.DataFrame, ticks: pl.DataFrame, config: EngineConfig,
          now_ns: int | None = None) -> Admitted:
    """Judge the batch's event times (see the module docstring)."""
    skew, jump, window = config.max_skew_ns, config.max_jump_ns, config.dedupe_retention_ns
    scale = config.quantity_scale
    rejects: list[pl.DataFrame] = []
    if skew is not None and now_ns is not None:
        limit = now_ns + skew
        reason = pl.format(f"ts: {{}} is more than max_skew {duration(skew)} ahead of this "
                           "host's clock ({}): refused", _iso(pl.col("ts")), _iso(pl.lit(now_ns)))
        late_f, late_t = pl.col("ts") > limit, pl.col("ts") > limit
        if fills.height and (fills.get_column("ts").max() or _LOW) > limit:  # type: ignore[operator]
            rejects.append(rejects_of(fills.filter(late_f), reason, scale))
            fills = fills.filter(~late_f.fill_null(False))
        if ticks.height and (ticks.get_column("ts").max() or _LOW) > limit:  # type: ignore[operator]
            rejects.append(rejects_of(ticks.filter(late_t), reason))
            ticks = ticks.filter(~late_t.fill_null(False))
    if fills.height + ticks.height == 0:
        return Admitted(fills, ticks, _merged(rejects), clock)
    fine, end_mark = _quick(clock, fills, ticks, jump, window)
    if fine:  # no event can fail: the marks only when asked for
        f, t = fills, ticks
        return Admitted(f, t, _merged(rejects), end_mark,
                        lambda seqs: _marks_at(clock, f, t, seqs))
    events = _events(fills, ticks)
    if jump is None:
        before = _marks_before(events, pl.Series([True] * events.height), clock)
        refused = pl.Series([False] * events.height)
    else:
        refused, before = _jumps(events, clock, jump)
    events = events.with_columns(before.alias(HWM), refused.alias("_refused"))
    if refused.any():
        reason = pl.format(f"ts: {{}} is more than max_jump {duration(jump or 0)} ahead of the "
                           "newest accepted event time ({}): refused", _iso(pl.col("ts")),
                           _iso(pl.col(HWM)))
        gone = events.filter("_refused")
        for frame, is_fill in ((fills, True), (ticks, False)):
            out = frame.join(gone.filter(pl.col("_fill") == is_fill).select("seq", HWM),
                             on="seq", how="inner", maintain_order="left")
            rejects.append(rejects_of(out, reason, scale))
        kept = events.filter(~pl.col("_refused"))
        fills = fills.join(kept.select("seq"), on="seq", how="semi", maintain_order="left")
        ticks = ticks.join(kept.select("seq"), on="seq", how="semi", maintain_order="left")
    ok = events.filter(~pl.col("_refused"))
    newest = ok.get_column("ts").max()
    marks = [c for c in (clock, newest) if c is not None]
    end = max(marks) if marks else None
    fills = fills.join(ok.filter("_fill").select("seq", HWM), on="seq", how="left",
                       maintain_order="left")
    if window is not None and fills.height:
        old = (pl.col("ts") < pl.col(HWM) - window).fill_null(False)
        if fills.select(old.any()).item():
            reason = pl.format(f"ts: {{}} is older than the dedupe window (dedupe_retention "
                               f"{duration(window)}) behind the newest accepted event time "
                               "({}): too old to check for a redelivery, refused",
                               _iso(pl.col("ts")), _iso(pl.col(HWM)))
            rejects.append(rejects_of(fills.filter(old), reason, scale))
            fills = fills.filter(~old)
    done = fills.select("seq", HWM)
    return Admitted(fills, ticks, _merged(rejects), end,  # type: ignore[arg-type]
                    lambda seqs: done.join(seqs.cast(pl.Int64).alias("seq").to_frame(),
                                           on="seq", how="semi"))


def _events(fills: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([
        fills.select("seq", "ts", pl.lit(True).alias("_fill")),
        ticks.select("seq", "ts", pl.lit(False).alias("_fill")),
    ]).sort("seq")


def _marks_at(clock: int | None, fills: pl.DataFrame, ticks: pl.DataFrame,
              seqs: pl.Series) -> pl.DataFrame:
    """``seq``, ``_hwm`` for the events at ``seqs`` when every event is admitted: per frame
    a running max of ``ts`` and a binary search of each ``seq`` (no sort of the batch)."""
    wanted = seqs.cast(pl.Int64).to_numpy()
    best = np.full(len(wanted), _LOW if clock is None else clock, dtype=np.int64)
    for frame in (fills, ticks):
        if frame.height == 0:
            continue
        if not frame.get_column("seq").is_sorted():
            frame = frame.sort("seq")
        seq = frame.get_column("seq").to_numpy()
        running = frame.get_column("ts").fill_null(_LOW).cum_max().to_numpy()
        before = np.searchsorted(seq, wanted, side="left")  # events with a smaller seq
        has = before > 0
        best[has] = np.maximum(best[has], running[before[has] - 1])
    marks = pl.Series(HWM, best, dtype=pl.Int64)
    return pl.DataFrame([seqs.cast(pl.Int64).alias("seq"), marks.replace(_LOW, None)])


def _newest(frame: pl.DataFrame) -> int | None:
    value = frame.get_column("ts").max() if frame.height else None
    return None if value is None else int(value)  # type: ignore[arg-type]


def _first_ts(frame: pl.DataFrame) -> tuple[int, int] | None:
    """``(seq, ts)`` of the earliest-arriving event with a ``ts``."""
    if frame.height == 0:
        return None
    ts, seq = frame.get_column("ts"), frame.get_column("seq")
    if ts.null_count():  # Series ops: no query
        timed = ts.is_not_null()
        ts, seq = ts.filter(timed), seq.filter(timed)
    if ts.len() == 0:
        return None
    at = int(seq.arg_min() or 0)
    return int(seq[at]), int(ts[at])


def _quick(clock: int | None, fills: pl.DataFrame, ticks: pl.DataFrame, jump: int | None,
           window: int | None) -> tuple[bool, int | None]:
    """``(True, mark after the batch)`` when whole-batch bounds prove no event fails (every
    ``ts`` within ``jump`` of the first mark, every fill's within ``window`` of the last):
    one min/max per column. ``(False, None)``: judge event by event."""
    times = [t for t in (_newest(fills), _newest(ticks)) if t is not None]
    if not times:
        return True, clock
    newest = max(times)
    end = newest if clock is None else max(clock, newest)
    if jump is not None:
        starts = [f for f in (_first_ts(fills), _first_ts(ticks)) if f is not None]
        first = clock if clock is not None else min(starts)[1]
        if newest > first + jump:
            return False, None
    if window is not None and fills.height:
        oldest = fills.get_column("ts").min()
        if oldest is not None and int(oldest) < end - window:  # type: ignore[arg-type]
            return False, None
    return True, end


def _merged(frames: list[pl.DataFrame]) -> pl.DataFrame:
    parts = [f for f in frames if f.height]
    if not parts:
        return NO_REJECTS
    return pl.concat(parts).sort("seq")
