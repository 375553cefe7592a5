"""Self-contained HTML end-of-day report: tables plus inline SVG charts, no external files.

Charts: the equity curve (daily closes up to the report date; with fewer than two closes,
the report day's intraday equity in 5-minute steps instead) and the day's net P&L by
strategy. Tables: the report (``report.eod_report``) and the positions open at the close.
"""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from pm_polars.analytics.charts import bar_figure, equity_figure, to_svg
from pm_polars.analytics.exposure import positions_at_close
from pm_polars.analytics.intraday import intraday_equity
from pm_polars.analytics.pnl import equity_curve
from pm_polars.analytics.report import ALL, select_portfolios

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 24px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.all td { font-weight: bold; background: #fafafa; }
.neg { color: #c62828; } .pos { color: #2e7d32; }
"""


def _cell(value: object, column: str) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, float):
        pct = column in ("day_return", "win_rate")
        text = f"{value * 100:,.3f}%" if pct else f"{value:,.2f}"
        cls = ' class="neg"' if value < 0 else (' class="pos"' if value > 0 else "")
        return f"<td{cls}>{text}</td>"
    if isinstance(value, int):
        return f"<td>{value:,}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def table_html(frame: pl.DataFrame) -> str:
    """An HTML table of ``frame``; a row whose first cell is ``ALL`` is emphasised."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cls = ' class="all"' if row and row[0] == ALL else ""
        cells = "".join(_cell(v, c) for v, c in zip(row, frame.columns, strict=True))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _equity_svg(con: duckdb.DuckDBPyConnection, root: Path, day: date,
                portfolio: str | None) -> str:
    ids, source = select_portfolios(portfolio)
    if source is not None:
        curve = equity_curve(con, by="source", end=day).filter(pl.col("key") == source)
    else:
        curve = equity_curve(con, by="all" if ids is None else "portfolio", end=day,
                             portfolios=ids)
    if curve.get_column("date").n_unique() >= 2:
        return to_svg(equity_figure(curve, title=f"Equity at the close, up to {day}"))
    intraday = intraday_equity(root, day, every="5m", portfolios=ids)
    if source is not None:
        intraday = intraday.filter(pl.col("portfolio_id").str.starts_with(f"{source}_"))
    total = intraday.group_by("time").agg(pl.col("equity").sum()).with_columns(
        pl.lit(portfolio or ALL).alias("key")
    )
    return to_svg(equity_figure(total, x="time", title=f"Intraday equity on {day} (UTC, 5 min)"))


def render_html(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    day: date,
    report: pl.DataFrame,
    portfolio: str | None = None,
) -> str:
    """The full HTML document for ``report`` (built by ``report.eod_report``)."""
    by_strategy = report.filter(pl.col("portfolio_id") != ALL)
    pnl_svg = to_svg(bar_figure(by_strategy, "portfolio_id", "net",
                                title=f"Net P&L by strategy portfolio on {day}"))
    ids, _ = select_portfolios(portfolio)
    positions = positions_at_close(con, day, ids)
    title = f"pm_polars end-of-day report {day}" + (f" - {portfolio}" if portfolio else "")
    return "\n".join([
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Money in account currency; returns compound (never summed); day P&amp;L = "
        "realized + change in unrealized - fees.</p>",
        "<h2>Summary</h2>", table_html(report),
        "<h2>Equity</h2>", _equity_svg(con, root, day, portfolio),
        "<h2>P&amp;L by strategy</h2>", pnl_svg,
        f"<h2>Open positions at the close ({positions.height})</h2>", table_html(positions),
        "</body></html>",
    ])
