"""Parquet archive of every applied event: writer, the daemon's sink, readers, compaction,
replay.

See ``layout`` for the directory layout, file names and columns; ``sink`` for the daemon's
exactly-once archive (``ArchiveSink``). The names below are imported on first use; the
defaults are plain constants here, so the command line shows them without Polars.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pm_polars.types import KINDS

if TYPE_CHECKING:
    from pm_polars.archive.config import load_engine_config, new_engine, save_engine_config
    from pm_polars.archive.layout import ORDER
    from pm_polars.archive.reader import archive_dates, read, scan
    from pm_polars.archive.writer import ArchiveWriter

DEFAULT_ROOT = Path("data/archive")
DEFAULT_TARGET_ROWS = 2_000_000  # rows per file written by ``compact``

_FACE = {"load_engine_config": "config", "new_engine": "config",
         "save_engine_config": "config", "ORDER": "layout", "archive_dates": "reader",
         "read": "reader", "scan": "reader", "ArchiveWriter": "writer"}
__all__ = [
    "DEFAULT_ROOT",
    "DEFAULT_TARGET_ROWS",
    "KINDS",
    "ORDER",
    "ArchiveWriter",
    "archive_dates",
    "load_engine_config",
    "new_engine",
    "read",
    "save_engine_config",
    "scan",
]


def __getattr__(name: str) -> Any:
    if name in _FACE:
        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
