"""Exact, self-describing engine state: in memory as Polars frames, on disk as Parquet.

A snapshot directory holds one Parquet file per state table plus ``meta.json``. It is written
to a temporary sibling directory and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

FORMAT_VERSION = 1
TABLES = ("positions", "cash", "marks", "seen", "instruments")


@dataclass(frozen=True)
class Snapshot:
    """All engine state. ``meta`` holds scalars (starting cash, clock, retention, version)."""

    positions: pl.DataFrame
    cash: pl.DataFrame
    marks: pl.DataFrame
    seen: pl.DataFrame
    instruments: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    # (seen, the engine's dedupe index of exactly that frame): restoring a snapshot whose
    # ``seen`` is still that object skips re-indexing (a sort of every id); a snapshot with
    # another ``seen`` (e.g. ``dataclasses.replace``) is re-indexed. Never written to disk.
    seen_index: tuple[pl.DataFrame, Any] | None = field(default=None, repr=False,
                                                        compare=False)

    def write(self, path: str | Path) -> Path:
        """Write atomically to directory ``path`` (replacing it); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        for name in TABLES:
            getattr(self, name).write_parquet(tmp / f"{name}.parquet")
        (tmp / "meta.json").write_text(json.dumps({**self.meta, "format": FORMAT_VERSION}))
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return target

    @classmethod
    def read(cls, path: str | Path) -> Snapshot:
        """Read a snapshot directory written by :meth:`write`."""
        source = Path(path)
        meta_file = source / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{source} is not a pm_polars snapshot (no meta.json)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"snapshot {source} has format {meta.get('format')}, this version reads "
                f"{FORMAT_VERSION}"
            )
        read = {name: pl.read_parquet(source / f"{name}.parquet") for name in TABLES}
        return cls(positions=read["positions"], cash=read["cash"], marks=read["marks"],
                   seen=read["seen"], instruments=read["instruments"], meta=meta)
