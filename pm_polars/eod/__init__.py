"""End of day: roll a trading day into position, portfolio and round-trip snapshots.

``roll`` and ``trips`` are pure functions over frames (conventions in their docstrings),
``store`` names the snapshot files, ``run`` orchestrates an incremental run.
"""

from pm_polars.eod.run import EodError, EodResult, run_eod

__all__ = ["EodError", "EodResult", "run_eod"]
