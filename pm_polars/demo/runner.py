"""End-to-end demo: synthetic feed -> PortfolioEngine micro-batches -> tables and snapshots.

Progress and a compact live summary are logged about every ``refresh_s`` seconds; the final
portfolio table goes to ``out`` (stdout in the CLI). Outputs under ``<data_dir>/demo/``:

* ``snapshot/``           engine state (``Snapshot.read`` + ``PortfolioEngine.restore``)
* ``positions.parquet``   ``eng.positions()`` at the end of the run
* ``portfolios.parquet``  ``eng.portfolios()`` (strategy portfolios, no Overall rows)
* ``rejects.parquet``     every rejected record with its reason

With ``archive_root`` every batch's result is also archived there (stream ``demo``, see
``pm_polars.archive``), replacing the previous demo run's archive, so ``pm-polars eod`` /
``report`` and the notebooks can read the run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from pm_polars import PortfolioEngine
from pm_polars.archive.writer import start_local_archive
from pm_polars.demo import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EVENTS,
    DEFAULT_SEED,
    DEFAULT_STARTING_CASH,
)
from pm_polars.demo.catalog import instruments_frame
from pm_polars.demo.feed import FeedStats, generate_batches
from pm_polars.demo.summary import format_live_summary, format_portfolio_table, table_order

log = logging.getLogger(__name__)



@dataclass
class DemoResult:
    """Counters, timings and final frames of one demo run."""

    events: int = 0
    batches: int = 0
    fills_applied: int = 0
    ticks_applied: int = 0
    duplicates: int = 0
    rejects: int = 0
    elapsed_s: float = 0.0
    engine_s: float = 0.0
    feed: FeedStats = field(default_factory=FeedStats)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    portfolios: pl.DataFrame = field(default_factory=pl.DataFrame)
    aum: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path(".")

    @property
    def events_per_s(self) -> float:
        """End-to-end throughput (feed generation included)."""
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def engine_events_per_s(self) -> float:
        """Throughput of ``PortfolioEngine.apply`` alone."""
        return self.events / self.engine_s if self.engine_s > 0 else 0.0


def _count(value: pl.DataFrame | int) -> int:
    """Row count of a result frame (or the number itself)."""
    return value.height if isinstance(value, pl.DataFrame) else int(value)


def _progress(res: DemoResult, total: int, started: float) -> str:
    rate = res.events / max(time.perf_counter() - started, 1e-9)
    return (
        f"batch {res.batches}: {res.events:,}/{total:,} events ({rate:,.0f} ev/s) "
        f"fills {res.fills_applied:,} ticks {res.ticks_applied:,} "
        f"duplicates {res.duplicates:,} rejects {res.rejects:,}"
    )


def _count_reasons(res: DemoResult, rejects: pl.DataFrame) -> None:
    if rejects.height == 0 or "reason" not in rejects.columns:
        return
    # reasons may embed values ("quantity must be > 0, got -75"): count by the leading words
    keys = rejects.get_column("reason").cast(pl.String).str.split(":").list.first()
    for key in keys.to_list():
        label = str(key)[:80]
        res.reject_reasons[label] = res.reject_reasons.get(label, 0) + 1


def write_outputs(eng: PortfolioEngine, rejects: list[pl.DataFrame], out_dir: Path) -> None:
    """Write the snapshot directory and the Parquet views of the final state."""
    out_dir.mkdir(parents=True, exist_ok=True)
    eng.snapshot().write(out_dir / "snapshot")
    eng.positions().write_parquet(out_dir / "positions.parquet")
    eng.portfolios().write_parquet(out_dir / "portfolios.parquet")
    frames = [r for r in rejects if r.height]
    if frames:
        pl.concat(frames, how="vertical_relaxed").write_parquet(out_dir / "rejects.parquet")
    else:
        (out_dir / "rejects.parquet").unlink(missing_ok=True)


def run_demo(
    events: int = DEFAULT_EVENTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    data_dir: str | Path = "data",
    *,
    starting_cash: float = DEFAULT_STARTING_CASH,
    refresh_s: float = 0.5,
    top: int = 3,
    out: TextIO | None = None,
    archive_root: str | Path | None = None,
) -> DemoResult:
    """Run ``events`` synthetic events through a fresh engine in batches of ``batch_size``.

    Returns the counters and the final portfolio table (strategy + Overall rows); writes
    the outputs listed in the module docstring under ``<data_dir>/demo``; writes the final
    table to ``out`` when given.
    """
    res = DemoResult(output_dir=Path(data_dir) / "demo")
    eng = PortfolioEngine(starting_cash=starting_cash, instruments=instruments_frame())
    rejects: list[pl.DataFrame] = []
    archive = None if archive_root is None else start_local_archive(archive_root, eng, "demo")
    log.info("demo: %s events, batch %s, seed %s -> %s", f"{events:,}", f"{batch_size:,}",
             seed, res.output_dir)
    started = time.perf_counter()
    next_report = started + refresh_s
    reported_batches = 0
    for batch in generate_batches(seed, events, batch_size, stats=res.feed):
        t0 = time.perf_counter()
        result = eng.apply(batch)
        res.engine_s += time.perf_counter() - t0
        if archive is not None:
            archive.submit(result)
        res.batches += 1
        res.events += len(batch)
        res.fills_applied += result.fills_applied
        res.ticks_applied += result.ticks_applied
        res.duplicates += _count(result.duplicates)
        res.rejects += result.rejects.height
        if result.rejects.height:
            rejects.append(result.rejects)
            _count_reasons(res, result.rejects)
        if time.perf_counter() >= next_report:
            log.info(_progress(res, events, started))
            log.info("live:\n%s", format_live_summary(eng.portfolios(), eng.aum(), top))
            next_report = time.perf_counter() + refresh_s
            reported_batches = res.batches
    res.elapsed_s = time.perf_counter() - started
    if res.batches != reported_batches:
        log.info(_progress(res, events, started))
    log.info(
        "processed %s events in %.2f s: %s ev/s end-to-end, %s ev/s in engine.apply",
        f"{res.events:,}", res.elapsed_s, f"{res.events_per_s:,.0f}",
        f"{res.engine_events_per_s:,.0f}",
    )
    log.info(
        "feed injected %s duplicates and %s malformed records; engine saw %s duplicates "
        "and %s rejects", res.feed.duplicates, res.feed.malformed, res.duplicates, res.rejects
    )
    for reason, n in sorted(res.reject_reasons.items(), key=lambda kv: -kv[1]):
        log.info("  reject x%d: %s", n, reason)
    write_outputs(eng, rejects, res.output_dir)
    log.info("wrote snapshot and parquet files to %s", res.output_dir)
    if archive is not None:
        archive.close()
        log.info("archived %s rows in %d files under %s", f"{archive.rows_written:,}",
                 archive.files_written, archive_root)
    res.portfolios = table_order(eng.portfolios(aggregates=True))
    res.aum = dict(eng.aum())
    if out is not None:
        out.write(format_portfolio_table(res.portfolios, res.aum) + "\n")
        out.flush()
    return res
