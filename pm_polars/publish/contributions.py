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
flat), exactly like ``views.overall_positions``. The daemon builds these documents in
``pm_polars.publish.model_rows``.
"""

from __future__ import annotations

from pm_polars.engine import views

PORTFOLIO_SUMS = [
    c for c in views.PORTFOLIO_COLUMNS if c not in ("portfolio_id", "source", "strategy_id")
]
POSITION_SUMS = [
    "quantity", "realized_pnl", "unrealized_pnl", "fees", "market_value",
    "buy_quantity", "sell_quantity", "buy_value", "sell_value", "cost",
]
