"""pm_polars: real-time portfolio & P&L engine over Polars.

Notebook entry point::

    from pm_polars import PortfolioEngine
    eng = PortfolioEngine()
    eng.apply(events)          # raw JSON bytes, dicts, a Polars frame or an Arrow table
    eng.positions(), eng.portfolios(), eng.portfolio("paper_Momentum_NIFTY50_1"), eng.aum()

The names below are imported on first use, so ``import pm_polars`` (and every
``pm_polars.*`` module, e.g. the ``pm-polars`` command line) does not load Polars.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pm_polars.engine.engine import PortfolioEngine
    from pm_polars.engine.snapshot import Snapshot
    from pm_polars.types import ApplyResult

_FACE = {"ApplyResult": "pm_polars.types", "PortfolioEngine": "pm_polars.engine.engine",
         "Snapshot": "pm_polars.engine.snapshot"}
__all__ = ["ApplyResult", "PortfolioEngine", "Snapshot"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _FACE:
        return getattr(import_module(_FACE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
