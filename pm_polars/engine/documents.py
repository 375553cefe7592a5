"""The published JSON model of one portfolio (what Redis holds under ``portfolio:{id}``).

Shape (stable: existing readers rely on these names; fields are only ever added)::

    {"portfolio_id": str, "source": str, "strategy_id": str,
     "positions": {"<token>": {"instrument_token", "quantity", "average_price",
                               "last_price", "unrealized_pnl", "realized_pnl", "fees",
                               "multiplier", "market_value", "buy_quantity",
                               "sell_quantity", "buy_value", "sell_value"}},
     "total_realized_pnl", "total_unrealized_pnl", "total_pnl", "total_fees", "net_pnl",
     "cash", "market_value", "equity", "gross_exposure", "net_exposure", "open_positions"}

Money in account currency, prices per unit, quantities signed. A quantity is a JSON
integer whenever its value is integral (always with integer quantities; with
``quantity_decimals`` > 0, ``75.0`` units is written ``75`` and ``0.015`` stays ``0.015``),
so readers of integer feeds keep their integers.
"""

from __future__ import annotations

from typing import Any

import polars as pl

# the quantity fields of a position document (units, signed where it matters)
QUANTITIES = ("quantity", "buy_quantity", "sell_quantity", "overnight_quantity",
              "day_buy_quantity", "day_sell_quantity", "day_quantity")


def integral(units: float | None) -> int | float | None:
    """A quantity in units as JSON wants it: an ``int`` when integral, else the float."""
    if units is not None and units.is_integer():
        return int(units)
    return units


def portfolio_documents(
    portfolios: pl.DataFrame, positions: pl.DataFrame
) -> dict[str, dict[str, Any]]:
    """Build the published dict for every row of ``portfolios``.

    ``positions`` is a positions view (already restricted to these portfolios or not; extra
    rows are ignored). Position keys are the instrument token as a string (JSON object keys).
    """
    docs: dict[str, dict[str, Any]] = {}
    for row in portfolios.to_dicts():
        row["positions"] = {}
        docs[row["portfolio_id"]] = row
    wanted = positions.filter(pl.col("portfolio_id").is_in(list(docs)))
    fractional = [c for c in QUANTITIES if wanted.schema.get(c) == pl.Float64]
    for pos in wanted.to_dicts():
        for c in fractional:
            pos[c] = integral(pos[c])
        pid = pos.pop("portfolio_id")
        docs[pid]["positions"][str(pos["instrument_token"])] = pos
    return docs
