"""Text renderings of engine results for the terminal: live summary and final tables."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

OVERALL = "Overall"

TABLE_COLUMNS = {
    "portfolio_id": "portfolio",
    "m2m": "m2m today",
    "day_net_pnl": "day net",
    "open_positions": "open",
    "cash": "cash",
    "market_value": "market value",
    "equity": "equity",
    "total_realized_pnl": "realized",
    "total_unrealized_pnl": "unrealized",
    "total_fees": "fees",
    "net_pnl": "net P&L",
    "gross_exposure": "gross exp",
}


def money(value: float | None) -> str:
    """``1234567.891`` -> ``"1,234,567.89"``; None -> ``"-"``."""
    return "-" if value is None else f"{value:,.2f}"


def table_order(portfolios: pl.DataFrame) -> pl.DataFrame:
    """Group rows by source, strategies by id, each source's ``_Overall`` row last."""
    return portfolios.sort(
        "source", pl.col("strategy_id") == OVERALL, "portfolio_id", maintain_order=True
    )


def format_aum(aum: Mapping[str, object]) -> str:
    """``AUM 21,003,456.78 (live 9,001,234.00 | paper 12,002,222.78)``."""
    by_source = aum.get("by_source") or {}
    assert isinstance(by_source, Mapping)
    parts = " | ".join(f"{src} {money(float(v))}" for src, v in sorted(by_source.items()))
    total = aum.get("total")
    out = f"AUM {money(float(total) if isinstance(total, int | float) else None)} ({parts})"
    m2m = aum.get("m2m")
    if isinstance(m2m, int | float):
        out += f" | m2m today {float(m2m):+,.2f}"
    return out


def format_live_summary(
    portfolios: pl.DataFrame, aum: Mapping[str, object], top: int = 3
) -> str:
    """A few lines: AUM, then the ``top`` portfolios by net P&L (best and worst)."""
    lines = [f"{format_aum(aum)} | {portfolios.height} portfolios"]
    ranked = portfolios.sort("net_pnl", descending=True)
    shown = ranked.head(top)
    if ranked.height > top:
        shown = pl.concat([shown, ranked.tail(min(top, ranked.height - top))])
    width = max((len(p) for p in shown["portfolio_id"].to_list()), default=0)
    for row in shown.iter_rows(named=True):
        lines.append(
            f"  {row['portfolio_id']:<{width}}  m2m today {row.get('m2m') or 0.0:>+14,.2f}"
            f"  equity {money(row['equity']):>16}"
            f"  net P&L {row['net_pnl']:>+14,.2f}  open {row['open_positions']}"
        )
    return "\n".join(lines)


def format_portfolio_table(table: pl.DataFrame, aum: Mapping[str, object]) -> str:
    """The final human-readable table of portfolios (with Overall rows) and the AUM line."""
    cols = [c for c in TABLE_COLUMNS if c in table.columns]
    view = table.select(cols).rename({c: TABLE_COLUMNS[c] for c in cols})
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=240,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_FULL_CONDENSED",
        tbl_cell_numeric_alignment="RIGHT",
        thousands_separator=",",
        float_precision=2,
        fmt_str_lengths=60,
    ):
        rendered = str(view)
    return f"{rendered}\n{format_aum(aum)}"
