"""End-of-day snapshot files under ``<archive root>/snapshots``.

::

    snapshots/positions/date=D/positions.parquet    ``roll.day_positions`` + open-trip carry
    snapshots/portfolios/date=D/portfolios.parquet  ``roll.day_portfolios`` + fill/trip counts
    snapshots/trips/date=D/trips.parquet            round trips closed on D (``trips``)
    snapshots/state/date=D/                         engine ``Snapshot`` at the end of D

Every file is written atomically; the state directory is written last, so its presence
means the day is complete. Its ``meta.json`` carries ``eod``: the archive fingerprint of every
date it consumed (``reader.fingerprint``), used to tell whether it is still current.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pm_polars.archive.layout import list_dates, write_atomic
from pm_polars.engine.snapshot import Snapshot

SNAPSHOTS = "snapshots"
TABLES = ("positions", "portfolios", "trips")


def table_path(root: str | Path, table: str, day: date) -> Path:
    return Path(root) / SNAPSHOTS / table / f"date={day.isoformat()}" / f"{table}.parquet"


def state_path(root: str | Path, day: date) -> Path:
    return Path(root) / SNAPSHOTS / "state" / f"date={day.isoformat()}"


def write_table(root: str | Path, table: str, day: date, frame: pl.DataFrame) -> Path:
    return write_atomic(frame, table_path(root, table, day))


def read_table(root: str | Path, table: str, day: date) -> pl.DataFrame | None:
    path = table_path(root, table, day)
    return pl.read_parquet(path) if path.exists() else None


def state_dates(root: str | Path) -> list[date]:
    """Dates with a complete end-of-day state, ascending."""
    return [d for d in list_dates(Path(root) / SNAPSHOTS, "state")
            if (state_path(root, d) / "meta.json").exists()]


def read_state(root: str | Path, day: date) -> Snapshot:
    return Snapshot.read(state_path(root, day))


def state_meta(root: str | Path, day: date) -> dict[str, Any]:
    """The ``meta.json`` of ``day``'s state (without reading its tables); {} if none."""
    path = state_path(root, day) / "meta.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def is_current(meta: dict[str, Any], fingerprints: dict[str, list[int]], day: date) -> bool:
    """True when the archive up to ``day`` is what the state with ``meta`` consumed."""
    consumed = meta.get("eod", {}).get("consumed")
    expected = {k: v for k, v in fingerprints.items() if k <= day.isoformat()}
    return bool(consumed == expected)
