"""The instance's book: ONE ``PortfolioEngine`` holding every owned fill partition.

State is owned per partition (Redis keeps each partition's rows and next offset apart), but
the engine is shared, so a micro-batch costs one columnar apply however many partitions it
spans. ``owner`` maps every portfolio held to its partition; a portfolio belongs to exactly
one partition (producers key fills by ``portfolio_id``), and fills of it arriving on another
partition are refused (see ``processor``), so partitions' rows never mix.

* ``load(tps)``: each partition's snapshot from Redis is merged into the engine (positions,
  cash and seen ids are disjoint; marks keep the latest tick and latest fill per instrument),
  then the instance's price table is applied. The partition's stored ``next_offset`` is the
  compare-and-set base of its next checkpoint.
* ``drop(tps)``: the partitions' portfolios leave the engine (positions, cash). Their seen
  fill ids stay until retention prunes them: fill ids are unique per source, so they can
  only ever match a redelivery, which the new owner handles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from pm_polars.daemon.checkpoint import TP, Checkpoint
from pm_polars.daemon.tick_table import Prices, TickTable
from pm_polars.engine.engine import ApplyResult, PortfolioEngine
from pm_polars.engine.snapshot import Snapshot
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty

log = logging.getLogger(__name__)


@dataclass
class PartitionInfo:
    """An owned partition: the offset its state is at, and whether to republish it."""

    offset: int | None  # stored next_offset; None = never written
    republish: bool = True


@dataclass(frozen=True)
class BookState:
    """What a failed batch restores (engine frames and the price table; O(1) to take)."""

    engine: Snapshot
    ticks: Prices


def ticks_only(ticks: pl.DataFrame) -> DecodedBatch:
    return DecodedBatch(empty(FILL_SCHEMA), ticks, empty(REJECT_SCHEMA))


def _latest(marks: pl.DataFrame, kind: str) -> pl.DataFrame:
    price, ts = f"{kind}_price", f"{kind}_ts"
    return (
        marks.filter(pl.col(price).is_not_null())
        .sort("instrument_token", ts, nulls_last=False)
        .group_by("instrument_token", maintain_order=True)
        .agg(pl.col(price).last(), pl.col(ts).last())
    )


def merge_snapshots(a: Snapshot, b: Snapshot) -> Snapshot:
    """``a`` plus the partition snapshot ``b`` (disjoint portfolios)."""
    marks = pl.concat([a.marks, b.marks])
    merged_marks = (
        marks.select("instrument_token").unique()
        .join(_latest(marks, "tick"), on="instrument_token", how="left")
        .join(_latest(marks, "fill"), on="instrument_token", how="left")
        .select(a.marks.columns)
    )
    clocks = [c for c in (a.meta.get("clock_ns"), b.meta.get("clock_ns")) if c is not None]
    return Snapshot(
        positions=pl.concat([a.positions, b.positions]).unique(
            ["portfolio_id", "instrument_token"], keep="first", maintain_order=True),
        cash=pl.concat([a.cash, b.cash]).unique("portfolio_id", keep="first",
                                                maintain_order=True),
        marks=merged_marks,
        # an id may be in a snapshot twice (expired, then seen again before a sweep): keep
        # its newest sighting (a null ts never expires), or a redelivery would count as new
        seen=pl.concat([a.seen, b.seen]).sort("ts", descending=True, nulls_last=False)
        .unique(["source", "fill_id"], keep="first", maintain_order=True),
        instruments=a.instruments,
        meta={**a.meta, "clock_ns": max(clocks) if clocks else None},
    )


class Book:
    """Engine + owned partitions + portfolio owners of one daemon instance."""

    def __init__(
        self, checkpoint: Checkpoint, ticks: TickTable, *, starting_cash: float,
        instruments: pl.DataFrame, dedupe_retention_s: float,
    ) -> None:
        self.checkpoint, self.ticks = checkpoint, ticks
        self.starting_cash, self.instruments = starting_cash, instruments
        self.retention_ns = int(dedupe_retention_s * 10**9)
        self.engine = PortfolioEngine(starting_cash, instruments, dedupe_retention_s)
        self.parts: dict[TP, PartitionInfo] = {}
        self.owner: dict[str, TP] = {}
        self._after: tuple[PortfolioEngine, Snapshot] | None = None  # see ``apply``

    def apply(self, batch: DecodedBatch) -> tuple[ApplyResult, Snapshot]:
        """Apply ``batch`` to the engine; its result and the engine's snapshot after it.

        The snapshot is kept: the next :meth:`state` reuses it while ``self.engine`` is still
        that engine (``load``/``drop``/``restore`` replace it), saving a second
        ``engine.snapshot()`` per batch. Only this method (and ``load``, on a new engine)
        may mutate the engine.
        """
        self._after = None
        res = self.engine.apply_decoded(batch)
        snap = self.engine.snapshot()
        self._after = (self.engine, snap)
        return res, snap

    def portfolios_of(self, tps: set[TP]) -> list[str]:
        return sorted(pid for pid, tp in self.owner.items() if tp in tps)

    def load(self, tps: list[TP]) -> dict[TP, int | None]:
        """Load ``tps`` from Redis into the engine (raises ``RedisError``); start offsets."""
        loaded: list[tuple[TP, Snapshot | None, int | None]] = []
        for tp in tps:  # read everything first: a Redis error leaves the book untouched
            snap, offset = self.checkpoint.load_partition(
                tp, instruments=self.instruments, starting_cash=self.starting_cash,
                dedupe_retention_ns=self.retention_ns,
            )
            loaded.append((tp, snap, offset))
        state = self.engine.snapshot()
        for tp, snap, offset in loaded:
            pids = [] if snap is None else snap.cash.get_column("portfolio_id").to_list()
            if snap is not None:
                state = merge_snapshots(state, snap)
            self.parts[tp] = PartitionInfo(offset)
            self.owner.update(dict.fromkeys(pids, tp))
            log.info("event=partition_loaded partition=%s:%s next_offset=%s portfolios=%d",
                     tp[0], tp[1], offset, len(pids))
        self.engine = PortfolioEngine.restore(state)
        if self.ticks.prices:
            self.engine.apply_decoded(ticks_only(self.ticks.as_ticks()))
        return {tp: offset for tp, _, offset in loaded}

    def drop(self, tps: list[TP]) -> None:
        """Forget ``tps``: their portfolios leave the engine."""
        gone = set(tps)
        pids = self.portfolios_of(gone)
        for tp in tps:
            self.parts.pop(tp, None)
        for pid in pids:
            del self.owner[pid]
        if pids:
            snap = self.engine.snapshot()
            keep = ~pl.col("portfolio_id").is_in(pids)
            self.engine = PortfolioEngine.restore(Snapshot(
                positions=snap.positions.filter(keep), cash=snap.cash.filter(keep),
                marks=snap.marks, seen=snap.seen, instruments=snap.instruments,
                meta=snap.meta, seen_index=snap.seen_index,
            ))

    def state(self) -> BookState:
        after = self._after
        snap = after[1] if after is not None and after[0] is self.engine else \
            self.engine.snapshot()
        return BookState(snap, self.ticks.prices)

    def restore(self, state: BookState) -> None:
        """Back to ``state`` after a failed commit (owners and offsets were not touched)."""
        self.engine = PortfolioEngine.restore(state.engine)
        self.ticks.prices = state.ticks

    def any_republish(self) -> bool:
        return any(info.republish for info in self.parts.values())
