"""Reading the archive back: files per date, deduplicated frames, fingerprints.

Readers only ever open finished ``*.parquet`` files (never the hidden temp files of a write in
progress). When file names reveal overlapping ranges (events archived twice after a
consumer crash), rows are deduplicated by event identity, keeping the latest arrival:
``(topic, partition, offset)`` for Kafka events, ``(stream, batch_id, seq)`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pm_polars.archive.layout import (
    KAFKA_KEY,
    KIND_SCHEMAS,
    LOCAL_KEY,
    ORDER,
    data_files,
    date_dir,
    has_overlaps,
    list_dates,
)

STATE_KINDS = ("fills", "ticks")  # the kinds that change engine state


def files_by_date(root: Path, kind: str, days: Iterable[date] | None = None) -> dict[date, list[Path]]:
    """Finished files of ``kind`` per date (all dates when ``days`` is None)."""
    chosen = list_dates(root, kind) if days is None else sorted(set(days))
    return {d: data_files(date_dir(root, kind, d)) for d in chosen}


def dedupe(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One row per event identity, the latest arrival winning; result in arrival order."""
    ordered = frame.sort(ORDER)
    kafka = ordered.filter(pl.col("offset").is_not_null()).unique(
        KAFKA_KEY, keep="last", maintain_order=True
    )
    local = ordered.filter(pl.col("offset").is_null()).unique(
        LOCAL_KEY, keep="last", maintain_order=True
    )
    return pl.concat([kafka, local]).sort(ORDER)


def scan(
    root: str | Path,
    kind: str,
    days: Iterable[date] | None = None,
    columns: list[str] | None = None,
    files: list[Path] | None = None,
) -> pl.LazyFrame:
    """Lazy frame over ``kind`` for ``days`` (all when None), typed by ``KIND_SCHEMAS``.

    Rows are deduplicated when the file names show overlaps; otherwise they come in file
    order (use ``.sort(ORDER)`` for arrival order). ``columns`` selects columns (the
    identity and order columns are read as needed for deduplication). ``files`` restricts
    the scan to those files (``days`` is then ignored).
    """
    schema = KIND_SCHEMAS[kind]
    if files is None:
        groups = list(files_by_date(Path(root), kind, days).values())
    else:
        by_dir: dict[Path, list[Path]] = {}
        for f in files:
            by_dir.setdefault(f.parent, []).append(f)
        groups = list(by_dir.values())
    files = [f for fs in groups for f in fs]
    wanted = list(schema) if columns is None else columns
    if not files:
        return pl.LazyFrame(schema={c: schema[c] for c in wanted})
    lf = pl.scan_parquet(
        files, hive_partitioning=False, missing_columns="insert", extra_columns="ignore"
    )
    overlapping = any(has_overlaps(fs) for fs in groups)
    if overlapping:
        needed = list(dict.fromkeys([*wanted, *ORDER, *KAFKA_KEY, *LOCAL_KEY]))
        lf = dedupe(lf.select(needed))
    return lf.select([pl.col(c).cast(schema[c]) for c in wanted])


def read(
    root: str | Path,
    kind: str,
    days: Iterable[date] | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """``scan(...)`` collected, in arrival order."""
    cols = None if columns is None else list(dict.fromkeys([*columns, *ORDER]))
    frame = scan(root, kind, days, cols).sort(ORDER).collect()
    return frame if columns is None else frame.select(columns)


@dataclass(frozen=True)
class FileStats:
    """What a file's Parquet footer says: rows and the range of ``arrival_ns``."""

    path: Path
    rows: int
    first_arrival: int
    last_arrival: int


def file_stats(path: Path) -> FileStats:
    """Rows and arrival range of an archive file, from its footer (no data pages read)."""
    meta = pq.ParquetFile(path).metadata
    idx = meta.schema.names.index("arrival_ns")
    lo, hi = 2**63 - 1, 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(idx).statistics
        if stats is not None and stats.has_min_max:
            lo, hi = min(lo, int(stats.min)), max(hi, int(stats.max))
    return FileStats(path, meta.num_rows, lo if lo <= hi else 0, hi)


def fingerprint(root: str | Path, days: Iterable[date]) -> dict[str, list[int]]:
    """Per date ``[fill rows, max fill arrival, tick rows, max tick arrival]`` (footers only).

    End-of-day state snapshots record the fingerprint of the dates they consumed; a later
    change (late or re-archived events) makes it differ and the day is recomputed.
    Compaction without overlaps keeps it unchanged.
    """
    out: dict[str, list[int]] = {}
    for d in sorted(set(days)):
        values: list[int] = []
        for kind in STATE_KINDS:
            stats = [file_stats(f) for f in data_files(date_dir(Path(root), kind, d))]
            values += [sum(s.rows for s in stats), max((s.last_arrival for s in stats), default=0)]
        out[d.isoformat()] = values
    return out


def archive_dates(root: str | Path, until: date | None = None) -> list[date]:
    """Dates with fills or ticks, ascending, up to ``until`` inclusive."""
    days = {d for k in STATE_KINDS for d in list_dates(Path(root), k)}
    return sorted(d for d in days if until is None or d <= until)
