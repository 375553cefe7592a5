"""The end-of-day report: one row per strategy portfolio for a date plus an ``ALL`` row.

Every figure comes from the ``eod_portfolios`` snapshot of the date, i.e. from the engine's
own state after replaying the archive (see ``pm_polars.eod``). Money in account currency:

=====================  ==============================================================
``fills``              fills applied on the day; ``round_trips``/``win_rate`` closed trips
``turnover``           day buy value + day sell value
``realized``           realized P&L of the day; ``unrealized``: its change over the day
``fees``               fees of the day; ``net = realized + unrealized - fees``
``day_return``         ``net / prev_equity`` (fraction)
``equity``             cash + market value at the close; ``prev_equity`` the close before
``gross_exposure``     sum of |market value|; ``net_exposure`` sum of market value
``total_net_pnl``      lifetime net P&L (realized + unrealized - fees) at the close
=====================  ==============================================================

The ``ALL`` row sums the money columns of the rows shown; its ``day_return`` is
``sum(net) / sum(prev_equity)`` and its ``win_rate`` ``sum(winning trips) / sum(trips)``.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from pm_polars.analytics.connection import AnalyticsError, filters, query, require

ALL = "ALL"
REPORT_COLUMNS = [
    "portfolio_id", "source", "strategy_id", "fills", "round_trips", "win_rate", "turnover",
    "realized", "unrealized", "fees", "net", "day_return", "equity", "prev_equity",
    "gross_exposure", "net_exposure", "open_positions", "total_net_pnl",
]
_SUMMED = ["fills", "round_trips", "winning_trips", "turnover", "realized", "unrealized",
           "fees", "net", "equity", "prev_equity", "gross_exposure", "net_exposure",
           "open_positions", "total_net_pnl"]


def select_portfolios(portfolio: str | None) -> tuple[list[str] | None, str | None]:
    """(portfolio ids, source) for a ``--portfolio`` value: an id or ``{source}_Overall``."""
    if portfolio is None:
        return None, None
    if portfolio.endswith("_Overall"):
        return None, portfolio.removesuffix("_Overall")
    return [portfolio], None


def eod_report(
    con: duckdb.DuckDBPyConnection, day: date, portfolio: str | None = None
) -> pl.DataFrame:
    """The report frame for ``day`` (strategy rows sorted by id, then the ``ALL`` row)."""
    require(con, "eod_portfolios")
    ids, source = select_portfolios(portfolio)
    where, params = filters(day, day, ids)
    if source is not None:
        where += " AND (source = ?)"
        params.append(source)
    rows = query(con, f"""
        SELECT portfolio_id, source, strategy_id, fills::BIGINT AS fills,
            round_trips::BIGINT AS round_trips, winning_trips::BIGINT AS winning_trips,
            turnover, day_realized_pnl AS realized, day_unrealized_change AS unrealized,
            day_fees AS fees, day_net_pnl AS net, equity, prev_equity, gross_exposure,
            net_exposure, open_positions::BIGINT AS open_positions, net_pnl AS total_net_pnl
        FROM eod_portfolios WHERE {where} ORDER BY portfolio_id
    """, params)
    if rows.height == 0:
        what = f" for portfolio {portfolio}" if portfolio else ""
        raise AnalyticsError(f"no end-of-day snapshot{what} on {day}: run "
                             f"`pm-polars eod --date {day}` (or check the date/portfolio)")
    total = rows.select(
        pl.lit(ALL).alias("portfolio_id"), pl.lit(ALL).alias("source"),
        pl.lit(ALL).alias("strategy_id"), *[pl.col(c).sum() for c in _SUMMED],
    )
    out = pl.concat([rows, total], how="vertical_relaxed")
    return out.with_columns(
        (pl.col("net") / pl.col("prev_equity")).alias("day_return"),
        pl.when(pl.col("round_trips") > 0)
        .then(pl.col("winning_trips") / pl.col("round_trips")).alias("win_rate"),
    ).select(REPORT_COLUMNS)


def format_table(report: pl.DataFrame, day: date) -> str:
    """The report as an aligned text table (money with 2 decimals, returns in %)."""
    shown = report.with_columns(
        (pl.col("day_return") * 100).round(4).alias("day_return_%"),
        (pl.col("win_rate") * 100).round(1).alias("win_rate_%"),
    ).select(
        "portfolio_id", "fills", "round_trips", "win_rate_%", "turnover", "realized",
        "unrealized", "fees", "net", "day_return_%", "equity", "gross_exposure",
        "open_positions",
    )
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, tbl_width_chars=260, tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True, tbl_formatting="ASCII_FULL_CONDENSED",
        tbl_cell_numeric_alignment="RIGHT", thousands_separator=",", float_precision=2,
        fmt_str_lengths=60,
    ):
        return f"End-of-day report {day.isoformat()} (account currency)\n{shown}"
