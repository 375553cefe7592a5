"""Where the archive keeps what: directory layout, file names, archive columns, atomic writes.

Layout under the archive root (default ``data/archive``)::

    fills/date=YYYY-MM-DD/<name>.parquet       fills the engine applied (duplicates excluded)
    ticks/date=YYYY-MM-DD/<name>.parquet       every tick received
    rejects/date=YYYY-MM-DD/<name>.parquet     invalid records, raw bytes and ``reason``
    duplicates/date=YYYY-MM-DD/<name>.parquet  fills ignored as redeliveries (audit only)
    snapshots/{positions,portfolios,trips}/date=D/...   end-of-day tables (``pm_polars.eod``)
    snapshots/state/date=D/                    engine state at the end of D (``Snapshot``)
    engine.json, instruments.parquet           engine settings used to rebuild state

``date`` is the trading day of the event ``ts`` under the engine's roll settings
(``engine.tradingday``; recorded in ``engine.json``; the daemon's and the replay writers
use the engine's, a bare ``ArchiveWriter`` UTC); events without ``ts`` (rejects, some
non-Kafka input) use the day of their arrival. The date lives only in the directory name (hive partitioning).

File names carry the range of the rows they hold, so they are derived from the data alone and
a re-run that archives the same events writes the same name (an atomic overwrite):

* Kafka events: ``{topic}-p{partition}-o{first_offset:012d}-{last_offset:012d}.parquet``
* other events (demo, notebooks): ``{stream}-b{first_batch:012d}-{last_batch:012d}.parquet``

Every archived row carries, besides its event columns, ``stream`` (the writer's name),
``batch_id`` (the writer's batch counter) and ``arrival_ns`` (ns UTC when the writer received
the batch, strictly increasing per writer). The arrival order of the original events is
``(arrival_ns, batch_id, seq)``; Kafka offsets grow with it within a partition.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pm_polars.engine import tradingday
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA
from pm_polars.types import KINDS, RECORD_ID

DAY_NS = 86_400 * 10**9

ARCHIVE_COLUMNS: dict[str, pl.DataType] = {
    "stream": pl.String(),
    "batch_id": pl.Int64(),
    "arrival_ns": pl.Int64(),
}

_EVENT_SCHEMAS = {"fills": FILL_SCHEMA, "ticks": TICK_SCHEMA, "rejects": REJECT_SCHEMA,
                  "duplicates": FILL_SCHEMA}
KIND_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    kind: {**_EVENT_SCHEMAS[kind], **ARCHIVE_COLUMNS} for kind in KINDS
}
ORDER = ["arrival_ns", "batch_id", "seq"]
KAFKA_KEY = list(RECORD_ID)
LOCAL_KEY = ["stream", "batch_id", "seq"]

_KAFKA_NAME = re.compile(r"^(?P<topic>.+)-p(?P<part>-?\d+)-o(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_LOCAL_NAME = re.compile(r"^(?P<stream>.+)-b(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, order=True)
class FileRange:
    """What a file name says: its group (topic/partition or stream) and row range."""

    group: str  # "topic-pN" for Kafka, "stream" otherwise
    first: int
    last: int
    path: Path


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    return _SAFE.sub("_", text) or "_"


def kafka_file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{safe_name(topic)}-p{partition}-o{first:012d}-{last:012d}.parquet"


def local_file_name(stream: str, first_batch: int, last_batch: int) -> str:
    return f"{safe_name(stream)}-b{first_batch:012d}-{last_batch:012d}.parquet"


def parse_file_name(path: Path) -> FileRange | None:
    """The range encoded in an archive file name, ``None`` for foreign files."""
    m = _KAFKA_NAME.match(path.name)
    if m:
        group = f"{m['topic']}-p{m['part']}"
        return FileRange(group, int(m["first"]), int(m["last"]), path)
    m = _LOCAL_NAME.match(path.name)
    if m:
        return FileRange(m["stream"], int(m["first"]), int(m["last"]), path)
    return None


def remove_stream_files(root: Path, stream: str) -> int:
    """Delete every event file of the non-Kafka ``stream`` (all kinds and dates)."""
    removed = 0
    for kind in KIND_SCHEMAS:
        for path in Path(root).glob(f"{kind}/date=*/{safe_name(stream)}-b*.parquet"):
            if _LOCAL_NAME.match(path.name):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def date_dir(root: Path, kind: str, day: date) -> Path:
    return Path(root) / kind / f"date={day.isoformat()}"


def list_dates(root: Path, kind: str) -> list[date]:
    """Dates that have a partition directory for ``kind``, ascending."""
    base = Path(root) / kind
    if not base.is_dir():
        return []
    days = []
    for entry in base.iterdir():
        if entry.is_dir() and entry.name.startswith("date="):
            try:
                days.append(date.fromisoformat(entry.name[5:]))
            except ValueError:
                continue
    return sorted(days)


def data_files(directory: Path) -> list[Path]:
    """Finished Parquet files of one partition (temp and hidden files excluded), sorted."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir()
        if p.name.endswith(".parquet") and not p.name.startswith(".") and p.is_file()
    )


def has_overlaps(files: list[Path]) -> bool:
    """True when two files of one group cover overlapping ranges (re-archived events).

    Overlaps appear when a consumer re-delivers offsets after a crash with different batch
    boundaries; readers then deduplicate by event identity and ``compact`` removes them.
    Files with foreign names count as overlapping, to be safe.
    """
    ranges = [parse_file_name(p) for p in files]
    if any(r is None for r in ranges):
        return True
    last_by_group: dict[str, int] = {}
    for r in sorted(x for x in ranges if x is not None):
        if r.group in last_by_group and r.first <= last_by_group[r.group]:
            return True
        last_by_group[r.group] = r.last
    return False


def event_date_expr(columns: list[str], tz: str = "UTC", minutes: int = 0) -> pl.Expr:
    """Trading day (``engine.tradingday``: ``tz``, day starting ``minutes`` after local
    midnight) of the event ``ts`` (when the frame has one), else of ``arrival_ns``."""
    ns = pl.coalesce("ts", "arrival_ns") if "ts" in columns else pl.col("arrival_ns")
    if tz == "UTC" and not minutes:
        return (ns // DAY_NS).cast(pl.Int32).cast(pl.Date).alias("date")
    return tradingday.day_expr(ns, tz, minutes).cast(pl.Date).alias("date")


def write_atomic(frame: pl.DataFrame, path: Path, *, fsync: bool = True) -> Path:
    """Write ``frame`` to ``path`` so that readers see the whole file or nothing.

    The data goes to a hidden temp file (``.<name>.<uuid>.tmp``, ignored by every reader
    because it does not end in ``.parquet``) in the same directory, is fsynced, and is then
    renamed over ``path``. An exception removes the temp file; a crash may leave it behind
    (``compact`` sweeps old ones).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    return path
