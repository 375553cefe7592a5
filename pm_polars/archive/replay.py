"""Rebuild engine state from the archive by re-applying fills and ticks in arrival order.

Arrival order is ``(arrival_ns, seq)`` (see ``layout``). Fills and ticks live in separate
files, so both are given one global order key ``batch_rank * 2**32 + seq`` (the batch's rank
by arrival time among all batches, then the event's position in it) and applied in chunks of
whole batches; the key becomes the events' ``seq``, which is all the engine needs (it is
batch-size invariant). A full replay walks the archive in arrival windows, so a month of
events never has to fit in memory at once. Archived fills are the fills the engine applied,
so a replay of the whole archive gives the live state; rejects and duplicates never changed
state and are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from pm_polars.archive import reader
from pm_polars.archive.config import new_engine
from pm_polars.archive.layout import has_overlaps
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import (
    FILL_SCHEMA,
    PROVENANCE_SCHEMA,
    REJECT_SCHEMA,
    TICK_SCHEMA,
    empty,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK_EVENTS = 10_000_000
_SEQ_BITS = 32


@dataclass(frozen=True)
class OrderedEvents:
    """Fills and ticks of some dates, each sorted by the global key held in ``seq``."""

    fills: pl.DataFrame  # FILL_SCHEMA, seq = global order key
    ticks: pl.DataFrame  # TICK_SCHEMA, seq = global order key

    @property
    def events(self) -> int:
        return self.fills.height + self.ticks.height


@dataclass(frozen=True)
class Window:
    """Events that arrived in ``(after, upto]`` (ns UTC) and the files that may hold them."""

    after: int
    upto: int
    files: dict[str, list[Path]]


def load_ordered(
    root: str | Path,
    days: Iterable[date] | None = None,
    until_ns: int | None = None,
    window: Window | None = None,
) -> OrderedEvents:
    """Fills and ticks of ``days`` (all when None), or of an arrival ``window``, with event
    time <= ``until_ns``.

    Events without ``ts`` are filtered by their arrival time instead. Kafka provenance is
    not read (the engine does not use it): those columns come back null. Batches are ranked
    by ``arrival_ns``, which each writer makes strictly increasing.
    """
    days = None if days is None else list(days)
    frames = []
    for kind, schema in (("fills", FILL_SCHEMA), ("ticks", TICK_SCHEMA)):
        wanted = [c for c in schema if c not in PROVENANCE_SCHEMA]
        files = None if window is None else window.files[kind]
        lf = reader.scan(root, kind, days, [*wanted, "arrival_ns"], files=files)
        if window is not None:
            lf = lf.filter(pl.col("arrival_ns").is_between(window.after, window.upto,
                                                           closed="right"))
        if until_ns is not None:
            lf = lf.filter(pl.coalesce("ts", "arrival_ns") <= until_ns)
        frames.append(lf)
    fills, ticks = pl.collect_all(frames)
    arrivals = pl.concat([fills.get_column("arrival_ns"), ticks.get_column("arrival_ns")])
    arrivals = arrivals.unique().sort()

    def keyed(f: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        rank = arrivals.search_sorted(f.get_column("arrival_ns"), side="left").cast(pl.Int64)
        key = (rank * 2**_SEQ_BITS + f.get_column("seq")).alias("seq")
        return f.with_columns(key).sort("seq").select(
            [pl.col(c) if c in f.columns else pl.lit(None, t).alias(c) for c, t in schema.items()]
        )

    return OrderedEvents(keyed(fills, FILL_SCHEMA), keyed(ticks, TICK_SCHEMA))


def chunks(events: OrderedEvents, chunk_events: int) -> Iterator[DecodedBatch]:
    """Split ``events`` into decoded batches of about ``chunk_events`` events, whole batches."""
    f_seq, t_seq = events.fills.get_column("seq"), events.ticks.get_column("seq")
    per_batch = (
        pl.concat([f_seq, t_seq]).alias("seq").to_frame()
        .group_by(pl.col("seq") // 2**_SEQ_BITS).len().sort("seq")
    )
    edges = per_batch.with_columns(
        (pl.col("len").cum_sum() // max(chunk_events, 1)).alias("chunk")
    ).group_by("chunk", maintain_order=True).agg(pl.col("seq").last())
    rejects = empty(REJECT_SCHEMA)
    f_lo = t_lo = 0
    for last_rank in edges.get_column("seq").to_list():
        bound = pl.Series([(last_rank + 1) * 2**_SEQ_BITS], dtype=pl.Int64)
        f_hi = int(f_seq.search_sorted(bound, side="left")[0])
        t_hi = int(t_seq.search_sorted(bound, side="left")[0])
        yield DecodedBatch(
            fills=events.fills.slice(f_lo, f_hi - f_lo),
            ticks=events.ticks.slice(t_lo, t_hi - t_lo),
            rejects=rejects,
        )
        f_lo, t_lo = f_hi, t_hi


def apply_ordered(
    engine: PortfolioEngine,
    events: OrderedEvents,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    label: str = "replay",
) -> None:
    """Apply ``events`` to ``engine`` in order, logging progress per chunk."""
    total, done, started = events.events, 0, time.perf_counter()
    for batch in chunks(events, chunk_events):
        engine.apply_decoded(batch)
        done += batch.fills.height + batch.ticks.height
        rate = done / max(time.perf_counter() - started, 1e-9)
        log.info("%s: %s/%s events applied (%s ev/s)", label, f"{done:,}", f"{total:,}",
                 f"{rate:,.0f}")


def arrival_windows(
    root: str | Path, days: Iterable[date], chunk_events: int
) -> list[Window] | None:
    """Consecutive arrival windows of about ``chunk_events`` archived events each.

    Files are written in arrival order, so each covers a narrow arrival range (read from its
    footer) and a window reads only the files that overlap it. ``None`` when the archive has
    overlapping files (re-archived events): their duplicates can only be told apart by
    looking at all of them at once.
    """
    stats: dict[str, list[reader.FileStats]] = {}
    for kind in reader.STATE_KINDS:
        by_date = reader.files_by_date(Path(root), kind, days)
        if any(has_overlaps(fs) for fs in by_date.values()):
            return None
        stats[kind] = [reader.file_stats(f) for fs in by_date.values() for f in fs]
    every = sorted((s for ss in stats.values() for s in ss), key=lambda s: s.last_arrival)
    cuts: list[int] = []
    rows = 0
    for s in every:
        rows += s.rows
        if rows >= chunk_events and (not cuts or s.last_arrival > cuts[-1]):
            cuts.append(s.last_arrival)
            rows = 0
    if every and (not cuts or cuts[-1] < every[-1].last_arrival):
        cuts.append(every[-1].last_arrival)
    windows, after = [], -1
    for upto in cuts:
        files = {k: [s.path for s in ss if s.last_arrival > after and s.first_arrival <= upto]
                 for k, ss in stats.items()}
        windows.append(Window(after, upto, files))
        after = upto
    return windows


def replay(
    root: str | Path,
    *,
    until_ns: int | None = None,
    engine: PortfolioEngine | None = None,
    starting_cash: float | None = None,
    instruments: pl.DataFrame | str | Path | None = None,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    cost_basis: str | None = None,
) -> PortfolioEngine:
    """An engine holding the state after every archived event (event time <= ``until_ns``).

    Events are applied in arrival order across all dates, one arrival window of about
    ``chunk_events`` events at a time (bounded memory). An archive with overlapping files is
    read whole (run ``pm-polars compact`` first for a large one). ``engine`` (default: a
    fresh one with the archive's recorded settings, see ``config.new_engine``; ``cost_basis``
    rebooks under another method, e.g. FIFO tax lots of an average-cost desk) is updated in
    place and returned.
    """
    eng = engine if engine is not None else new_engine(
        root, starting_cash=starting_cash, instruments=instruments, cost_basis=cost_basis
    )
    until_day = None if until_ns is None else datetime.fromtimestamp(until_ns // 10**9, UTC).date()
    days = [d for d in reader.archive_dates(root) if until_day is None or d <= until_day]
    windows = arrival_windows(root, days, chunk_events)
    if windows is None:
        log.warning("replay: %s has re-archived (overlapping) files; reading it whole to "
                    "drop their duplicates (`pm-polars compact` avoids this)", root)
    log.info("replay: %d archive dates from %s in %s", len(days), root,
             "one pass" if windows is None else f"{len(windows)} arrival windows")
    for k, window in enumerate(windows if windows is not None else [None]):
        events = load_ordered(root, days, until_ns, window)
        label = "replay" if windows is None else f"replay window {k + 1}/{len(windows)}"
        apply_ordered(eng, events, chunk_events=chunk_events, label=label)
    return eng
