"""Parquet archive of every applied event: writer (a sink), readers, compaction, replay.

See ``layout`` for the directory layout, file names and columns.
"""

from pm_polars.archive.config import load_engine_config, new_engine, save_engine_config
from pm_polars.archive.layout import DEFAULT_ROOT, KINDS, ORDER
from pm_polars.archive.reader import archive_dates, read, scan
from pm_polars.archive.writer import ArchiveWriter

__all__ = [
    "DEFAULT_ROOT",
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
