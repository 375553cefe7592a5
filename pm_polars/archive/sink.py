"""The daemon's Parquet archive: exactly once, with sensible file sizes.

1. **Before the EXEC** that advances a batch's offsets, its archive rows (applied fills,
   duplicates, valid ticks, rejects) are appended to this process's staging segment and
   fsynced (``stage``: on a worker thread while the commit plan is built; ``barrier`` waits
   for it right before the EXEC).
2. **After the EXEC** the rows are kept in memory (``submit``; no per-batch Polars work).
3. **Roll**: every ``roll_rows`` rows or ``roll_s`` seconds a background thread hands the
   batches to an ``ArchiveWriter`` (Parquet files per kind, date and partition, named by
   offset range, atomic and fsynced), then deletes their segment (a fresh one takes over).

Crashes: before the stage nothing was committed (the batch is re-read). Between stage and
EXEC the staged rows were not committed: recovery drops them (offsets >= the stored ones)
and the re-read batch is archived normally. After the EXEC, before the roll finished, the
rows are in a segment: the next daemon of the group recovers orphaned segments at
``start``, keeping exactly the rows below the offsets stored in Redis, under the file names
the roll would have used. Overlaps (a partition re-processed by another instance after a
rebalance) are deduplicated by readers and ``pm-polars compact``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pm_polars.archive.config import save_engine_config
from pm_polars.archive.layout import KIND_SCHEMAS
from pm_polars.archive.writer import ArchiveWriter
from pm_polars.daemon.checkpoint.staging import (
    Orphan,
    Record,
    Segment,
    committed_only,
    fsync_dir,
    orphans,
    staging_dir,
)
from pm_polars.daemon.sinks import Sink
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.types import KINDS, TP, BatchResult, Kind

log = logging.getLogger(__name__)

DEFAULT_ROLL_ROWS = 500_000
DEFAULT_ROLL_S = 60.0
Committed = Callable[[set[TP]], Mapping[TP, int | None]]
_TAGS = ("stream", "batch_id", "arrival_ns")  # added by the writer


@dataclass(frozen=True)
class Rows:
    """Archive rows of one batch, by kind (what ``ArchiveWriter.submit`` accepts)."""

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame
    duplicates: pl.DataFrame

    @classmethod
    def of(cls, frames: Mapping[str, pl.DataFrame]) -> Rows:
        """From frames by kind (missing kinds empty)."""
        return cls(*(frames.get(k, _empty(k)) for k in KINDS))

    def frame(self, kind: Kind) -> pl.DataFrame:
        return {"fills": self.fills, "ticks": self.ticks, "rejects": self.rejects,
                "duplicates": self.duplicates}[kind]

    def frames(self) -> dict[str, pl.DataFrame]:
        """Non-empty frames by kind, event columns only."""
        kinds = [(k, self.frame(k)) for k in KINDS]
        return {k: f.select([c for c in f.columns if c in KIND_SCHEMAS[k]])
                for k, f in kinds if f.height}

    @property
    def height(self) -> int:
        return sum(self.frame(k).height for k in KINDS)


def _empty(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema={c: t for c, t in KIND_SCHEMAS[kind].items() if c not in _TAGS})


def rows_of(result: BatchResult) -> Rows:
    """``Rows`` of a ``BatchResult``."""
    return Rows(result.fills, result.ticks, result.rejects, result.duplicates)


class ArchiveSink(Sink):
    """Exactly-once archive of committed batches under ``root`` for consumer ``group``."""

    staged = True

    def __init__(self, root: str | Path, group: str, *, roll_rows: int = DEFAULT_ROLL_ROWS,
                 roll_s: float = DEFAULT_ROLL_S, fsync: bool = True) -> None:
        self.root, self.group = Path(root), group
        self.roll_rows, self.roll_s, self.fsync = roll_rows, roll_s, fsync
        self.dir = staging_dir(self.root, group)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pm-archive")
        self._staged: Future[None] | None = None
        self._rolling: threading.Thread | None = None
        self._segment: Segment | None = None
        self._buffered: list[tuple[Rows, int]] = []  # committed batches since the last roll
        self._rows = 0
        self._batch = 0
        self._arrival = 0
        self._since: float | None = None  # monotonic time of the first buffered batch
        self.day_roll = ("UTC", "00:00")  # the engine's trading day, set by ``start``

    # ------------------------------------------------------------------ lifecycle
    def start(self, engine: PortfolioEngine, committed: Committed) -> int:
        """Record the engine settings, recover dead daemons' segments, open ours.

        ``committed(tps)`` returns the offsets stored in Redis (None: nothing committed).
        Returns the number of rows recovered.
        """
        save_engine_config(self.root, engine)
        self.day_roll = (engine.config.day_roll_tz, engine.config.day_roll_time)
        found = orphans(self.dir)
        recovered = 0
        try:
            while found:
                recovered += self._recover(found[0], committed)
                found.pop(0)
        finally:
            for orphan in found:  # after an error: unlock the rest (retried next attempt)
                orphan.release()
        self._segment = Segment(self.dir, fsync=self.fsync)
        return recovered

    def _new_writer(self) -> ArchiveWriter:
        tz, at = self.day_roll
        return ArchiveWriter(self.root, stream=self.group, max_rows=2**62,
                             max_age_s=float("inf"), fsync=self.fsync, day_roll_tz=tz,
                             day_roll_time=at)

    def _recover(self, orphan: Orphan, committed: Committed) -> int:
        try:
            records = orphan.records()
            tps = {(t, p) for r in records for f in r.frames.values()
                   for t, p in f.select("topic", "partition").unique().iter_rows()}
            kept = committed_only(records, committed(tps))
            writer = self._new_writer()
            for rec in kept:
                writer.submit(Rows.of(rec.frames), arrival_ns=rec.arrival_ns)
            rows = writer.buffered_rows
            _durable(writer.flush())
        except Exception:
            orphan.release()
            raise
        orphan.remove()
        fsync_dir(self.dir)
        log.info("event=archive_recovered segment=%s records=%d rows=%d", orphan.path.name,
                 len(records), rows)
        return rows

    # ------------------------------------------------------------------ per batch
    def stage(self, result: BatchResult) -> None:
        """Start making ``result``'s rows durable (background append + fsync)."""
        self.barrier()
        self._arrival = max(time.time_ns(), self._arrival + 1)
        record = Record(self._batch, self._arrival, rows_of(result).frames())
        self._staged = self._pool.submit(self._append, record)

    def _append(self, record: Record) -> None:
        # (worker thread) the current segment: a roll queued before swapped it already
        assert self._segment is not None, "ArchiveSink.start() was not called"
        if self._segment.broken:  # a failed append could not be cut off: start afresh
            self._segment.close(delete=False)  # its committed rows: recovered at next start
            self._segment = Segment(self.dir, fsync=self.fsync)
        self._segment.append(record)

    def barrier(self) -> None:
        """Wait until what was staged is durable; raises the staging error (``OSError``)."""
        staged, self._staged = self._staged, None
        if staged is not None:
            staged.result()

    def submit(self, result: BatchResult) -> None:
        """A committed batch (its rows were staged): buffer it; roll when due."""
        self.barrier()
        rows, arrival = rows_of(result), self._arrival
        self._batch += 1
        if self._since is None:
            self._since = time.monotonic()
        self._pool.submit(self._buffer, rows, arrival)

    def _buffer(self, rows: Rows, arrival: int) -> None:
        # (worker thread) no Polars work per batch: the roll thread hands them to a writer
        self._buffered.append((rows, arrival))
        self._rows += rows.height
        if self._rows >= self.roll_rows:
            self._roll()

    def maintain(self) -> None:
        """Roll if the oldest buffered batch is ``roll_s`` old (called every loop iteration)."""
        if self._since is not None and time.monotonic() - self._since >= self.roll_s:
            self._since = None
            self._pool.submit(self._roll)

    def _roll(self) -> None:
        """(worker thread) Swap buffer and segment; write the old ones in the background."""
        if self._rolling is not None:  # one roll at a time
            self._rolling.join()
        batches, old_segment = self._buffered, self._segment
        assert old_segment is not None
        if not batches and not old_segment.records:
            return
        self._buffered, self._rows = [], 0
        self._segment = Segment(self.dir, fsync=self.fsync)
        self._since = None
        self._rolling = threading.Thread(target=self._finish, args=(batches, old_segment),
                                         name="pm-archive-roll", daemon=True)
        self._rolling.start()

    def _finish(self, batches: list[tuple[Rows, int]], segment: Segment) -> None:
        try:
            writer = self._new_writer()
            for batch, arrival in batches:
                writer.submit(batch, arrival_ns=arrival)
            rows = writer.buffered_rows
            _durable(writer.flush())
        except Exception:
            log.exception("event=archive_roll_failed segment=%s note=kept for recovery at "
                          "the next start", segment.path.name)
            segment.close(delete=False)
            return
        segment.close(delete=True)
        log.debug("event=archive_rolled rows=%d", rows)

    def flush(self) -> None:
        """Write everything buffered to Parquet (waits for staging and rolls)."""
        if self._segment is None:  # never started (or closed)
            return
        self._pool.submit(self._roll).result()
        if self._rolling is not None:
            self._rolling.join()

    def close(self) -> None:
        """Flush, delete our (empty) segment and stop the worker."""
        self.flush()
        if self._segment is not None:
            self._segment.close(delete=True)
            self._segment = None
        self._pool.shutdown(wait=True)


def _durable(paths: list[Path]) -> None:
    """fsync the directories of freshly renamed files (the renames survive a power loss)."""
    for directory in sorted({p.parent for p in paths}):
        fsync_dir(directory)
