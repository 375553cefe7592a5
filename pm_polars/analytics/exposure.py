"""Exposures at the close, from the end-of-day positions (``eod_positions``).

``market_value = quantity x close x multiplier`` (account currency, signed: long > 0, short
< 0; under ``mark = "bid_ask"`` at the position's side of the closing quote, as the engine's
view gives it). Per group: ``long`` = sum of positive market values, ``short`` = sum of negative ones,
``gross = long - short`` (= sum of |market value|), ``net = long + short``. Flat positions
contribute nothing.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from pm_polars.analytics.connection import filters, query, require

_KEYS = {
    "portfolio": "p.portfolio_id",
    "strategy": "s.strategy_id",
    "source": "s.source",
    "instrument": "coalesce(i.tradingsymbol, p.instrument_token::VARCHAR)",
    "all": "'ALL'",
}


def positions_at_close(
    con: duckdb.DuckDBPyConnection, day: date, portfolios: list[str] | None = None
) -> pl.DataFrame:
    """Open positions at the close of ``day`` with symbol and market value."""
    require(con, "eod_positions")
    where, params = filters(day, day, portfolios, alias="p.")
    sql = f"""
        SELECT p.date, p.portfolio_id, p.instrument_token, i.tradingsymbol, p.quantity,
            p.average_price, p.close, p.multiplier, p.market_value, p.unrealized_pnl,
            p.overnight_quantity, p.m2m
        FROM eod_positions p LEFT JOIN instruments i USING (instrument_token)
        WHERE {where} AND p.quantity <> 0
        ORDER BY p.portfolio_id, p.instrument_token
    """
    return query(con, sql, params)


def exposures(
    con: duckdb.DuckDBPyConnection,
    by: str = "portfolio",
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """Per (date, key): long, short, gross and net exposure and open positions at close."""
    require(con, "eod_positions")
    if by not in _KEYS:
        raise ValueError(f"by must be one of {sorted(_KEYS)}, got {by!r}")
    where, params = filters(start, end, portfolios, alias="p.")
    sql = f"""
        SELECT p.date, {_KEYS[by]} AS key,
            sum(greatest(p.market_value, 0)) AS long,
            sum(least(p.market_value, 0)) AS short,
            sum(abs(p.market_value)) AS gross,
            sum(p.market_value) AS net,
            count(*) FILTER (WHERE p.quantity <> 0) AS open_positions
        FROM eod_positions p
        LEFT JOIN instruments i USING (instrument_token)
        LEFT JOIN (SELECT DISTINCT portfolio_id, source, strategy_id FROM eod_portfolios) s
            USING (portfolio_id)
        WHERE {where}
        GROUP BY ALL ORDER BY key, p.date
    """
    return query(con, sql, params)
