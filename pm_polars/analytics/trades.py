"""Trade-level analytics: blotter, turnover, round-trip statistics and slippage.

Values are ``quantity x price x multiplier`` in account currency (multiplier from the
archive's instruments table, 1 when unknown); times are ns UTC (``ts``) plus a UTC datetime
(``time``) for display. Round trips come from the end-of-day ``eod_trips`` view (see
``pm_polars.eod.trips``): a win is a trip with ``net_pnl > 0`` (after fees), a loss one with
``net_pnl < 0``; ``profit_factor = sum(wins) / |sum(losses)|`` (null without losses);
``win_rate = wins / round_trips``; ``expectancy`` = mean net P&L per trip.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from pm_polars.analytics.connection import filters, query, require
from pm_polars.analytics.pnl import GROUP_KEYS

_MULT = "coalesce(i.multiplier, 1.0)"
_FILLS = """
    SELECT f.*, i.tradingsymbol, {mult} AS multiplier,
        f.quantity * f.fill_price * {mult} AS value,
        make_timestamp(f.ts // 1000) AS time
    FROM fills f LEFT JOIN instruments i USING (instrument_token)
"""


def blotter(
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """Every applied fill in arrival order, with symbol, value and UTC time."""
    where, params = filters(start, end, portfolios)
    sql = f"""
        SELECT date, time, ts, portfolio_id, source, strategy_id, instrument_token,
            tradingsymbol, side, quantity, signed_qty, fill_price, multiplier, value, fee,
            fill_id, topic, "partition", "offset"
        FROM ({_FILLS.format(mult=_MULT)}) WHERE {where}
        ORDER BY arrival_ns, batch_id, seq
    """
    return query(con, sql, params)


def turnover(
    con: duckdb.DuckDBPyConnection,
    by: str = "portfolio",
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """Per (date, key): buy and sell value, turnover (their sum) and fill count.

    ``by`` is a ``pnl.GROUP_KEYS`` grouping or ``instrument``.
    """
    key = "coalesce(tradingsymbol, instrument_token::VARCHAR)" if by == "instrument" \
        else GROUP_KEYS[by]
    where, params = filters(start, end, portfolios)
    sql = f"""
        SELECT date, {key} AS key,
            sum(CASE WHEN side = 'BUY' THEN value ELSE 0 END) AS buy_value,
            sum(CASE WHEN side = 'SELL' THEN value ELSE 0 END) AS sell_value,
            sum(value) AS turnover, count(*) AS fills, sum(fee) AS fees
        FROM ({_FILLS.format(mult=_MULT)}) WHERE {where}
        GROUP BY ALL ORDER BY key, date
    """
    return query(con, sql, params)


def round_trips(
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """Closed round trips with source, strategy, symbol and holding time in seconds."""
    require(con, "eod_trips")
    where, params = filters(start, end, portfolios, alias="t.")
    sql = f"""
        SELECT t.*, p.source, p.strategy_id, i.tradingsymbol,
            (t.close_ts - t.open_ts) / 1e9 AS holding_s
        FROM eod_trips t
        LEFT JOIN (SELECT DISTINCT portfolio_id, source, strategy_id FROM eod_portfolios) p
            USING (portfolio_id)
        LEFT JOIN instruments i USING (instrument_token)
        WHERE {where}
        ORDER BY t.close_ts, t.portfolio_id, t.instrument_token
    """
    return query(con, sql, params)


def trip_stats(trips: pl.DataFrame, by: str = "portfolio") -> pl.DataFrame:
    """Per key: round trips, wins, losses, win rate, profit factor, average win/loss."""
    key = {"portfolio": "portfolio_id", "strategy": "strategy_id", "source": "source",
           "instrument": "tradingsymbol", "all": None}[by]
    net = pl.col("net_pnl")
    keyed = trips.with_columns(
        (pl.col(key) if key else pl.lit("ALL")).cast(pl.String).alias("key")
    )
    out = keyed.group_by("key").agg(
        pl.len().cast(pl.Int64).alias("round_trips"),
        (net > 0).sum().cast(pl.Int64).alias("wins"),
        (net < 0).sum().cast(pl.Int64).alias("losses"),
        net.filter(net > 0).sum().alias("gross_wins"),
        net.filter(net < 0).sum().alias("gross_losses"),
        net.filter(net > 0).mean().alias("average_win"),
        net.filter(net < 0).mean().alias("average_loss"),
        net.mean().alias("expectancy"),
        net.sum().alias("net_pnl"),
        pl.col("holding_s").mean().alias("average_holding_s")
        if "holding_s" in trips.columns else pl.lit(None, pl.Float64).alias("average_holding_s"),
    )
    return out.with_columns(
        (pl.col("wins") / pl.col("round_trips")).alias("win_rate"),
        pl.when(pl.col("gross_losses") < 0)
        .then(pl.col("gross_wins") / -pl.col("gross_losses"))
        .alias("profit_factor"),
    ).sort("key")


def slippage(
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
) -> pl.DataFrame:
    """Each fill against the first tick of its instrument strictly after the fill's ``ts``.

    ``slippage_bps = side x (fill_price / next_price - 1) x 10^4`` with side +1 for BUY and
    -1 for SELL: positive means the fill was worse than the market just after it (paid
    more on a buy, received less on a sell). ``slippage_value = side x (fill_price -
    next_price) x quantity x multiplier``. Fills with no later tick have nulls.
    """
    where, params = filters(start, end, portfolios)
    sql = f"""
        WITH f AS (SELECT * FROM ({_FILLS.format(mult=_MULT)}) WHERE {where}),
        t AS (SELECT instrument_token, ts AS next_ts, last_price AS next_price FROM ticks
              WHERE ts IS NOT NULL AND date >= (SELECT min(date) FROM f)
                AND date <= (SELECT max(date) FROM f) + 1)
        SELECT f.date, f.time, f.ts, f.portfolio_id, f.strategy_id, f.instrument_token,
            f.tradingsymbol, f.side, f.quantity, f.fill_price, t.next_price, t.next_ts,
            (t.next_ts - f.ts) / 1e6 AS next_tick_ms,
            (CASE WHEN f.side = 'BUY' THEN 1 ELSE -1 END)
                * (f.fill_price / t.next_price - 1) * 1e4 AS slippage_bps,
            (CASE WHEN f.side = 'BUY' THEN 1 ELSE -1 END)
                * (f.fill_price - t.next_price) * f.quantity * f.multiplier AS slippage_value
        FROM f ASOF LEFT JOIN t ON f.instrument_token = t.instrument_token AND f.ts < t.next_ts
        ORDER BY f.ts, f.portfolio_id
    """
    return query(con, sql, params)
