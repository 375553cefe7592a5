"""One batch, as a pure function: ``apply(state, batch, config) -> (state, result)``.

The step composes the accounting functions over whole frames: dedupe (``dedupe``),
multiplier per fill, the fill ledger and position deltas (``accounting``), cash, marks
(``marks``) and the portfolios a batch changed. Nothing is mutated; the old state stays
valid, so a caller undoes a batch by keeping it. From a notebook::

    from pm_polars.engine import step
    from pm_polars.engine.config import EngineConfig
    from pm_polars.engine.state import EngineState
    from pm_polars.events import decode_any

    state, config = EngineState.empty(), EngineConfig(starting_cash=1e6)
    state, result = state.pipe(step.apply, decode_any(events), config)

``batch`` is anything with ``fills``/``ticks``/``rejects`` frames following
``pm_polars.events.schema`` (a ``DecodedBatch``); fills apply in ``seq`` order.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import polars as pl

from pm_polars.engine import (
    accounting,
    basefees,
    currencies,
    dayfigures,
    lots,
    marks,
    refusals,
    timebound,
    tradingday,
)
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.plans import run
from pm_polars.engine.ranges import rows_in_ranges
from pm_polars.engine.state import CASH_SCHEMA, EngineState
from pm_polars.events.schema import FILL_OPTIONAL
from pm_polars.types import BatchResult, EventFrames

_CONFLICT = pl.format(
    "fill_id: conflicts with the fill already applied as ({}, {}): strategy, instrument, "
    "side, quantity, price or fee differ; refused, the first version is kept",
    pl.format("'{}'", "source"), pl.format("'{}'", "fill_id"))


def apply(state: EngineState, batch: EventFrames, config: EngineConfig,
          now_ns: int | None = None) -> tuple[EngineState, BatchResult]:
    """The state after ``batch`` and what the batch did (see the module docstring).

    ``now_ns``: the wall clock (ns UTC) for ``config.max_skew_ns``; ``None`` with a skew
    bound set reads the host's clock (``time.time_ns``).

    Prices <= 0 of instruments without ``allow_negative_price`` (``refusals.price_sign``),
    event-time admission (``timebound``) and duplicates go first (they change nothing, not
    even the day). The trading day (``tradingday``): each event's booked day is computed
    columnar; a batch within the book's day is applied whole, one spanning later days in one
    piece per day, the book rolled (``dayfigures.roll``) before each later day's piece. A
    roll changes every portfolio's day figures, so all are ``changed_portfolios`` then.
    """
    if config.max_skew_ns is not None and now_ns is None:
        now_ns = time.time_ns()
    # prices <= 0 first, where the decoder refused them before (``refusals.price_sign``)
    fills, ticks, unsigned = refusals.price_sign(state.instruments, batch.fills, batch.ticks,
                                                 config.quantity_scale)
    admitted = timebound.admit(state.clock_ns, fills, ticks, config, now_ns)
    fresh, dups, conflicts = state.seen.split(admitted.fills, config.dedupe_retention_ns,
                                              admitted.marks)
    fresh, oversized = refusals.position_bound(state.positions, fresh, config.quantity_scale)
    fx = currencies.of(state.instruments, config.account_currency)
    fresh, base_refused = basefees.split(fresh, None if fx is None else fx.inverse_tokens,
                                         config.quantity_scale, config.quantity_decimals)
    ticks = admitted.ticks
    tz, minutes = config.day_roll_tz, config.roll_minutes
    late = tradingday.within_day(fresh, ticks, state.trading_day, tz, minutes)
    changed: set[str] = set()
    rolled = False
    if late is not None:  # the usual case: one piece in the book's day, no day columns
        state, done, changed = _apply_day(state, fresh, ticks, config)
    else:
        fills, by_day = tradingday.assign(fresh, ticks, state.trading_day, tz, minutes)
        days = tradingday.segments(fills, by_day)
        undated = state.trading_day is None and any(
            x.get_column(tradingday.DAY).null_count() for x in (fills, by_day))
        applied: list[pl.DataFrame] = []
        pieces: list[int | None] = ([None] if undated else []) + list(days) or [
            state.trading_day]
        for day in pieces:
            f, t = fills, by_day
            if len(pieces) > 1:
                this = pl.col(tradingday.DAY)
                f, t = (x.filter(this.is_null() if day is None else this == day)
                        for x in (fills, by_day))
            if day is not None and day != state.trading_day:
                state, rolled = dayfigures.roll(state, day), True
            state, piece, moved = _apply_day(state, f, t, config)
            applied.append(piece)
            changed |= moved
        done = applied[0] if len(applied) == 1 else pl.concat(applied)
        late = tradingday.late_count(done, by_day)
    if rolled:
        changed.update(state.portfolio_ids())
    clock = admitted.clock_ns
    seen = state.seen.remember(done, clock, config.dedupe_retention_ns, admitted.marks)
    state = replace(state, seen=seen, clock_ns=clock,
                    late_day_events=state.late_day_events + late)
    inner = ("multiplier", "digest", tradingday.DAY, tradingday.LATE, *FILL_OPTIONAL)
    # column selections (no query): the engine's own columns and the unused optional ones
    # (``FILL_OPTIONAL``) leave the result
    return state, BatchResult(
        fills=done[[c for c in done.columns if not c.startswith("_") and c not in inner]],
        ticks=ticks,
        rejects=refusals.merge_rejects(batch.rejects, unsigned, admitted.rejects, oversized,
                                       base_refused,
                                       refusals.rejects_of(
                                           conflicts[[c for c in conflicts.columns
                                                      if c != "digest"]],
                                           _CONFLICT, config.quantity_scale)),
        duplicates=dups[[c for c in dups.columns if not c.startswith("_") and c != "digest"
                         and c not in FILL_OPTIONAL]],
        conflicts=conflicts.height,
        changed_portfolios=sorted(changed),
    )


def _apply_day(state: EngineState, fresh: pl.DataFrame, ticks: pl.DataFrame,
               config: EngineConfig) -> tuple[EngineState, pl.DataFrame, set[str]]:
    """New fills and ticks of one trading day: the state after (``seen`` and the clock not
    yet updated: the caller sets them for the whole batch), the fills as applied (with
    ``multiplier``) and the portfolios they changed."""
    positions, cash, open_lots = state.positions, state.cash, state.lots
    fx = currencies.of(state.instruments, config.account_currency)
    if fresh.height:
        prior = accounting.touched(state.positions, fresh)  # the book's rows it trades
        fresh = with_multiplier(state, fresh, prior[0])
        scale = config.quantity_scale
        booked = basefees.booked(fresh if fx is None else _on_line(fresh, fx),
                                 None if fx is None else fx.inverse_tokens, scale)
        ledger, deltas, open_lots = lots.book(prior[0], state.lots, booked,
                                              config.cost_basis, scale)
        positions = accounting.merge_positions(state.positions, deltas, prior)
        flows = accounting.cash_flows(ledger, scale,
                                      None if fx is None else fx.foreign_tokens)
        cash = merge_cash(state.cash, flows, fresh, config.starting_cash)
    else:
        fresh = fresh.with_columns(pl.lit(1.0).alias("multiplier"))
    new_marks, tick_changed = marks.merge_marks(state.marks, ticks, "last_price", "tick")
    new_marks, fill_changed = marks.merge_marks(new_marks, fresh, "fill_price", "fill")
    clock = _max_ts(state.clock_ns, ticks, fresh)
    mark_changed = set(tick_changed.to_list())
    if fill_changed.len():  # a fill price is the mark only before the first tick
        tokens = new_marks.get_column("instrument_token")  # Series ops: no query
        fallback = (tokens.is_in(fill_changed.implode())
                    & new_marks.get_column("tick_price").is_null())
        mark_changed.update(tokens.filter(fallback).to_list())
    if fx is not None and mark_changed:  # a new rate moves every position booked in it
        rated = currencies.rate_tokens(state.instruments, config.account_currency)
        if rated.is_in(list(mark_changed)).any():
            mark_changed.update(fx.foreign_tokens.to_list())
    filled = fresh.get_column("portfolio_id")
    changed = set((filled.unique() if filled.len() > 1024 else filled).to_list())
    changed.update(holders(positions, sorted(mark_changed)))
    after = replace(state, positions=positions, cash=cash, marks=new_marks, clock_ns=clock,
                    lots=open_lots)
    return after, fresh, changed


def with_multiplier(state: EngineState, fills: pl.DataFrame,
                    positions: pl.DataFrame | None = None) -> pl.DataFrame:
    """Multiplier per fill: the position's (fixed at open), else the instrument's, else 1.
    ``positions``: the state's rows of the fills' positions (``accounting.touched``), or
    ``None`` for the whole book."""
    book = state.positions if positions is None else positions
    plan, sources = fills.lazy(), []
    if book.height:
        plan = plan.join(
            book.lazy().select(*accounting.KEYS, pl.col("multiplier").alias("m_pos")),
            on=accounting.KEYS, how="left", maintain_order="left",
        )
        sources.append("m_pos")
    if state.instruments.height:  # no instruments table: no join
        plan = plan.join(
            state.instruments.lazy().select(
                "instrument_token", pl.col("multiplier").alias("m_ins")
            ),
            on="instrument_token", how="left", maintain_order="left",
        )
        sources.append("m_ins")
    return run(plan.with_columns(pl.coalesce(*sources, pl.lit(1.0)).alias("multiplier"))
               .drop(sources))


def _on_line(fills: pl.DataFrame, fx: currencies.Currencies) -> pl.DataFrame:
    """Fills as booked: an inverse contract's at its line price ``-1/price``
    (``engine.currencies``); the fills themselves (marks, results) keep their price."""
    inverse = fx.inverse_tokens
    if inverse.len() == 0:
        return fills
    is_inverse = pl.col("instrument_token").is_in(inverse.implode())
    return fills.with_columns(
        currencies.line_price(pl.col("fill_price"), is_inverse).alias("fill_price"))


def merge_cash(cash: pl.DataFrame, flows: pl.DataFrame, fills: pl.DataFrame,
               starting_cash: float) -> pl.DataFrame:
    """Cash after ``flows`` (per portfolio); ``fills`` name new portfolios' owners, who
    start with ``starting_cash``."""
    if flows.height == 0:
        return cash
    owners = fills.lazy().select("portfolio_id", "source", "strategy_id").unique(
        "portfolio_id", keep="first", maintain_order=True
    )
    joined = flows.lazy().join(owners, on="portfolio_id").join(
        cash.lazy().select("portfolio_id", "cash"), on="portfolio_id", how="left"
    ).select(
        *[c for c in CASH_SCHEMA if c != "cash"],
        (pl.col("cash").fill_null(starting_cash) + pl.col("cash_flow")).alias("cash"),
    )
    kept = cash.lazy().join(flows.lazy().select("portfolio_id"), on="portfolio_id",
                            how="anti")
    return run(pl.concat([kept, joined]).sort("portfolio_id"))


def _max_ts(clock: int | None, *frames: pl.DataFrame) -> int | None:
    known = [] if clock is None else [clock]
    for frame in frames:
        newest = frame.get_column("ts").max() if frame.height else None
        if newest is not None:
            known.append(int(newest))  # type: ignore[arg-type]
    return max(known) if known else None


def holders(positions: pl.DataFrame, tokens: list[int]) -> list[str]:
    """Portfolios whose figures a price of ``tokens`` moves: an open position, one carried
    in at the roll or one with a net day quantity (unique, in no order).

    ``positions`` is sorted by instrument_token, so this is a binary search per token plus
    the matching rows: cost proportional to the touched positions, not all positions.
    """
    if not tokens or positions.height == 0:
        return []
    col = positions.get_column("instrument_token").to_numpy()
    wanted = np.asarray(tokens, dtype=col.dtype)
    lo = np.searchsorted(col, wanted, side="left")
    hi = np.searchsorted(col, wanted, side="right")
    rows = rows_in_ranges(lo, hi)
    if not len(rows):
        return []
    touched = positions[pl.Series(rows)]
    get = touched.get_column  # eager Series ops: no query
    moved = (get("quantity") != 0) | (get("overnight_quantity") != 0) | (
        get("day_buy_quantity") != get("day_sell_quantity"))  # open, carried in, net today
    return touched.get_column("portfolio_id").filter(moved).unique().to_list()
