"""Owned fill partitions: one ``PortfolioEngine`` per (topic, partition), loaded from Redis.

Each :class:`OwnedPartition` knows the offset its engine state corresponds to (``offset``:
the stored ``next_offset``, ``None`` if the partition was never written). That value is the
expected value of the checkpoint's compare-and-set, so a write based on an outdated state
is refused. A freshly loaded engine gets the instance's current prices (``TickTable``) and
is marked ``republish`` so its portfolios and contributions are written at the next commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import polars as pl

from pm_polars.daemon.checkpoint import TP, Checkpoint
from pm_polars.daemon.tick_table import TickTable
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.snapshot import Snapshot
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty

log = logging.getLogger(__name__)


@dataclass
class OwnedPartition:
    """A partition this instance owns and the engine holding its state."""

    tp: TP
    engine: PortfolioEngine
    offset: int | None
    known_portfolios: set[str] = field(default_factory=set)
    republish: bool = True


def ticks_only(ticks: pl.DataFrame) -> DecodedBatch:
    return DecodedBatch(empty(FILL_SCHEMA), ticks, empty(REJECT_SCHEMA))


class Partitions:
    """The engines of the owned partitions."""

    def __init__(
        self, checkpoint: Checkpoint, ticks: TickTable, *, starting_cash: float,
        instruments: pl.DataFrame, dedupe_retention_s: float,
    ) -> None:
        self.checkpoint, self.ticks = checkpoint, ticks
        self.starting_cash = starting_cash
        self.instruments = instruments
        self.retention_s = dedupe_retention_s
        self.owned: dict[TP, OwnedPartition] = {}

    def __contains__(self, tp: TP) -> bool:
        return tp in self.owned

    def new_engine(self) -> PortfolioEngine:
        return PortfolioEngine(self.starting_cash, self.instruments, self.retention_s)

    def load(self, tp: TP) -> int | None:
        """Load ``tp`` from Redis (raises ``RedisError``); returns the offset to start at."""
        snap, offset = self.checkpoint.load_partition(
            tp, instruments=self.instruments, starting_cash=self.starting_cash,
            dedupe_retention_ns=int(self.retention_s * 10**9),
        )
        engine = PortfolioEngine.restore(snap) if snap is not None else self.new_engine()
        if self.ticks.table.height:
            engine.apply_decoded(ticks_only(self.ticks.as_ticks()))
        known = set(engine.portfolio_ids())
        self.owned[tp] = OwnedPartition(tp, engine, offset, known)
        log.info("event=partition_loaded partition=%s:%s next_offset=%s portfolios=%d",
                 tp[0], tp[1], offset, len(known))
        return offset

    def drop(self, tps: list[TP]) -> None:
        for tp in tps:
            self.owned.pop(tp, None)

    def snapshots(self) -> dict[TP, Snapshot]:
        """O(1) per partition: the frames are immutable."""
        return {tp: op.engine.snapshot() for tp, op in self.owned.items()}

    def restore(self, snaps: dict[TP, Snapshot]) -> None:
        """Put engines back to ``snaps`` (after a failed commit); dropped ones stay dropped."""
        for tp, snap in snaps.items():
            if tp in self.owned:
                self.owned[tp].engine = PortfolioEngine.restore(snap)

    def any_republish(self) -> bool:
        return any(op.republish for op in self.owned.values())
