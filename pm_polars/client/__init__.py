"""Read the live state ``pm-polars run`` publishes to Redis (for APIs, dashboards, notebooks).

::

    from pm_polars.client import PortfolioReader

    with PortfolioReader.from_url("rediss://:secret@redis:6380/0", key_prefix="desk1:") as r:
        r.list_portfolios()                    # ['live_Overall', 'live_S2', ...]
        pf = r.get_portfolio("paper_S1")       # Portfolio | None
        pf.equity, pf.net_pnl, pf.positions[256265].quantity
        r.aum(), r.prices()                    # Aum | None, {token: Price(last_price, ts, bid, ask)}
        r.portfolios_frame(), r.positions_frame()   # Polars frames, engine view columns
        with r.subscribe() as sub:
            for update in sub:                 # Update(portfolio_ids=[...], ts=ns)
                ...

``AsyncPortfolioReader`` has the same methods as coroutines (``async with r.subscribe() as
sub: async for update in sub``). Units: prices per unit, quantities signed, money in
account currency, ts ns UTC. Unknown (newer) fields are kept in each model's ``extra``.
The names below are imported on first use (the frames, and only they, need Polars).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pm_polars.client.aio import AsyncPortfolioReader, AsyncSubscription
    from pm_polars.client.frames import portfolios_frame, positions_frame
    from pm_polars.client.models import (
        Aum,
        DocumentError,
        Overview,
        Portfolio,
        Position,
        Price,
        Update,
    )
    from pm_polars.client.reader import PortfolioReader, Subscription

_FACE = {
    "AsyncPortfolioReader": "aio", "AsyncSubscription": "aio",
    "portfolios_frame": "frames", "positions_frame": "frames",
    "Aum": "models", "DocumentError": "models", "Overview": "models", "Portfolio": "models",
    "Position": "models", "Price": "models", "Update": "models",
    "PortfolioReader": "reader", "Subscription": "reader",
}
__all__ = [
    "AsyncPortfolioReader",
    "AsyncSubscription",
    "Aum",
    "DocumentError",
    "Overview",
    "Portfolio",
    "PortfolioReader",
    "Position",
    "Price",
    "Subscription",
    "Update",
    "portfolios_frame",
    "positions_frame",
]


def __getattr__(name: str) -> Any:
    if name in _FACE:
        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
