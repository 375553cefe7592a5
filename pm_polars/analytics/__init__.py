"""History analytics over the archive with DuckDB, returning Polars frames.

``connect(root)`` opens DuckDB with views over the archive and end-of-day snapshots; the
functions take that connection::

    from pm_polars import analytics as an
    con = an.connect("data/archive")
    an.equity_curve(con, by="portfolio"), an.daily_pnl(con, by="strategy")
    an.blotter(con), an.round_trips(con), an.trip_stats(an.round_trips(con), by="strategy")
    an.exposures(con, by="instrument"), an.slippage(con)
    an.intraday_equity("data/archive", every="1m")
"""

from pm_polars.analytics.connection import AnalyticsError, connect, query
from pm_polars.analytics.exposure import exposures, positions_at_close
from pm_polars.analytics.intraday import intraday_equity
from pm_polars.analytics.pnl import daily_pnl, equity_curve, performance, sharpe, with_curve
from pm_polars.analytics.trades import blotter, round_trips, slippage, trip_stats, turnover

__all__ = [
    "AnalyticsError",
    "blotter",
    "connect",
    "daily_pnl",
    "equity_curve",
    "exposures",
    "intraday_equity",
    "performance",
    "positions_at_close",
    "query",
    "round_trips",
    "sharpe",
    "slippage",
    "trip_stats",
    "turnover",
    "with_curve",
]
