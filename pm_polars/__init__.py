"""pm_polars: real-time portfolio & P&L engine over Polars.

Notebook entry point::

    from pm_polars import PortfolioEngine
    eng = PortfolioEngine()
    eng.apply(events)          # raw JSON bytes, dicts, a Polars frame or an Arrow table
    eng.positions(), eng.portfolios(), eng.portfolio("paper_Momentum_NIFTY50_1"), eng.aum()
"""

from pm_polars.engine.engine import ApplyResult, PortfolioEngine
from pm_polars.engine.snapshot import Snapshot

__all__ = ["ApplyResult", "PortfolioEngine", "Snapshot"]
__version__ = "0.1.0"
