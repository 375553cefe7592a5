"""Rebuild engine state from the archive by re-applying fills and ticks in arrival order.

Arrival order is ``(arrival_ns, batch_id, seq)`` (see ``layout``). Fills and ticks live in
separate files, so both are given one global order key ``batch_rank * 2**32 + seq`` (the
batch's rank among all batches, then the event's position in it) and applied in chunks of
whole batches; the key becomes the events' ``seq``, which is all the engine needs (it is
batch-size invariant). Archived fills are the fills the engine applied, so a replay of the
whole archive gives the live state; rejects and duplicates never changed state and are
skipped.
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
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA, empty

log = logging.getLogger(__name__)

DEFAULT_CHUNK_EVENTS = 2_000_000
_SEQ_BITS = 32


@dataclass(frozen=True)
class OrderedEvents:
    """Fills and ticks of some dates, each sorted by the global key held in ``seq``."""

    fills: pl.DataFrame  # FILL_SCHEMA, seq = global order key
    ticks: pl.DataFrame  # TICK_SCHEMA, seq = global order key

    @property
    def events(self) -> int:
        return self.fills.height + self.ticks.height


def load_ordered(
    root: str | Path, days: Iterable[date] | None = None, until_ns: int | None = None
) -> OrderedEvents:
    """Fills and ticks of ``days`` (all when None) with event time <= ``until_ns``.

    Events without ``ts`` are filtered by their arrival time instead.
    """
    days = None if days is None else list(days)
    frames = []
    for kind, schema in (("fills", FILL_SCHEMA), ("ticks", TICK_SCHEMA)):
        lf = reader.scan(root, kind, days, [*schema, "arrival_ns", "batch_id"])
        if until_ns is not None:
            lf = lf.filter(pl.coalesce("ts", "arrival_ns") <= until_ns)
        frames.append(lf)
    fills, ticks = pl.collect_all(frames)
    batch_key = ["arrival_ns", "batch_id"]
    batches = pl.concat([fills.select(batch_key), ticks.select(batch_key)]).unique().sort(batch_key)
    arrivals = batches.get_column("arrival_ns")
    if arrivals.n_unique() == batches.height:  # the usual case: arrival_ns names the batch
        def ranked(f: pl.DataFrame) -> pl.DataFrame:
            rank = arrivals.search_sorted(f.get_column("arrival_ns"), side="left")
            return f.with_columns(rank.cast(pl.Int64).alias("_rank"))
    else:
        table = batches.with_row_index("_rank").with_columns(pl.col("_rank").cast(pl.Int64))

        def ranked(f: pl.DataFrame) -> pl.DataFrame:
            return f.join(table, on=batch_key, how="left")

    def keyed(f: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        key = (pl.col("_rank") * 2**_SEQ_BITS + pl.col("seq")).alias("seq")
        return ranked(f).with_columns(key).sort("seq").select(list(schema))

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


def replay(
    root: str | Path,
    *,
    until_ns: int | None = None,
    engine: PortfolioEngine | None = None,
    starting_cash: float | None = None,
    instruments: pl.DataFrame | str | Path | None = None,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> PortfolioEngine:
    """An engine holding the state after every archived event (event time <= ``until_ns``).

    ``engine`` (default: a fresh one with the archive's recorded settings, see
    ``config.new_engine``) is updated in place and returned.
    """
    eng = engine if engine is not None else new_engine(
        root, starting_cash=starting_cash, instruments=instruments
    )
    until_day = None if until_ns is None else datetime.fromtimestamp(until_ns // 10**9, UTC).date()
    days = reader.archive_dates(root, None)
    if until_day is not None:
        days = [d for d in days if d <= until_day]
    log.info("replay: reading %d archive dates from %s", len(days), root)
    events = load_ordered(root, days, until_ns)
    log.info("replay: %s fills and %s ticks to apply", f"{events.fills.height:,}",
             f"{events.ticks.height:,}")
    apply_ordered(eng, events, chunk_events=chunk_events)
    return eng
