"""``run_eod``: end-of-day snapshots for a date, incremental from the last current state.

The engine state at the end of the previous trading day is restored from
``snapshots/state`` when that snapshot is still current (the archive up to its date has not
changed since, see ``store.is_current``); otherwise the run steps back to an older current
snapshot, or replays from the first archive date. Every trading day from there up to the
requested date is then rolled: its fills and ticks are applied in arrival order and the
day's tables and state are written. Days without events are skipped, except the requested
date itself. Late events (event date D-1 arriving after D-1 was closed) therefore make the
next run recompute D-1 and the days after it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import polars as pl

from pm_polars.archive import reader
from pm_polars.archive.config import new_engine
from pm_polars.archive.replay import apply_ordered, load_ordered
from pm_polars.engine import currencies, dayfigures, tradingday
from pm_polars.engine.accounting import KEYS
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.views import units
from pm_polars.eod import roll, store, trips

log = logging.getLogger(__name__)


class EodError(RuntimeError):
    """End of day cannot run; the message says why."""


@dataclass
class EodResult:
    """What a run did: the days rolled and the tables of the requested date."""

    day: date
    rolled: list[date] = field(default_factory=list)
    base: date | None = None  # the state snapshot the run continued from
    positions: pl.DataFrame = field(default_factory=pl.DataFrame)
    portfolios: pl.DataFrame = field(default_factory=pl.DataFrame)
    trips: pl.DataFrame = field(default_factory=pl.DataFrame)


def _base(root: Path, day: date, fps: dict[str, list[int]]) -> date | None:
    for d in reversed([d for d in store.state_dates(root) if d < day]):
        if store.is_current(store.state_meta(root, d), fps, d):
            return d
        log.info("eod: state of %s is stale (archive changed since), looking further back", d)
    return None


def is_closed(root: str | Path, day: date) -> bool:
    """True when ``day`` has end-of-day snapshots that match the archive as it is now."""
    meta = store.state_meta(root, day)
    if not meta:
        return False
    fps = reader.fingerprint(root, reader.archive_dates(root, day))
    return store.is_current(meta, fps, day)


def _open_trips(positions: pl.DataFrame, scale: int = 1) -> pl.DataFrame:
    """The open-trip carry kept in an end-of-day positions table (missing columns null);
    its ``trip_peak`` (units there) back in atoms (``scale`` per unit)."""
    cols = positions.columns
    carry = positions.filter(pl.col("trip_fills").is_not_null()).select(
        [pl.col(c) if c in cols else pl.lit(None, t).alias(c)
         for c, t in trips.TRIP_CARRY_SCHEMA.items()]
    )
    if scale == 1:
        return carry
    return carry.with_columns((pl.col("trip_peak").cast(pl.Float64) * scale).round()
                              .cast(pl.Int64))


def _counts(fills: pl.DataFrame, closed: pl.DataFrame) -> pl.DataFrame:
    fill_counts = fills.group_by("portfolio_id").agg(pl.len().cast(pl.Int64).alias("fills"))
    trip_counts = closed.group_by("portfolio_id").agg(
        pl.len().cast(pl.Int64).alias("round_trips"),
        (pl.col("net_pnl") > 0).sum().cast(pl.Int64).alias("winning_trips"),
    )
    return fill_counts.join(trip_counts, on="portfolio_id", how="full", coalesce=True)


def roll_day(
    root: Path, engine: PortfolioEngine, day: date, carry: pl.DataFrame, fps: dict[str, list[int]]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Apply ``day``'s events to ``engine`` and write the day's tables and state."""
    prior = engine.snapshot()
    prev_port = engine.portfolios()
    events = load_ordered(root, [day])
    apply_ordered(engine, events, label=f"eod {day}")
    number = tradingday.of_iso(day.isoformat())
    if engine.state.trading_day is None or engine.state.trading_day < number:
        engine.state = dayfigures.roll(engine.state, number)  # a day without events
    state = engine.snapshot()
    fills = events.fills.join(
        state.positions.select(*KEYS, "multiplier"), on=KEYS, how="left", maintain_order="left"
    )
    scale = engine.config.quantity_scale
    closed, carry = trips.day_trips(day, prior.positions, fills, carry, scale)
    if scale != 1:  # the carry's peak (atoms) in units, as every quantity of the table
        carry = carry.with_columns(units(pl.col("trip_peak"), scale))
    positions = roll.day_positions(day, engine.positions()).join(
        carry, on=KEYS, how="left"
    ).with_columns(
        (pl.col("trip_cash") + pl.col("quantity").cast(pl.Float64) * pl.col("average_price")
         * pl.col("multiplier")).alias("trip_realized")
    )
    portfolios = roll.day_portfolios(day, prev_port, engine.portfolios(), positions,
                                     engine.starting_cash)
    portfolios = portfolios.join(_counts(events.fills, closed), on="portfolio_id", how="left")
    portfolios = portfolios.with_columns(
        pl.col("fills", "round_trips", "winning_trips").fill_null(0)
    )
    store.write_table(root, "positions", day, positions)
    store.write_table(root, "portfolios", day, portfolios)
    store.write_table(root, "trips", day, closed)
    consumed = {k: v for k, v in fps.items() if k <= day.isoformat()}
    meta = {**state.meta, "eod": {"date": day.isoformat(), "consumed": consumed}}
    replace(state, meta=meta).write(store.state_path(root, day))
    return positions, portfolios, closed


def run_eod(
    root: str | Path,
    day: date,
    *,
    full: bool = False,
    starting_cash: float | None = None,
    instruments: pl.DataFrame | str | Path | None = None,
) -> EodResult:
    """Write the end-of-day snapshots of ``day`` (and of earlier days that need it).

    ``full`` ignores existing state snapshots and replays from the first archive date.
    ``starting_cash``/``instruments`` override the archive's recorded engine settings for a
    run that starts from scratch.
    """
    base_root = Path(root)
    started = time.perf_counter()
    days = reader.archive_dates(base_root, day)
    if not days:
        raise EodError(f"the archive under {base_root} has no fills or ticks up to {day}")
    fps = reader.fingerprint(base_root, days)
    res = EodResult(day=day, base=None if full else _base(base_root, day, fps))
    carry_none = pl.DataFrame(schema=trips.TRIP_CARRY_SCHEMA)
    if res.base is not None:
        engine = PortfolioEngine.restore(store.read_state(base_root, res.base))
        prev = store.read_table(base_root, "positions", res.base)
        carry = (_open_trips(prev, engine.config.quantity_scale) if prev is not None
                 else carry_none)
        log.info("eod: continuing from the state at the end of %s", res.base)
    else:
        engine = new_engine(base_root, starting_cash=starting_cash, instruments=instruments)
        carry = carry_none
        log.info("eod: no current state before %s, replaying from the first archive date", day)
    if currencies.of(engine.state.instruments, engine.config.account_currency) is not None:
        raise EodError(
            "instruments: the end-of-day tables sum each position's figures as they are, so "
            "a book with instruments quoted or settled outside the account currency "
            f"({engine.config.account_currency}) or inverse contracts is not supported by "
            "eod yet; use PortfolioEngine's converted portfolios() instead")
    todo = sorted({d for d in days if res.base is None or d > res.base} | {day})
    for d in todo:
        res.positions, res.portfolios, res.trips = roll_day(base_root, engine, d, carry, fps)
        carry = _open_trips(res.positions, engine.config.quantity_scale)
        res.rolled.append(d)
        log.info("eod: closed %s (%d positions, %d portfolios, %d round trips)", d,
                 res.positions.height, res.portfolios.height, res.trips.height)
    log.info("eod: %d day(s) rolled in %.2f s", len(res.rolled), time.perf_counter() - started)
    return res
