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

from pm_polars.engine import accounting, marks, refusals, timebound
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.plans import run
from pm_polars.engine.ranges import rows_in_ranges
from pm_polars.engine.state import CASH_SCHEMA, EngineState
from pm_polars.types import BatchResult, EventFrames


def apply(state: EngineState, batch: EventFrames, config: EngineConfig,
          now_ns: int | None = None) -> tuple[EngineState, BatchResult]:
    """The state after ``batch`` and what the batch did (see the module docstring).

    ``now_ns``: the wall clock (ns UTC) for ``config.max_skew_ns``; ``None`` with a skew
    bound set reads the host's clock (``time.time_ns``)."""
    if config.max_skew_ns is not None and now_ns is None:
        now_ns = time.time_ns()
    admitted = timebound.admit(state.clock_ns, batch.fills, batch.ticks, config, now_ns)
    fresh, dups, conflicts = state.seen.split(admitted.fills, config.dedupe_retention_ns,
                                              admitted.marks)
    fresh, oversized = refusals.position_bound(state.positions, fresh)
    ticks = admitted.ticks
    positions, cash = state.positions, state.cash
    if fresh.height:
        fresh = with_multiplier(state, fresh)
        ledger = accounting.fill_ledger(state.positions, fresh)
        positions = accounting.merge_positions(
            state.positions, accounting.position_deltas(ledger)
        )
        cash = merge_cash(state.cash, accounting.cash_flows(ledger), fresh,
                          config.starting_cash)
    else:
        fresh = fresh.with_columns(pl.lit(1.0).alias("multiplier"))
    new_marks, tick_changed = marks.merge_marks(state.marks, ticks, "last_price", "tick")
    new_marks, fill_changed = marks.merge_marks(new_marks, fresh, "fill_price", "fill")
    clock = admitted.clock_ns
    seen = state.seen.remember(fresh, clock, config.dedupe_retention_ns, admitted.marks)
    mark_changed = set(tick_changed.to_list())
    if fill_changed.len():  # a fill price is the mark only before the first tick
        fallback = new_marks.filter(
            pl.col("instrument_token").is_in(fill_changed.implode())
            & pl.col("tick_price").is_null()
        )
        mark_changed.update(fallback.get_column("instrument_token").to_list())
    filled = fresh.get_column("portfolio_id")
    changed = set((filled.unique() if filled.len() > 1024 else filled).to_list())
    changed.update(holders(positions, sorted(mark_changed)))
    after = replace(state, positions=positions, cash=cash, marks=new_marks, seen=seen,
                    clock_ns=clock)
    conflict = pl.format(
        "fill_id: conflicts with the fill already applied as ({}, {}): strategy, instrument, "
        "side, quantity, price or fee differ; refused, the first version is kept",
        pl.format("'{}'", "source"), pl.format("'{}'", "fill_id"))
    inner = [c for c in fresh.columns if c.startswith("_") or c in ("multiplier", "digest")]
    return after, BatchResult(
        fills=fresh.drop(inner),
        ticks=ticks,
        rejects=refusals.merge_rejects(batch.rejects, admitted.rejects, oversized,
                                       refusals.rejects_of(conflicts.drop("digest"), conflict)),
        duplicates=dups.drop([c for c in dups.columns if c.startswith("_") or c == "digest"]),
        conflicts=conflicts.height,
        changed_portfolios=sorted(changed),
    )


def with_multiplier(state: EngineState, fills: pl.DataFrame) -> pl.DataFrame:
    """Multiplier per fill: the position's (fixed at open), else the instrument's, else 1."""
    return run(
        fills.lazy()
        .join(
            state.positions.lazy().select(*accounting.KEYS, pl.col("multiplier").alias("m_pos")),
            on=accounting.KEYS, how="left", maintain_order="left",
        )
        .join(
            state.instruments.lazy().select(
                "instrument_token", pl.col("multiplier").alias("m_ins")
            ),
            on="instrument_token", how="left", maintain_order="left",
        )
        .with_columns(pl.coalesce("m_pos", "m_ins", pl.lit(1.0)).alias("multiplier"))
        .drop("m_pos", "m_ins")
    )


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


def holders(positions: pl.DataFrame, tokens: list[int]) -> list[str]:
    """Portfolios with an open position in any of ``tokens`` (unique, in no order).

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
    open_ = touched.get_column("quantity") != 0
    return touched.get_column("portfolio_id").filter(open_).unique().to_list()
