"""Parquet archive of every applied event: writer, the daemon's sink, readers, compaction,
replay.

See ``layout`` for the directory layout, file names and columns; ``sink`` for the daemon's
exactly-once archive (``ArchiveSink``, imported from there: it needs the daemon's staging).
"""

from pm_polars.archive.config import load_engine_config, new_engine, save_engine_config
from pm_polars.archive.layout import DEFAULT_ROOT, ORDER
from pm_polars.archive.reader import archive_dates, read, scan
from pm_polars.archive.writer import ArchiveWriter
from pm_polars.types import KINDS

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
