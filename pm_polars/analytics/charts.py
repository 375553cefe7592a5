"""Matplotlib charts for reports and notebooks, without pyplot's global state.

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure` (display it in a
notebook, or save it); :func:`to_svg` renders one to an inline SVG string for
self-contained HTML.
"""

from __future__ import annotations

import io

import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

_MONEY = FuncFormatter(lambda v, _pos: f"{v:,.0f}")


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), for inline HTML."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def equity_figure(
    curve: pl.DataFrame, x: str = "date", y: str = "equity", key: str = "key",
    title: str = "Equity", ylabel: str = "equity (account currency)",
) -> Figure:
    """One line per ``key`` of ``y`` against ``x`` (dates or times)."""
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    for (name,), g in curve.sort(key, x).group_by(key, maintain_order=True):
        ax.plot(g.get_column(x).to_list(), g.get_column(y).to_list(), label=str(name),
                marker="o" if g.height < 3 else None)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(_MONEY)
    ax.grid(alpha=0.3)
    if curve.get_column(key).n_unique() <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def bar_figure(
    frame: pl.DataFrame, label: str, value: str, title: str, ylabel: str = "account currency"
) -> Figure:
    """Horizontal bars of ``value`` per ``label``, green for gains and red for losses."""
    rows = frame.sort(value)
    fig = Figure(figsize=(9, max(2.5, 0.35 * rows.height + 1)))
    ax = fig.subplots()
    values = rows.get_column(value).to_list()
    ax.barh(rows.get_column(label).cast(pl.String).to_list(), values,
            color=["#2e7d32" if v >= 0 else "#c62828" for v in values])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(ylabel)
    ax.xaxis.set_major_formatter(_MONEY)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def drawdown_figure(curve: pl.DataFrame, x: str = "date", key: str = "key") -> Figure:
    """Running drawdown (fraction, <= 0) per ``key``, filled below zero."""
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    for (name,), g in curve.sort(key, x).group_by(key, maintain_order=True):
        ax.fill_between(g.get_column(x).to_list(), g.get_column("drawdown").to_list(), 0,
                        alpha=0.3, label=str(name))
    ax.set_title("Drawdown")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.1%}"))
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
