"""Daily P&L, equity curves, returns, drawdown and Sharpe from the end-of-day snapshots.

Grouping (``by``): ``portfolio`` (strategy portfolio ``{source}_{strategy}``), ``strategy``
(a strategy across sources), ``source`` (``paper``, ``live``: the ``{source}_Overall``
book) or ``all``. Money is in account currency; P&L columns per day:

* ``realized``: realized P&L of the day's closes; ``unrealized``: change of unrealized P&L
  over the day; ``gross = realized + unrealized`` (the Kite m2m); ``fees``;
  ``net = gross - fees``, which equals the day's change of equity.
* ``daily_return = net / prev_equity`` where ``prev_equity`` is the previous close's equity
  (the starting cash for a portfolio that started trading that day), summed over the
  group, so a group's return is flow-adjusted. Returns compound: ``nav`` is
  ``prod(1 + daily_return)`` (1.0 before the first day), never a sum of returns.
* ``drawdown = nav / running max(nav) - 1`` (<= 0).
* Sharpe = ``mean(daily_return) / std(daily_return, ddof=1) * sqrt(252)``: 252 trading days a
  year, risk-free rate 0, daily returns of the days present in the archive (days without
  events have no snapshot and are not counted as zero-return days).
"""

from __future__ import annotations

import math
from datetime import date

import duckdb
import polars as pl

from pm_polars.analytics.connection import filters, query, require

TRADING_DAYS = 252
GROUP_KEYS = {"portfolio": "portfolio_id", "strategy": "strategy_id", "source": "source",
              "all": "'ALL'"}


def group_key(by: str) -> str:
    if by not in GROUP_KEYS:
        raise ValueError(f"by must be one of {sorted(GROUP_KEYS)}, got {by!r}")
    return GROUP_KEYS[by]


def daily_pnl(
    con: duckdb.DuckDBPyConnection,
    by: str = "portfolio",
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """One row per (date, key): the day's P&L split, equity, turnover, counts and return."""
    require(con, "eod_portfolios")
    where, params = filters(start, end, portfolios)
    sql = f"""
        SELECT date, {group_key(by)} AS key,
            sum(day_realized_pnl) AS realized, sum(day_unrealized_change) AS unrealized,
            sum(day_m2m) AS gross, sum(day_fees) AS fees, sum(day_net_pnl) AS net,
            sum(prev_equity) AS prev_equity, sum(equity) AS equity,
            sum(turnover) AS turnover, sum(fills)::BIGINT AS fills,
            sum(round_trips)::BIGINT AS round_trips
        FROM eod_portfolios WHERE {where} GROUP BY ALL ORDER BY key, date
    """
    out = query(con, sql, params)
    return out.with_columns((pl.col("net") / pl.col("prev_equity")).alias("daily_return"))


def with_curve(daily: pl.DataFrame) -> pl.DataFrame:
    """Add ``nav`` (compounded), ``cumulative_return`` and ``drawdown`` per key."""
    nav = (1.0 + pl.col("daily_return")).cum_prod().over("key", order_by="date")
    return (
        daily.sort("key", "date")
        .with_columns(nav.alias("nav"))
        .with_columns(
            (pl.col("nav") - 1.0).alias("cumulative_return"),
            (pl.col("nav") / pl.col("nav").cum_max().over("key", order_by="date") - 1.0)
            .alias("drawdown"),
        )
    )


def equity_curve(
    con: duckdb.DuckDBPyConnection,
    by: str = "portfolio",
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """``daily_pnl`` plus ``nav``, ``cumulative_return`` and running ``drawdown``."""
    return with_curve(daily_pnl(con, by, start, end, portfolios))


def sharpe(returns: pl.Series, periods_per_year: int = TRADING_DAYS) -> float | None:
    """Annualised Sharpe ratio of periodic returns (risk-free 0); None if undefined."""
    r = returns.drop_nulls()
    if r.len() < 2:
        return None
    sd = r.std(ddof=1)
    if sd is None or sd == 0 or not math.isfinite(float(sd)):  # type: ignore[arg-type]
        return None
    return float(r.mean()) / float(sd) * math.sqrt(periods_per_year)  # type: ignore[arg-type]


def performance(curve: pl.DataFrame, periods_per_year: int = TRADING_DAYS) -> pl.DataFrame:
    """Per key: days, net P&L, compounded and annualised return, volatility, Sharpe, max DD."""
    rows = []
    for (key,), g in curve.sort("key", "date").group_by("key", maintain_order=True):
        r = g.get_column("daily_return")
        days = g.height
        nav_end = float(g.get_column("nav")[-1])
        sd = r.std(ddof=1) if days > 1 else None
        rows.append({
            "key": key,
            "days": days,
            "net_pnl": float(g.get_column("net").sum()),
            "total_return": nav_end - 1.0,
            "annualised_return": nav_end ** (periods_per_year / days) - 1.0 if nav_end > 0
            else None,
            "annualised_volatility": None if sd is None
            else float(sd) * math.sqrt(periods_per_year),  # type: ignore[arg-type]
            "sharpe": sharpe(r, periods_per_year),
            "max_drawdown": float(g.get_column("drawdown").min()),  # type: ignore[arg-type]
            "positive_days": int((r > 0).sum()),
        })
    return pl.DataFrame(rows, schema={
        "key": pl.String, "days": pl.Int64, "net_pnl": pl.Float64, "total_return": pl.Float64,
        "annualised_return": pl.Float64, "annualised_volatility": pl.Float64,
        "sharpe": pl.Float64, "max_drawdown": pl.Float64, "positive_days": pl.Int64,
    })
