"""Engine settings stored next to the archive, so state can be rebuilt from it alone.

``engine.json`` holds ``starting_cash`` (account currency, credited per portfolio at its
first fill), ``dedupe_retention_ns``, ``cost_basis`` (absent: average cost),
``quantity_decimals`` (absent: 0; with d > 0 the archived fills' ``quantity`` and
``signed_qty`` are atoms of ``10**-d`` units, as the engine books them), ``mark``
(absent: ``"last"``; ``EngineConfig.mark``) and the trading
day (``day_roll_tz``, ``day_roll_time``: the archive's date partitions and end of day use
them); ``instruments.parquet`` the instruments table
(contract multipliers). The process that feeds the archive records them once with
:func:`save_engine_config`; replay and end-of-day build their engines with
:func:`new_engine`, where explicit arguments win over the stored values.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import polars as pl

from pm_polars.archive.layout import write_atomic
from pm_polars.engine import tradingday
from pm_polars.engine.config import (
    DEFAULT_STARTING_CASH,
    EngineConfig,
    QuantityDecimalsMismatch,
)
from pm_polars.engine.engine import PortfolioEngine

log = logging.getLogger(__name__)

CONFIG_FILE = "engine.json"
INSTRUMENTS_FILE = "instruments.parquet"


def save_engine_config(root: str | Path, engine: PortfolioEngine) -> None:
    """Record ``engine``'s starting cash, dedupe retention, event-time jump bound and
    instruments under ``root``.

    Raises ``QuantityDecimalsMismatch`` when the archive already holds fills booked with
    another ``quantity_decimals`` (their atoms would be read at the wrong scale)."""
    base = Path(root)
    stored = load_engine_config(base).get("quantity_decimals", 0)
    wanted = engine.config.quantity_decimals
    if stored != wanted and any((base / "fills").glob("*/*.parquet")):
        raise QuantityDecimalsMismatch(
            f"the archive under {base} holds fills booked with --quantity-decimals {stored} "
            f"(quantities in atoms of 10^-{stored} units) but --quantity-decimals is {wanted}; "
            f"restart with --quantity-decimals {stored}, or archive under another "
            "--archive-root")
    base.mkdir(parents=True, exist_ok=True)
    write_atomic(engine.state.instruments, base / INSTRUMENTS_FILE)
    meta = {
        "starting_cash": engine.config.starting_cash,
        "dedupe_retention_ns": engine.config.dedupe_retention_ns,
        "cost_basis": engine.config.cost_basis,
        "quantity_decimals": engine.config.quantity_decimals,
        "day_roll_tz": engine.config.day_roll_tz,
        "day_roll_time": engine.config.day_roll_time,
        "max_jump_ns": engine.config.max_jump_ns,  # replays judge event time as live did
    }
    if engine.config.mark != "last":
        meta["mark"] = engine.config.mark
    tmp = base / f".{CONFIG_FILE}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, base / CONFIG_FILE)


def roll_settings(root: str | Path) -> tuple[str, int]:
    """The archive's trading day ``(day_roll_tz, minutes after midnight)`` (defaults when
    none was recorded)."""
    meta = load_engine_config(root)
    tz = str(meta.get("day_roll_tz", tradingday.DAY_ROLL_TZ))
    return tz, tradingday.roll_minutes(str(meta.get("day_roll_time", tradingday.DAY_ROLL_TIME)))


def quantity_scale(root: str | Path) -> int:
    """Atoms per unit of the archived fills' quantities (``10**quantity_decimals``; 1 when
    none was recorded)."""
    return int(10 ** int(load_engine_config(root).get("quantity_decimals", 0)))  # type: ignore[call-overload]


def load_engine_config(root: str | Path) -> dict[str, object]:
    """The stored settings (empty when none were recorded)."""
    path = Path(root) / CONFIG_FILE
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def new_engine(
    root: str | Path,
    *,
    starting_cash: float | None = None,
    instruments: pl.DataFrame | str | Path | None = None,
    cost_basis: str | None = None,
) -> PortfolioEngine:
    """A fresh engine with the archive's recorded settings (arguments override them)."""
    meta = load_engine_config(root)
    cash = starting_cash if starting_cash is not None else meta.get("starting_cash")
    if cash is None:
        log.warning("no %s under %s and no starting cash given: using %s", CONFIG_FILE, root,
                    f"{DEFAULT_STARTING_CASH:,.0f}")
        cash = DEFAULT_STARTING_CASH
    inst_file = Path(root) / INSTRUMENTS_FILE
    if instruments is None and inst_file.exists():
        instruments = pl.read_parquet(inst_file)
    retention = meta.get("dedupe_retention_ns", 86_400 * 10**9)
    # the wall-clock bound is never replayed (what it refused live is not in the archive)
    # (an archive recorded before the bound existed was written with none)
    jump = meta.get("max_jump_ns") if meta else EngineConfig().max_jump_ns
    config = EngineConfig(float(cash),  # type: ignore[arg-type]
                          None if retention is None else int(retention),  # type: ignore[call-overload]
                          day_roll_tz=str(meta.get("day_roll_tz", tradingday.DAY_ROLL_TZ)),
                          day_roll_time=str(meta.get("day_roll_time", tradingday.DAY_ROLL_TIME)),
                          cost_basis=cost_basis or str(meta.get("cost_basis", "average")),
                          quantity_decimals=int(meta.get("quantity_decimals", 0)),  # type: ignore[call-overload]
                          mark=str(meta.get("mark", "last")),
                          max_jump_ns=None if jump is None else int(jump))  # type: ignore[call-overload]
    return PortfolioEngine(instruments=instruments, config=config)
