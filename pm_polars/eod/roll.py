"""The day roll: per position and per portfolio figures of one trading day (pure functions).

Inputs are engine read models at the end of the previous trading day (``prev``) and at the
end of the day (``cur``): ``PortfolioEngine.positions()`` / ``portfolios()`` frames. Money is
in account currency (already x multiplier), prices per unit, quantities signed.

Per position (``day_positions``), Kite conventions:

* ``overnight_quantity`` / ``overnight_average_price``: the position carried in;
  ``prev_close``: the instrument's mark at the end of the previous day; ``close``: at the end
  of the day (latest tick by event time, else latest fill price).
* ``day_buy_quantity``, ``day_sell_quantity``, ``day_buy_value``, ``day_sell_value``: the
  day's fills only (value = quantity x price x multiplier).
* **day** figures (Kite "day" position: today's trades alone, nothing carried):
  ``day_quantity = day_buy_quantity - day_sell_quantity``,
  ``day_pnl = (day_sell_value - day_buy_value) + day_quantity x close x m``.
* **net** figures (Kite "net" position: carried + today): ``quantity`` (closing quantity),
  ``net_buy_value``/``net_sell_value`` = the day's values plus the carried position at its
  average cost (a long on the buy side, a short on the sell side), and
  ``pnl = (net_sell_value - net_buy_value) + quantity x close x m``, which equals the day's
  realized P&L plus the closing unrealized P&L.
  ``m2m = (day_sell_value - day_buy_value) + quantity x close x m
  - overnight_quantity x prev_close x m`` re-bases the carried quantity at the previous close;
  it is the change of (realized + unrealized) over the day, so m2m of consecutive days add up.
* ``day_realized_pnl``, ``day_fees``: changes of the engine's cumulative figures; the
  lifetime ``realized_pnl``, ``unrealized_pnl``, ``fees`` are kept as well.

Day figures and net figures describe the same position twice: never add a ``day_*`` column to
a net column (``day_pnl`` + ``pnl`` counts today's trades twice). All P&L figures are gross of
fees; subtract ``day_fees`` for net.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_polars.engine.accounting import KEYS

_CUMULATIVE = ["buy_quantity", "sell_quantity", "buy_value", "sell_value", "realized_pnl", "fees"]
_ZERO_NUM = {"quantity": 0, "average_price": 0.0, "buy_quantity": 0, "sell_quantity": 0,
             "buy_value": 0.0, "sell_value": 0.0, "realized_pnl": 0.0, "fees": 0.0}


def day_positions(
    day: date, prev: pl.DataFrame, prev_marks: pl.DataFrame, cur: pl.DataFrame
) -> pl.DataFrame:
    """One row per position that was open at either end of ``day`` or traded on it.

    ``prev``/``cur`` are positions views; ``prev_marks`` has ``instrument_token`` and
    ``last_price`` (marks at the end of the previous day, any instrument).
    """
    before = prev.select(
        *KEYS, *[pl.col(c).alias(f"_p_{c}") for c in ["quantity", "average_price", *_CUMULATIVE]]
    )
    m = pl.col("multiplier")
    q = pl.col("quantity").cast(pl.Float64)
    q0 = pl.col("overnight_quantity").cast(pl.Float64)
    carry = q0 * pl.col("overnight_average_price") * m
    joined = cur.join(before, on=KEYS, how="left").join(
        prev_marks.select("instrument_token", pl.col("last_price").alias("prev_close")),
        on="instrument_token", how="left",
    ).with_columns(
        [pl.col(f"_p_{c}").fill_null(v) for c, v in _ZERO_NUM.items()]
    )
    out = joined.with_columns(
        pl.lit(day, pl.Date).alias("date"),
        pl.col("_p_quantity").alias("overnight_quantity"),
        pl.col("_p_average_price").alias("overnight_average_price"),
        pl.col("last_price").alias("close"),
        *[(pl.col(c) - pl.col(f"_p_{c}")).alias(f"day_{c}") for c in _CUMULATIVE],
    )
    out = out.with_columns(
        (pl.col("day_buy_quantity") - pl.col("day_sell_quantity")).alias("day_quantity"),
        (pl.col("day_buy_value") + carry.clip(lower_bound=0.0)).alias("net_buy_value"),
        (pl.col("day_sell_value") + (-carry).clip(lower_bound=0.0)).alias("net_sell_value"),
    ).with_columns(
        (
            pl.col("day_sell_value") - pl.col("day_buy_value")
            + pl.col("day_quantity").cast(pl.Float64) * pl.col("close") * m
        ).alias("day_pnl"),
        (
            pl.col("net_sell_value") - pl.col("net_buy_value") + q * pl.col("close") * m
        ).alias("pnl"),
        (
            pl.col("day_sell_value") - pl.col("day_buy_value") + q * pl.col("close") * m
            - (q0 * pl.col("prev_close") * m).fill_null(0.0)
        ).alias("m2m"),
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
