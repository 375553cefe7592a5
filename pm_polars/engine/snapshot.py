"""Exact, self-describing engine state: in memory as Polars frames, on disk as Parquet.

A snapshot is an :class:`~pm_polars.engine.state.EngineState` (with ``seen`` as a plain
frame) plus the :class:`~pm_polars.engine.config.EngineConfig` it was built with, so it can
be restored anywhere. A snapshot directory holds one Parquet file per state table plus
``meta.json`` (``clock_ns``, ``trading_day``, ``late_day_events``, ``starting_cash``,
``dedupe_retention_ns``, ``day_roll_tz``, ``day_roll_time``, ``cost_basis``, ``mark``,
``account_currency`` (written only when not the default), ``format`` and
any annotations such as ``eod``). It is written to a temporary sibling directory and renamed
into place, so a reader never sees half of one.
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

from pm_polars.engine import tradingday
from pm_polars.engine.config import (
    DEFAULT_ACCOUNT_CURRENCY,
    DEFAULT_STARTING_CASH,
    EngineConfig,
)
from pm_polars.engine.lots import empty_lots
from pm_polars.engine.state import EngineState

FORMAT_VERSION = 1
TABLES = ("positions", "cash", "marks", "seen", "instruments", "lots")
OPTIONAL = ("lots",)  # absent in snapshots written before FIFO: empty


@dataclass(frozen=True)
class Snapshot:
    """All engine state as frames, its clock and config. ``meta``: annotations only
    (e.g. ``eod``), never state or config."""

    positions: pl.DataFrame
    cash: pl.DataFrame
    marks: pl.DataFrame
    seen: pl.DataFrame
    instruments: pl.DataFrame
    clock_ns: int | None = None
    trading_day: int | None = None
    late_day_events: int = 0
    config: EngineConfig = field(default_factory=EngineConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    lots: pl.DataFrame = field(default_factory=empty_lots)

    @classmethod
    def of(cls, state: EngineState, config: EngineConfig) -> Snapshot:
        """The snapshot of ``state`` (frames are immutable: nothing is copied)."""
        return cls(positions=state.positions, cash=state.cash, marks=state.marks,
                   seen=state.seen.frame(), instruments=state.instruments,
                   clock_ns=state.clock_ns, trading_day=state.trading_day,
                   late_day_events=state.late_day_events, config=config, lots=state.lots)

    def state(self) -> EngineState:
        """The engine state it holds (``seen`` indexed again)."""
        return EngineState.of_frames(self.positions, self.cash, self.marks, self.seen,
                                     self.instruments, self.clock_ns, self.trading_day,
                                     self.late_day_events, self.lots)

    def write(self, path: str | Path) -> Path:
        """Write atomically to directory ``path`` (replacing it); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        for name in TABLES:
            getattr(self, name).write_parquet(tmp / f"{name}.parquet")
        meta = {**self.meta, "clock_ns": self.clock_ns, "trading_day": self.trading_day,
                "late_day_events": self.late_day_events,
                "starting_cash": self.config.starting_cash,
                "dedupe_retention_ns": self.config.dedupe_retention_ns,
                "max_jump_ns": self.config.max_jump_ns, "max_skew_ns": self.config.max_skew_ns,
                "day_roll_tz": self.config.day_roll_tz,
                "day_roll_time": self.config.day_roll_time,
                "cost_basis": self.config.cost_basis,
                "quantity_decimals": self.config.quantity_decimals,
                "mark": self.config.mark, "format": FORMAT_VERSION}
        if self.config.account_currency != DEFAULT_ACCOUNT_CURRENCY:  # absent: the default
            meta["account_currency"] = self.config.account_currency
        (tmp / "meta.json").write_text(json.dumps(meta))
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
        read = {name: pl.read_parquet(source / f"{name}.parquet") for name in TABLES
                if name not in OPTIONAL or (source / f"{name}.parquet").exists()}
        meta.pop("format")
        bounds = {k: meta.pop(k) for k in ("max_jump_ns", "max_skew_ns") if k in meta}
        config = EngineConfig(float(meta.pop("starting_cash", DEFAULT_STARTING_CASH)),
                              meta.pop("dedupe_retention_ns", None), **bounds,
                              day_roll_tz=meta.pop("day_roll_tz", tradingday.DAY_ROLL_TZ),
                              day_roll_time=meta.pop("day_roll_time", tradingday.DAY_ROLL_TIME),
                              cost_basis=meta.pop("cost_basis", "average"),
                              quantity_decimals=int(meta.pop("quantity_decimals", 0)),
                              account_currency=meta.pop("account_currency",
                                                        DEFAULT_ACCOUNT_CURRENCY),
                              mark=meta.pop("mark", "last"))
        return cls(positions=read["positions"], cash=read["cash"], marks=read["marks"],
                   seen=read["seen"], instruments=read["instruments"],
                   clock_ns=meta.pop("clock_ns", None),
                   trading_day=meta.pop("trading_day", None),
                   late_day_events=int(meta.pop("late_day_events", 0)), config=config,
                   meta=meta, lots=read.get("lots", empty_lots()))
