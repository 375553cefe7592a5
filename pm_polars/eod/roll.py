"""End-of-day rows of one trading day: the live day figures at the roll (pure functions).

One implementation serves the live documents and the EOD tables: ``engine.dayfigures``
defines every day figure and the engine's positions/portfolios views carry them; an EOD
row is that view at the end of the day (just before the next day's roll), so live and EOD
figures can never disagree. ``close`` is the mark at the end of the day (latest tick by
event time, else latest fill price); ``prev_close`` the mark at the day's roll.

Per position (``day_positions``), Kite conventions (definitions in ``engine.dayfigures``):

* ``overnight_quantity`` / ``overnight_average_price``: the position carried in;
* ``day_buy_quantity``, ``day_sell_quantity``, ``day_buy_value``, ``day_sell_value``,
  ``day_realized_pnl``, ``day_fees``: the day's fills only (value = quantity x price x m);
* **day** figures (Kite "day" position: today's trades alone): ``day_quantity``,
  ``day_pnl``;
* **net** figures (Kite "net" position: carried + today): ``quantity`` (closing quantity),
  ``net_buy_value``/``net_sell_value`` = the day's values plus the carried position at its
  average cost (a long on the buy side, a short on the sell side), and
  ``pnl = (net_sell_value - net_buy_value) + quantity x close x m``, which equals the day's
  realized P&L plus the closing unrealized P&L (under ``mark = "bid_ask"``, ``unrealized_pnl``
  and ``market_value`` are at the position's side of the quote, ``pnl`` stays at ``close``);
* ``m2m = day_carried_pnl + day_trading_pnl``: the change of (realized + unrealized) over
  the day, so m2m of consecutive days add up.

Day figures and net figures describe the same position twice: never add a ``day_*`` column to
a net column (``day_pnl`` + ``pnl`` counts today's trades twice). All P&L figures are gross of
fees; subtract ``day_fees`` for net.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_polars.engine import dayfigures
from pm_polars.engine.accounting import KEYS


def day_positions(day: date, cur: pl.DataFrame) -> pl.DataFrame:
    """One row per position that was open at either end of ``day`` or traded on it.

    ``cur`` is the engine's positions view at the end of ``day`` (the engine in ``day``).
    """
    m = pl.col("multiplier")
    q = pl.col("quantity").cast(pl.Float64)
    carry = pl.col("overnight_quantity").cast(pl.Float64) * pl.col("overnight_average_price") * m
    out = cur.with_columns(
        pl.lit(day, pl.Date).alias("date"),
        pl.col("last_price").alias("close"),
        (pl.col("day_buy_value") + carry.clip(lower_bound=0.0)).alias("net_buy_value"),
        (pl.col("day_sell_value") + (-carry).clip(lower_bound=0.0)).alias("net_sell_value"),
    ).with_columns(
        (pl.col("net_sell_value") - pl.col("net_buy_value") + q * pl.col("close") * m)
        .alias("pnl"),
    )
    active = (
        (pl.col("overnight_quantity") != 0) | (pl.col("quantity") != 0)
        | (pl.col("day_buy_quantity") != 0) | (pl.col("day_sell_quantity") != 0)
    )
    return out.filter(active).select(POSITION_EOD_COLUMNS).sort(KEYS)


POSITION_EOD_COLUMNS = [
    "date", "portfolio_id", "instrument_token", "multiplier",
    "overnight_quantity", "overnight_average_price", "prev_close",
    "day_buy_quantity", "day_sell_quantity", "day_buy_value", "day_sell_value",
    "day_quantity", "day_pnl",
    "quantity", "average_price", "close", "net_buy_value", "net_sell_value", "pnl", "m2m",
    "day_realized_pnl", "day_fees", "realized_pnl", "unrealized_pnl", "fees", "market_value",
    "day_carried_pnl", "day_trading_pnl",
]


def day_portfolios(
    day: date,
    prev: pl.DataFrame,
    cur: pl.DataFrame,
    positions: pl.DataFrame,
    starting_cash: float,
) -> pl.DataFrame:
    """One row per strategy portfolio: the engine's totals at the end of ``day`` plus the day.

    ``prev``/``cur`` are portfolios views, ``positions`` the ``day_positions`` frame.
    ``prev_equity`` is the previous day's equity, ``starting_cash`` for a portfolio whose
    first fill was on ``day``. ``day_net_pnl = day_m2m - day_fees`` equals
    ``equity - prev_equity``; ``day_return = day_net_pnl / prev_equity`` (a fraction).
    Returns compound over days; never sum them.
    """
    day_sums = positions.group_by("portfolio_id").agg(
        pl.col("m2m").sum().alias("day_m2m"),
        pl.col("day_pnl").sum(),
        pl.col("pnl").sum(),
        pl.col("day_realized_pnl").sum(),
        pl.col("day_fees").sum(),
        pl.col("day_buy_value").sum(),
        pl.col("day_sell_value").sum(),
    )
    money = ["day_m2m", "day_pnl", "pnl", "day_realized_pnl", "day_fees",
             "day_buy_value", "day_sell_value"]
    cur = cur.drop([c for c in dayfigures.PORTFOLIO_DAY_COLUMNS if c in cur.columns])
    out = (
        cur.join(day_sums, on="portfolio_id", how="left")
        .join(prev.select("portfolio_id", pl.col("equity").alias("prev_equity")),
              on="portfolio_id", how="left")
        .with_columns(
            pl.lit(day, pl.Date).alias("date"),
            pl.col("prev_equity").fill_null(starting_cash),
            *[pl.col(c).fill_null(0.0) for c in money],
        )
        .with_columns(
            (pl.col("day_m2m") - pl.col("day_fees")).alias("day_net_pnl"),
            (pl.col("day_m2m") - pl.col("day_realized_pnl")).alias("day_unrealized_change"),
            (pl.col("day_buy_value") + pl.col("day_sell_value")).alias("turnover"),
        )
        .with_columns((pl.col("day_net_pnl") / pl.col("prev_equity")).alias("day_return"))
    )
    return out.select("date", *cur.columns, *PORTFOLIO_DAY_COLUMNS).sort("portfolio_id")


PORTFOLIO_DAY_COLUMNS = [
    "prev_equity", "day_m2m", "day_realized_pnl", "day_unrealized_change", "day_fees",
    "day_net_pnl", "day_return", "day_pnl", "pnl", "day_buy_value", "day_sell_value",
    "turnover",
]
