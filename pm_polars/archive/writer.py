"""ArchiveWriter: a sink that appends every applied event to the Parquet archive.

Shape of a daemon sink (``submit(result, offsets)``, ``flush()``, ``close()``), also used by
the demo runner and usable from a notebook. Rows are buffered per (kind, date, topic and
partition | stream) and written as one file per buffer when it holds ``max_rows`` rows, when
its oldest row is ``max_age_s`` old (checked on ``submit``), or on ``flush``/``close``.

Durability contract: what was submitted is on disk when ``flush()`` returns, so a consumer
must flush before committing its offsets. A crash between flush and commit re-delivers
events that are already archived; the re-written file either has the same name (replaced) or
overlaps an existing one, and readers and ``compact`` keep one row per event identity
(``(topic, partition, offset)`` for Kafka, ``(stream, batch_id, seq)`` otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pm_polars.archive import DEFAULT_ROOT
from pm_polars.archive.config import save_engine_config
from pm_polars.archive.layout import (
    KIND_SCHEMAS,
    date_dir,
    event_date_expr,
    kafka_file_name,
    local_file_name,
    remove_stream_files,
    write_atomic,
)
from pm_polars.engine import tradingday
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.types import EventFrames

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_AGE_S = 60.0


@dataclass
class _Buffer:
    kind: str
    day: Any
    topic: str | None
    partition: int | None
    started: float
    frames: list[pl.DataFrame] = field(default_factory=list)
    rows: int = 0


class ArchiveWriter:
    """Append fills, ticks, rejects and duplicate fills to the archive under ``root``.

    ``stream`` names this writer's non-Kafka events in file names and in the ``stream``
    column; ``first_batch_id`` starts its batch counter (keep it deterministic, e.g. 0, for
    input that has no offsets, so a re-run writes the same names). ``clock`` returns the
    arrival time in ns UTC (``time.time_ns``); arrival times are made strictly increasing.
    ``day_roll_tz``/``day_roll_time``: the trading day of the date partitions (the engine's;
    the writers that archive an engine's events pass its settings).
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        *,
        stream: str = "local",
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        first_batch_id: int = 0,
        archive_duplicates: bool = True,
        fsync: bool = True,
        clock: Callable[[], int] = time.time_ns,
        day_roll_tz: str = "UTC",
        day_roll_time: str = "00:00",
    ) -> None:
        self.root = Path(root)
        self.day_roll = (tradingday.check_tz(day_roll_tz), tradingday.roll_minutes(day_roll_time))
        self.stream = stream
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.archive_duplicates = archive_duplicates
        self.fsync = fsync
        self._clock = clock
        self._next_batch = first_batch_id
        self._last_arrival = 0
        self._buffers: dict[tuple[str, Any, str | None, int | None], _Buffer] = {}
        self.rows_written = 0
        self.files_written = 0
        self._closed = False

    # ------------------------------------------------------------------ sink protocol
    def submit(
        self,
        result: EventFrames,
        offsets: Mapping[Any, int] | None = None,
        *,
        arrival_ns: int | None = None,
    ) -> None:
        """Buffer one batch: ``ApplyResult`` (applied fills) or ``DecodedBatch`` (all fills).

        ``offsets`` (the consumer's next offsets) is accepted for the sink protocol; rows
        carry their own provenance, so it is not needed here.
        """
        if self._closed:
            raise RuntimeError("ArchiveWriter is closed")
        arrival = max(arrival_ns if arrival_ns is not None else self._clock(),
                      self._last_arrival + 1)
        self._last_arrival = arrival
        batch_id = self._next_batch
        self._next_batch += 1
        frames = {"fills": result.fills, "ticks": result.ticks, "rejects": result.rejects}
        dups = getattr(result, "duplicates", None)
        if self.archive_duplicates and isinstance(dups, pl.DataFrame):
            frames["duplicates"] = dups
        for kind, frame in frames.items():
            if frame.height:
                self._add(kind, frame, batch_id, arrival)
        self._flush_due()

    def flush(self) -> list[Path]:
        """Write every buffer; returns the files written."""
        written = [self._write(buf) for buf in list(self._buffers.values())]
        self._buffers.clear()
        return written

    def close(self) -> None:
        """Flush and refuse further batches."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    # ------------------------------------------------------------------ internals
    def _add(self, kind: str, frame: pl.DataFrame, batch_id: int, arrival: int) -> None:
        schema = KIND_SCHEMAS[kind]
        tagged = frame.with_columns(
            pl.lit(self.stream, pl.String).alias("stream"),
            pl.lit(batch_id, pl.Int64).alias("batch_id"),
            pl.lit(arrival, pl.Int64).alias("arrival_ns"),
        )
        tagged = tagged.select(
            [pl.col(c).cast(t) if c in tagged.columns else pl.lit(None, t).alias(c)
             for c, t in schema.items()]
        ).with_columns(event_date_expr(list(schema), *self.day_roll))
        now = time.monotonic()
        for (day, topic, partition), part in tagged.partition_by(
            ["date", "topic", "partition"], as_dict=True, maintain_order=True
        ).items():
            key = (kind, day, topic, partition)
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = _Buffer(kind, day, topic, partition, now)
            buf.frames.append(part.drop("date"))
            buf.rows += part.height
            if buf.rows >= self.max_rows:
                self._write(self._buffers.pop(key))

    def _flush_due(self) -> None:
        now = time.monotonic()
        for key, buf in list(self._buffers.items()):
            if now - buf.started >= self.max_age_s:
                self._write(self._buffers.pop(key))

    def _write(self, buf: _Buffer) -> Path:
        frame = pl.concat(buf.frames, how="vertical") if len(buf.frames) > 1 else buf.frames[0]
        if buf.topic is not None and buf.partition is not None:
            offsets = frame.get_column("offset")
            name = kafka_file_name(buf.topic, buf.partition, int(offsets.min() or 0),  # type: ignore[arg-type]
                                   int(offsets.max() or 0))  # type: ignore[arg-type]
        else:
            ids = frame.get_column("batch_id")
            name = local_file_name(self.stream, int(ids.min()), int(ids.max()))  # type: ignore[arg-type]
        path = write_atomic(frame, date_dir(self.root, buf.kind, buf.day) / name,
                            fsync=self.fsync)
        self.rows_written += frame.height
        self.files_written += 1
        log.debug("archived %d %s rows to %s", frame.height, buf.kind, path)
        return path


def start_local_archive(
    root: str | Path, engine: PortfolioEngine, stream: str, max_rows: int = DEFAULT_MAX_ROWS
) -> ArchiveWriter:
    """A writer for a deterministic non-Kafka run (the demo, a backtest) of ``engine``.

    It replaces the stream's previous run: the stream's event files are deleted first (end
    of day snapshots built on them become stale and are recomputed by the next ``eod``),
    the engine's settings are recorded (``config.save_engine_config``), and files are cut
    by size only, so the same run writes the same file names.
    """
    removed = remove_stream_files(Path(root), stream)
    if removed:
        log.info("archive: replaced %d files of the previous %r run under %s", removed,
                 stream, root)
    save_engine_config(root, engine)
    return ArchiveWriter(root, stream=stream, max_rows=max_rows, max_age_s=float("inf"),
                         day_roll_tz=engine.config.day_roll_tz,
                         day_roll_time=engine.config.day_roll_time)
