"""Intraday equity curve of one day, from the archive and the previous end-of-day state.

Equity of a portfolio at time t is ``cash(t) + sum(quantity(t) x mark(t) x multiplier)``
(account currency), evaluated at the end of each ``every`` bucket (UTC) from the first to the
last bucket with events. Events with ``ts`` before the bucket end count. ``cash`` starts from
the previous close's cash, or the starting cash for a portfolio whose first fill is on the
day (it appears from that bucket on). Marks follow the engine's rule: the latest tick by
event time, before any tick the latest fill price; under the archive's ``mark = "bid_ask"``
(``engine.json``) a long is valued at that tick's bid and a short at its ask (fallback: the
mark), as the engine does. At the last bucket the figures equal the day's end-of-day
``eod_portfolios`` equity (same events, same rule). Fractional quantities
(the archive's ``quantity_decimals``): quantities are summed as atoms, money divided last.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pm_polars.analytics.connection import AnalyticsError
from pm_polars.archive import DEFAULT_ROOT, reader
from pm_polars.archive.config import load_engine_config, quantity_scale
from pm_polars.engine.accounting import KEYS, per_unit
from pm_polars.engine.engine import DEFAULT_STARTING_CASH
from pm_polars.engine.instruments import load_instruments
from pm_polars.engine.marks import valuation
from pm_polars.eod import store


def _duration_ns(every: str) -> int:
    units = {"s": 10**9, "m": 60 * 10**9, "h": 3_600 * 10**9}
    if not every or every[-1] not in units or not every[:-1].isdigit():
        raise ValueError(f"every must look like '30s', '5m' or '1h', got {every!r}")
    return int(every[:-1]) * units[every[-1]]


def _prior(root: Path, day: date) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, float]:
    """(positions, cash, marks, starting cash) at the end of the previous trading day."""
    earlier = [d for d in reader.archive_dates(root, day) if d < day]
    states = [d for d in store.state_dates(root) if d < day]
    config = load_engine_config(root)
    cash0 = float(config.get("starting_cash", DEFAULT_STARTING_CASH))  # type: ignore[arg-type]
    if earlier and (not states or states[-1] < earlier[-1]):
        raise AnalyticsError(
            f"no end-of-day state for {earlier[-1]}: run `pm-polars eod --date {earlier[-1]}`"
        )
    if not states:
        empty = pl.DataFrame(schema={"portfolio_id": pl.String, "instrument_token": pl.Int64,
                                     "quantity": pl.Int64, "multiplier": pl.Float64})
        cash = pl.DataFrame(schema={"portfolio_id": pl.String, "cash": pl.Float64})
        marks = pl.DataFrame(schema={"instrument_token": pl.Int64, "tick_price": pl.Float64,
                                     "fill_price": pl.Float64})
        return empty, cash, marks, cash0
    snap = store.read_state(root, states[-1])
    cash0 = float(snap.meta.get("starting_cash", cash0))
    return snap.positions, snap.cash.select("portfolio_id", "cash"), snap.marks, cash0


def _last_per_bucket(frame: pl.DataFrame, price: str, grid: pl.DataFrame,
                     quote: list[str] | None = None) -> pl.DataFrame:
    """Latest ``price`` by ts per (instrument, bucket), forward-filled over the grid; with
    ``quote`` (``bid``, ``ask``) that same tick's quote too, filled with it (a side the
    winning tick lacks stays null: NaN marks it while filling, prices are finite)."""
    sides = quote or []
    last = frame.group_by("instrument_token", "bucket").agg(
        pl.col(price).sort_by("ts").last().alias(f"_{price}"),
        *[pl.col(c).sort_by("ts").last().fill_null(float("nan")).alias(f"_{c}")
          for c in sides],
    )
    cols = [f"_{c}" for c in (price, *sides)]
    out = grid.join(last, on=["instrument_token", "bucket"], how="left").sort(
        "instrument_token", "bucket"
    ).with_columns(pl.col(cols).forward_fill().over("instrument_token"))
    return out.with_columns(pl.col(f"_{c}").fill_nan(None) for c in sides) if sides else out


def intraday_equity(
    root: str | Path = DEFAULT_ROOT,
    day: date | None = None,
    every: str = "5m",
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """``time`` (bucket end, UTC), ``portfolio_id``, ``cash``, ``market_value``, ``equity``."""
    base = Path(root)
    if day is None:
        days = reader.archive_dates(base)
        if not days:
            raise AnalyticsError(f"the archive under {base} has no events")
        day = days[-1]
    step = _duration_ns(every)
    positions, cash, marks, cash0 = _prior(base, day)
    fills = reader.read(base, "fills", [day], ["portfolio_id", "instrument_token",
                                               "signed_qty", "fill_price", "fee", "ts"])
    mode = str(load_engine_config(base).get("mark", "last"))
    quote = ["bid", "ask"] if mode != "last" else []
    ticks = reader.read(base, "ticks", [day], ["instrument_token", "last_price", "ts", *quote])
    bucket = (pl.col("ts") // step * step + step).alias("bucket")
    fills, ticks = fills.with_columns(bucket), ticks.with_columns(bucket)
    stamps = pl.concat([fills.get_column("bucket"), ticks.get_column("bucket")])
    if stamps.len() == 0:
        raise AnalyticsError(f"no events on {day} under {base}")
    buckets = pl.DataFrame({"bucket": pl.int_range(int(stamps.min()), int(stamps.max()) + step,  # type: ignore[arg-type]
                                                   step, eager=True)})
    instruments = load_instruments(base / "instruments.parquet"
                                   if (base / "instruments.parquet").exists() else None)
    mult = (
        fills.select(KEYS).unique()
        .join(positions.select(*KEYS, "multiplier"), on=KEYS, how="left")
        .join(instruments.select("instrument_token", pl.col("multiplier").alias("_m")),
              on="instrument_token", how="left")
        .select(*KEYS, pl.coalesce("multiplier", "_m", pl.lit(1.0)).alias("multiplier"))
    )
    held = positions.filter(pl.col("quantity") != 0).select(*KEYS, "multiplier")
    books = pl.concat([held, mult]).unique(KEYS, keep="first")
    tokens = books.select("instrument_token").unique()
    mark_grid = _last_per_bucket(ticks, "last_price", tokens.join(buckets, how="cross"),
                                 quote)
    mark_grid = _last_per_bucket(fills, "fill_price", mark_grid)
    prior = [pl.col(f"tick_{c}") if f"tick_{c}" in marks.columns else
             pl.lit(None, pl.Float64).alias(f"tick_{c}") for c in quote]
    day_tick = pl.col("_last_price").is_not_null()
    mark_grid = mark_grid.join(marks.select("instrument_token", "tick_price", "fill_price",
                                            *prior),
                               on="instrument_token", how="left").select(
        "instrument_token", "bucket",
        pl.coalesce("_last_price", "tick_price", "_fill_price", "fill_price").alias("mark"),
        # the winning tick's quote: today's, else the previous close's (one quote each)
        *[pl.when(day_tick).then(pl.col(f"_{c}")).otherwise(pl.col(f"tick_{c}")).alias(c)
          for c in quote],
    )
    moves = fills.group_by(*KEYS, "bucket").agg(pl.col("signed_qty").sum().alias("dq"))
    qty = (
        books.join(buckets, how="cross")
        .join(positions.select(*KEYS, pl.col("quantity").alias("q0")), on=KEYS, how="left")
        .join(moves, on=[*KEYS, "bucket"], how="left")
        .sort(*KEYS, "bucket")
        .with_columns((pl.col("q0").fill_null(0) + pl.col("dq").fill_null(0).cum_sum()
                       .over(KEYS)).alias("q"))
        .join(mark_grid, on=["instrument_token", "bucket"], how="left")
    )
    scale = quantity_scale(base)  # quantities are atoms of 1/scale units
    price = valuation(mode, pl.col("q"), pl.col("mark"), pl.col("bid"), pl.col("ask"))
    mv = qty.group_by("portfolio_id", "bucket").agg(
        per_unit(pl.col("q").cast(pl.Float64) * price * pl.col("multiplier"), scale)
        .fill_null(0.0).sum().alias("market_value")
    )
    flows = fills.join(mult, on=KEYS, how="left").group_by("portfolio_id", "bucket").agg(
        (per_unit(-pl.col("signed_qty") * pl.col("fill_price") * pl.col("multiplier"), scale)
         - pl.col("fee")).sum().alias("flow"), pl.len().alias("n")
    )
    cash_grid = (
        books.select("portfolio_id").unique().join(buckets, how="cross")
        .join(cash, on="portfolio_id", how="left")
        .join(flows, on=["portfolio_id", "bucket"], how="left")
        .sort("portfolio_id", "bucket")
        .with_columns(
            pl.col("n").fill_null(0).cum_sum().over("portfolio_id").alias("_n"),
            (pl.col("cash").fill_null(cash0)
             + pl.col("flow").fill_null(0.0).cum_sum().over("portfolio_id")).alias("cash"),
        )
        .filter((pl.col("_n") > 0) | pl.col("portfolio_id").is_in(cash["portfolio_id"].implode()))
    )
    out = cash_grid.join(mv, on=["portfolio_id", "bucket"], how="left").select(
        pl.from_epoch("bucket", "ns").dt.replace_time_zone("UTC").alias("time"),
        "portfolio_id", "cash", pl.col("market_value").fill_null(0.0),
        (pl.col("cash") + pl.col("market_value").fill_null(0.0)).alias("equity"),
    )
    if portfolios:
        out = out.filter(pl.col("portfolio_id").is_in(portfolios))
    return out.sort("portfolio_id", "time")

