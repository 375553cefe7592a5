"""Compaction: merge a date's small files into few large ones, atomically and idempotently.

Per (kind, date, group) - a group is a Kafka topic-partition or a non-Kafka stream - the
files are read, deduplicated by event identity, ordered by arrival and rewritten in chunks of
``target_rows`` rows, each named by its own offset (or batch) range. The new files are
renamed into place first and the inputs deleted after, so a crash in between leaves
overlapping files that readers deduplicate and the next run removes. A group that already
has no overlaps and no more files than its row count needs is left alone, so running it
twice changes nothing. Temp files older than ``temp_age_s`` (left by a crash) are swept.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pm_polars.archive import DEFAULT_TARGET_ROWS
from pm_polars.archive.layout import (
    ORDER,
    data_files,
    date_dir,
    has_overlaps,
    kafka_file_name,
    list_dates,
    local_file_name,
    parse_file_name,
    write_atomic,
)
from pm_polars.archive.reader import dedupe
from pm_polars.types import KINDS

log = logging.getLogger(__name__)

DEFAULT_TEMP_AGE_S = 3_600.0


@dataclass
class CompactStats:
    groups_rewritten: int = 0
    files_in: int = 0
    files_out: int = 0
    rows_out: int = 0
    temps_swept: int = 0


def _chunk_ids(frame: pl.DataFrame, target_rows: int) -> pl.Series:
    """Chunk number per row; non-Kafka chunks end on batch boundaries (names stay unique)."""
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    if frame.get_column("offset").null_count() == 0:
        return frame.select(row // target_rows).to_series()
    batch_start = pl.when(pl.col("batch_id") != pl.col("batch_id").shift()).then(row)
    return frame.select(batch_start.fill_null(0).cum_max() // target_rows).to_series()


def _name(chunk: pl.DataFrame, stream: str) -> str:
    topic, part = chunk.get_column("topic")[0], chunk.get_column("partition")[0]
    if topic is not None and chunk.get_column("offset").null_count() == 0:
        off = chunk.get_column("offset")
        return kafka_file_name(topic, int(part), int(off.min()), int(off.max()))  # type: ignore[arg-type]
    ids = chunk.get_column("batch_id")
    return local_file_name(stream, int(ids.min()), int(ids.max()))  # type: ignore[arg-type]


def compact_group(files: list[Path], target_rows: int) -> tuple[list[Path], int]:
    """Rewrite one group's files; returns (files written, rows written)."""
    frame = dedupe(pl.scan_parquet(files, hive_partitioning=False)).collect()
    stream = frame.get_column("stream")[0] if frame.height else "local"
    written: list[Path] = []
    chunked = frame.with_columns(_chunk_ids(frame, target_rows).alias("_c"))
    for _, chunk in chunked.group_by("_c", maintain_order=True):
        chunk = chunk.drop("_c").sort(ORDER)
        written.append(write_atomic(chunk, files[0].parent / _name(chunk, str(stream))))
    for f in files:
        if f not in written:
            f.unlink(missing_ok=True)
    return written, frame.height


def sweep_temps(directory: Path, older_than_s: float) -> int:
    """Delete temp files of interrupted writes older than ``older_than_s``."""
    cutoff, swept = time.time() - older_than_s, 0
    for p in directory.glob(".*.tmp"):
        if p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            swept += 1
    return swept


def compact(
    root: str | Path,
    days: Iterable[date] | None = None,
    kinds: Iterable[str] = KINDS,
    *,
    target_rows: int = DEFAULT_TARGET_ROWS,
    temp_age_s: float = DEFAULT_TEMP_AGE_S,
) -> CompactStats:
    """Compact ``kinds`` for ``days`` (every date when None)."""
    stats = CompactStats()
    for kind in kinds:
        chosen = list_dates(Path(root), kind) if days is None else sorted(set(days))
        for day in chosen:
            directory = date_dir(Path(root), kind, day)
            if not directory.is_dir():
                continue
            stats.temps_swept += sweep_temps(directory, temp_age_s)
            groups: dict[str, list[Path]] = defaultdict(list)
            for f in data_files(directory):
                r = parse_file_name(f)
                if r is None:
                    log.warning("compact: leaving foreign file %s alone", f)
                    continue
                groups[r.group].append(f)
            for group, files in groups.items():
                rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
                if not has_overlaps(files) and len(files) <= max(1, math.ceil(rows / target_rows)):
                    continue
                written, n = compact_group(files, target_rows)
                log.info("compact %s %s %s: %d files -> %d (%s rows)", kind, day, group,
                         len(files), len(written), f"{n:,}")
                stats.groups_rewritten += 1
                stats.files_in += len(files)
                stats.files_out += len(written)
                stats.rows_out += n
    return stats
