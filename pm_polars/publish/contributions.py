"""One partition's contribution to the cross-instance aggregates (``{source}_Overall``, aum).

With several daemons each owning some partitions, no instance sees every portfolio. Each
partition stores its own contribution (``pm:parts`` hashes, field ``"{topic}:{partition}"``)
and a Lua script sums all contributions in the same MULTI/EXEC (``aggregate_lua``), so one
instance's partial view never overwrites another's.

Contribution JSON for a source (money in account currency, quantities signed)::

    {"totals": {"cash", "total_realized_pnl", ..., "open_positions"},   # sums of strategies
     "positions": {"<token>": {"quantity", "realized_pnl", ..., "cost",  # cost = sum of
                               "last_price", "multiplier"}}}             # average_price*qty

The aggregate position's ``average_price`` is ``sum(cost) / sum(quantity)`` (0 when net
flat), exactly like ``views.overall_positions``.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from pm_polars.engine import views

PORTFOLIO_SUMS = [
    c for c in views.PORTFOLIO_COLUMNS if c not in ("portfolio_id", "source", "strategy_id")
]
POSITION_SUMS = [
    "quantity", "realized_pnl", "unrealized_pnl", "fees", "market_value",
    "buy_quantity", "sell_quantity", "buy_value", "sell_value", "cost",
]


def partition_contributions(
    portfolios: pl.DataFrame, positions: pl.DataFrame, part_of: pl.DataFrame
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Contributions of every partition in ``part_of`` (``portfolio_id``, ``part``).

    ``portfolios``/``positions`` are the engine's views (``portfolios_view``,
    ``positions_view``) covering at least those partitions' portfolios. Returns
    ``({part: {source: overall JSON}}, {part: aum JSON})``; aum is ``{"total",
    "by_source"}``, the sum of strategy equity.
    """
    pf = portfolios.join(part_of, on="portfolio_id", how="inner")
    if pf.height == 0:
        return {}, {}
    pos = positions.join(pf.select("portfolio_id", "part", "source"), on="portfolio_id",
                         how="inner")
    totals = pf.group_by("part", "source").agg([pl.col(c).sum() for c in PORTFOLIO_SUMS])
    grouped = (
        pos.with_columns(
            (pl.col("average_price") * pl.col("quantity").cast(pl.Float64)).alias("cost")
        )
        .group_by("part", "source", "instrument_token")
        .agg(
            *[pl.col(c).sum() for c in POSITION_SUMS],
            pl.col("last_price").drop_nulls().first(),
            pl.col("multiplier").first(),
        )
        .sort("part", "source", "instrument_token")
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for row in grouped.to_dicts():
        key = (row.pop("part"), row.pop("source"))
        rows.setdefault(key, {})[str(row.pop("instrument_token"))] = row
    overall: dict[str, dict[str, str]] = {}
    aum: dict[str, dict[str, Any]] = {}
    for row in totals.sort("part", "source").to_dicts():
        part, src = row.pop("part"), row.pop("source")
        overall.setdefault(part, {})[src] = json.dumps(
            {"totals": row, "positions": rows.get((part, src), {})})
        entry = aum.setdefault(part, {"total": 0.0, "by_source": {}})
        entry["by_source"][src] = row["equity"]
        entry["total"] += row["equity"]
    return overall, {part: json.dumps(v) for part, v in aum.items()}
