"""Engine state: an immutable value (five frames and a clock), the input and output of a step.

* ``positions`` (``accounting.POSITION_STATE_SCHEMA``), kept sorted by ``instrument_token``
  (ticks find their holders by binary search);
* ``cash`` (``CASH_SCHEMA``): cash per portfolio, account currency;
* ``marks`` (``marks.MARK_STATE_SCHEMA``): latest tick and latest fill price per instrument;
* ``seen``: the dedupe index of applied fill ids (:class:`~pm_polars.engine.dedupe.SeenIds`);
* ``instruments`` (``instruments.INSTRUMENT_SCHEMA``): multipliers;
* ``clock_ns``: newest event time applied (ns UTC), ``None`` before the first;
* ``trading_day``: the book's trading day (days since 1970-01-01, ``engine.tradingday``),
  ``None`` before the first event with a time; ``late_day_events``: events stamped in an
  earlier trading day than the book's, booked in the current day (a running count).
* ``lots`` (``lots.LOT_SCHEMA``): open FIFO lots per position (empty under average cost).

Frames are immutable, so keeping a state costs nothing: the daemon's undo of a failed
commit is "keep the previous state". :func:`merge` and :meth:`EngineState.without` are how a
daemon adds and removes partitions' portfolios.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import polars as pl

from pm_polars.engine import accounting, dedupe, marks
from pm_polars.engine.instruments import load_instruments
from pm_polars.engine.lots import LOT_SCHEMA, empty_lots

P = ParamSpec("P")
T = TypeVar("T")

CASH_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "source": pl.String(),
    "strategy_id": pl.String(),
    "cash": pl.Float64(),
}


@dataclass(frozen=True, eq=False)
class EngineState:
    """All state of one engine (see the module docstring)."""

    positions: pl.DataFrame
    cash: pl.DataFrame
    marks: pl.DataFrame
    seen: dedupe.SeenIds
    instruments: pl.DataFrame
    clock_ns: int | None = None
    trading_day: int | None = None
    late_day_events: int = 0
    lots: pl.DataFrame = field(default_factory=empty_lots)

    @classmethod
    def empty(cls, instruments: pl.DataFrame | str | Path | None = None) -> EngineState:
        """No portfolios, no marks, no seen ids (``instruments`` normalised, default none)."""
        return cls(
            positions=pl.DataFrame(schema=accounting.POSITION_STATE_SCHEMA),
            cash=pl.DataFrame(schema=CASH_SCHEMA),
            marks=pl.DataFrame(schema=marks.MARK_STATE_SCHEMA),
            seen=dedupe.SeenIds(),
            instruments=load_instruments(instruments),
        )

    @classmethod
    def of_frames(cls, positions: pl.DataFrame, cash: pl.DataFrame, marks_: pl.DataFrame,
                  seen: pl.DataFrame, instruments: pl.DataFrame,
                  clock_ns: int | None, trading_day: int | None = None,
                  late_day_events: int = 0, lots: pl.DataFrame | None = None) -> EngineState:
        """From plain frames (a snapshot, Redis rows): cast, sorted, ``seen`` indexed.

        Day columns missing or null (state written before the trading day existed) are 0
        (``roll_price`` null)."""
        return cls(
            positions=_complete(positions, accounting.POSITION_STATE_SCHEMA, 0).sort(
                "instrument_token", maintain_order=True),
            cash=cash.cast(pl.Schema(CASH_SCHEMA)),
            marks=_complete(marks_, marks.MARK_STATE_SCHEMA, None),
            seen=dedupe.SeenIds.from_frame(seen),
            instruments=instruments,
            clock_ns=clock_ns,
            trading_day=trading_day,
            late_day_events=late_day_events,
            lots=empty_lots() if lots is None else lots.cast(pl.Schema(LOT_SCHEMA)).sort(
                "portfolio_id", "instrument_token", "lot"),
        )

    def portfolio_ids(self) -> list[str]:
        return self.cash.get_column("portfolio_id").to_list()

    def without(self, portfolio_ids: list[str]) -> EngineState:
        """The state without these portfolios' positions and cash (seen ids and marks stay:
        fill ids are unique per source, so they can only ever match a redelivery)."""
        if not portfolio_ids:
            return self
        keep = ~pl.col("portfolio_id").is_in(portfolio_ids)
        return replace(self, positions=self.positions.filter(keep),
                       cash=self.cash.filter(keep), lots=self.lots.filter(keep))

    def pipe(self, fn: Callable[Concatenate[EngineState, P], T], *args: P.args,
             **kwargs: P.kwargs) -> T:
        """``fn(self, *args, **kwargs)``, as Polars' ``DataFrame.pipe``:
        ``state, result = state.pipe(step.apply, batch, config)``."""
        return fn(self, *args, **kwargs)


_DAY_COLUMNS = frozenset([*accounting.DAY_COUNTERS, *accounting.CARRIED, "roll_price"])


def _complete(frame: pl.DataFrame, schema: dict[str, pl.DataType],
              fill: int | None) -> pl.DataFrame:
    """``frame`` cast to ``schema``, day columns added (or nulls filled) with ``fill``."""
    missing = [pl.lit(fill).alias(c) for c in schema if c not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    if fill is not None:
        day = [c for c in schema if c in _DAY_COLUMNS and frame.get_column(c).null_count()]
        if day:
            frame = frame.with_columns(pl.col(day).fill_null(fill))
    return frame.select(list(schema)).cast(pl.Schema(schema))


def _latest(marks_: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The latest ``kind`` price per instrument (a tick with its bid and ask: one quote)."""
    price, ts = f"{kind}_price", f"{kind}_ts"
    quote = [f"tick_{c}" for c in marks.QUOTE] if kind == "tick" else []
    return (
        marks_.filter(pl.col(price).is_not_null())
        .sort("instrument_token", ts, nulls_last=False)
        .group_by("instrument_token", maintain_order=True)
        .agg(pl.col(price).last(), pl.col(ts).last(), *[pl.col(c).last() for c in quote])
    )


def merge(a: EngineState, b: EngineState) -> EngineState:
    """``a`` plus ``b`` (disjoint portfolios, e.g. a partition loaded from Redis).

    Marks keep the latest tick and the latest fill price per instrument; a fill id in both
    keeps its newest sighting (a null ts never expires), or a redelivery would count as new.
    Trading days: the later one wins; the side still in an earlier day is rolled to it
    first (its positions carry their quantity; prices at the roll are the later side's
    ``roll_price``, else the earlier side's mark). ``late_day_events``: the larger count.
    """
    from pm_polars.engine.dayfigures import roll  # dayfigures builds on this module

    days = [d for d in (a.trading_day, b.trading_day) if d is not None]
    day = max(days) if days else None
    if day is not None:
        ahead = a if a.trading_day == day else b
        a, b = (roll(s, day, ahead.marks) if s.trading_day != day else s for s in (a, b))
    both = pl.concat([a.marks, b.marks])
    rolls = both.filter(pl.col("roll_price").is_not_null()).group_by(
        "instrument_token", maintain_order=True).agg(pl.col("roll_price").first())
    merged_marks = (
        both.select("instrument_token").unique()
        .join(_latest(both, "tick"), on="instrument_token", how="left")
        .join(_latest(both, "fill"), on="instrument_token", how="left")
        .join(rolls, on="instrument_token", how="left")
        .select(a.marks.columns)
    )
    # an id may be in a state twice (expired, then seen again before a sweep)
    seen = pl.concat([a.seen.frame(), b.seen.frame()]).sort(
        "ts", descending=True, nulls_last=False
    ).unique(["source", "fill_id"], keep="first", maintain_order=True)
    clocks = [c for c in (a.clock_ns, b.clock_ns) if c is not None]
    return EngineState.of_frames(
        positions=pl.concat([a.positions, b.positions]).unique(
            ["portfolio_id", "instrument_token"], keep="first", maintain_order=True),
        cash=pl.concat([a.cash, b.cash]).unique("portfolio_id", keep="first",
                                                maintain_order=True),
        marks_=merged_marks,
        seen=seen,
        instruments=a.instruments,
        clock_ns=max(clocks) if clocks else None,
        trading_day=day,
        late_day_events=max(a.late_day_events, b.late_day_events),
        lots=pl.concat([a.lots, b.lots]).unique(
            ["portfolio_id", "instrument_token", "lot"], keep="first", maintain_order=True),
    )
