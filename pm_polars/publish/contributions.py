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
from pm_polars.engine.engine import PortfolioEngine

PORTFOLIO_SUMS = [
    c for c in views.PORTFOLIO_COLUMNS if c not in ("portfolio_id", "source", "strategy_id")
]
POSITION_SUMS = [
    "quantity", "realized_pnl", "unrealized_pnl", "fees", "market_value",
    "buy_quantity", "sell_quantity", "buy_value", "sell_value", "cost",
]


def overall_contributions(engine: PortfolioEngine) -> dict[str, str]:
    """``{source: contribution JSON}`` for every source the engine holds portfolios of."""
    portfolios = engine.portfolios()
    if portfolios.height == 0:
        return {}
    positions = engine.positions().join(
        portfolios.select("portfolio_id", "source"), on="portfolio_id", how="left"
    )
    totals = portfolios.group_by("source").agg([pl.col(c).sum() for c in PORTFOLIO_SUMS])
    pos = (
        positions.with_columns(
            (pl.col("average_price") * pl.col("quantity").cast(pl.Float64)).alias("cost")
        )
        .group_by("source", "instrument_token")
        .agg(
            *[pl.col(c).sum() for c in POSITION_SUMS],
            pl.col("last_price").drop_nulls().first(),
            pl.col("multiplier").first(),
        )
        .sort("source", "instrument_token")
    )
    out: dict[str, str] = {}
    by_source: dict[str, dict[str, Any]] = {}
    for row in pos.to_dicts():
        src = row.pop("source")
        by_source.setdefault(src, {})[str(row.pop("instrument_token"))] = row
    for row in totals.to_dicts():
        src = row.pop("source")
        out[src] = json.dumps({"totals": row, "positions": by_source.get(src, {})})
    return out


def aum_contribution(engine: PortfolioEngine) -> str:
    """JSON ``{"total", "by_source"}`` of the engine's strategy portfolios (sum of equity)."""
    return json.dumps(engine.aum())
