"""One partition's contribution to the cross-instance aggregates (``{source}_Overall``, aum).

With several daemons each owning some partitions, no instance sees every portfolio. Each
partition stores its own contribution (``pm:parts`` hashes, field ``"{topic}:{partition}"``)
and a Lua script sums all contributions in the same MULTI/EXEC (``aggregate_lua``), so one
instance's partial view never overwrites another's.

Contribution JSON for a source (money in account currency; quantities signed, in atoms of
10^-d units, d = ``--quantity-decimals``, units at d = 0; see ``part_sums``)::

    {"totals": {"cash", "total_realized_pnl", ..., "open_positions", "day_pnl", "m2m",
                ...},                                                     # sums of strategies
     "trading_day": "YYYY-MM-DD" | null,
     "positions": {"<token>": {"quantity", "realized_pnl", ..., "cost",  # cost = sum of
                               ..., "m2m", "cost0",                      # average_price*qty
                               "last_price", "prev_close", "multiplier"}}}

The aggregate position's ``average_price`` is ``sum(cost) / sum(quantity)`` (0 when net
flat), its ``overnight_average_price`` ``sum(cost0) / sum(overnight_quantity)`` (``cost0``
= overnight_average_price x overnight_quantity), exactly like ``views.overall_positions``.
A currency book adds ``"missing_rate"`` (portfolios missing a rate) to the totals and
``pnl_currency``, ``inverse``, ``fx_rate``, ``missing_rate`` to each position (its cost on
the line price for an inverse one; ``publish.fx_rows``); the AUM contribution's figures
are null for a source with a missing rate. The daemon builds these documents in
``pm_polars.publish.model_rows``.
"""

from __future__ import annotations

from pm_polars.engine import views

PORTFOLIO_SUMS = views.PORTFOLIO_SUMMED
POSITION_SUMS = [
    "quantity", "realized_pnl", "unrealized_pnl", "fees", "market_value",
    "buy_quantity", "sell_quantity", "buy_value", "sell_value", "cost",
    *views.OVERALL_DAY_SUMS, "cost0",
]
AUM_SUMS = views.AUM_DAY_SUMS
