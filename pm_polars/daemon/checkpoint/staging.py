"""Write-ahead staging of archive rows: made durable before a batch's Redis commit.

Parquet files want many rows, a batch has few, and an archive that misses nothing must hold
a batch's events *before* the EXEC that moves its offsets. So each batch is appended to a
small log (a *segment*) and fsynced; Parquet files are cut from memory later (see
``pm_polars.archive.sink``), and a segment is deleted once its rows are in Parquet files.

Segments live in ``<archive root>/.staging/<group>/`` (hidden: archive readers never look
there). A running daemon holds an exclusive ``flock`` on its own segment; a segment nobody
holds belongs to a daemon that died, and the next daemon of the group recovers it.

Record layout (one per staged batch attempt)::

    b"PMS1" | header length u32 | payload length u32 | crc32(header + payload) u32
    | header JSON {"batch": n, "arrival_ns": ns, "kinds": [[kind, nbytes], ...]}
    | payload: one Arrow IPC stream per kind, in header order

A crash in the middle of an append leaves a torn last record; its length or checksum does
not match, so it and anything after it is ignored (that batch was not committed either).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from pm_polars.archive.layout import safe_name
from pm_polars.types import RECORD_ID, TP

MAGIC = b"PMS1"
_HEAD = struct.Struct("<4sIII")
SUFFIX = ".seg"


@dataclass(frozen=True)
class Record:
    """One staged batch attempt: its number, arrival time and frames by archive kind."""

    batch: int
    arrival_ns: int
    frames: dict[str, pl.DataFrame]


def staging_dir(root: Path, group: str) -> Path:
    return Path(root) / ".staging" / safe_name(group)


def fsync_dir(path: Path) -> None:
    """Make a rename/create/unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(handle: BinaryIO) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def encode(record: Record) -> bytes:
    """The bytes of one record (header, checksum, IPC streams)."""
    blobs, kinds = [], []
    for kind, frame in record.frames.items():
        buf = io.BytesIO()
        frame.write_ipc_stream(buf, compression="uncompressed")
        blobs.append(buf.getvalue())
        kinds.append([kind, len(blobs[-1])])
    header = json.dumps({"batch": record.batch, "arrival_ns": record.arrival_ns,
                         "kinds": kinds}).encode()
    payload = b"".join(blobs)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return _HEAD.pack(MAGIC, len(header), len(payload), crc) + header + payload


def decode_all(data: bytes) -> Iterator[Record]:
    """Records of a segment's bytes, up to the first torn or corrupt one."""
    pos = 0
    while pos + _HEAD.size <= len(data):
        magic, hlen, plen, crc = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        end = start + hlen + plen
        if magic != MAGIC or end > len(data):
            return
        header, payload = data[start:start + hlen], data[start + hlen:end]
        if zlib.crc32(payload, zlib.crc32(header)) != crc:
            return
        meta = json.loads(header)
        frames, at = {}, 0
        for kind, size in meta["kinds"]:
            frames[kind] = pl.read_ipc_stream(io.BytesIO(payload[at:at + size]))
            at += size
        yield Record(int(meta["batch"]), int(meta["arrival_ns"]), frames)
        pos = end


class Segment:
    """This process's open segment (locked); ``append`` returns once the record is durable."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        self.fsync = fsync
        self.records = 0
        self.broken = False
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if not _lock(self._file):  # a fresh unique name: cannot be held by anyone else
            raise RuntimeError(f"cannot lock new staging segment {self.path}")
        if fsync:
            fsync_dir(directory)

    def append(self, record: Record) -> None:
        """Append and fsync; on failure (disk full...) cut the torn record off again."""
        data = encode(record)
        start = self._file.tell()
        try:
            self._file.write(data)
            self._file.flush()
            if self.fsync:
                os.fdatasync(self._file.fileno())
        except BaseException:
            self._truncate(start)
            raise
        self.records += 1

    def _truncate(self, size: int) -> None:
        try:
            self._file.seek(size)
            self._file.truncate(size)
        except OSError:  # the next records would be unreadable behind a torn one
            self.broken = True

    def close(self, delete: bool) -> None:
        """Release the lock; ``delete`` removes the file (its rows are in Parquet now)."""
        if delete:
            self.path.unlink(missing_ok=True)
        self._file.close()


class Orphan:
    """A segment left by a dead daemon, locked by us while it is recovered."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path, self._handle = path, handle

    def records(self) -> list[Record]:
        self._handle.seek(0)
        return list(decode_all(self._handle.read()))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._handle.close()

    def release(self) -> None:
        self._handle.close()


def orphans(directory: Path) -> list[Orphan]:
    """Segments under ``directory`` that no live process holds, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime):
        handle = open(path, "rb")  # noqa: SIM115 - owned by the Orphan
        if _lock(handle):
            found.append(Orphan(path, handle))
        else:
            handle.close()
    return found


def committed_only(attempts: list[Record], committed: Mapping[TP, int | None]) -> list[Record]:
    """The rows of ``attempts`` below their partition's committed offset, each event once.

    ``attempts`` are staged records in staging order (retries of one batch repeat rows);
    the last copy of an event wins. Records left without rows are dropped.
    """
    if not attempts:
        return []
    limits = pl.DataFrame(
        [(t, p, o) for (t, p), o in committed.items() if o is not None],
        schema={"topic": pl.String, "partition": pl.Int32, "_limit": pl.Int64}, orient="row",
    )
    ids = []
    for i, rec in enumerate(attempts):
        for kind, frame in rec.frames.items():
            ids.append(frame.select(*RECORD_ID).with_row_index("_row").with_columns(
                pl.lit(i).alias("_rec"), pl.lit(kind).alias("_kind")))
    if not ids:
        return []
    keep = (
        pl.concat(ids).join(limits, on=["topic", "partition"], how="inner")
        .filter(pl.col("offset") < pl.col("_limit"))
        .unique(list(RECORD_ID), keep="last", maintain_order=True)
        .select("_rec", "_kind", "_row")
    )
    out = []
    for i, rec in enumerate(attempts):
        frames = {}
        for kind, frame in rec.frames.items():
            rows = keep.filter((pl.col("_rec") == i) & (pl.col("_kind") == kind))
            if rows.height:
                frames[kind] = frame.with_row_index("_row").join(
                    rows.select("_row"), on="_row", how="semi").drop("_row")
        if frames:
            out.append(Record(rec.batch, rec.arrival_ns, frames))
    return out
