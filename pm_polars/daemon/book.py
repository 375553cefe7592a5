"""The instance's book: ONE ``PortfolioEngine`` holding every owned fill partition.

State is owned per partition (Redis keeps each partition's rows and next offset apart), but
the engine is shared, so a micro-batch costs one columnar apply however many partitions it
spans. ``owner`` maps every portfolio held to its partition; a portfolio belongs to exactly
one partition (producers key fills by ``portfolio_id``), and fills of it arriving on another
partition are refused (see ``owners``), so partitions' rows never mix.

* ``load(tps)``: each partition's state from Redis is merged into the engine's
  (``engine.state.merge``: positions, cash and seen ids are disjoint; marks keep the latest
  tick and latest fill per instrument), then the instance's price table is applied. The partition's stored ``next_offset`` is the
  compare-and-set base of its next checkpoint.
* ``drop(tps)``: the partitions' portfolios leave the engine (positions, cash). Their seen
  fill ids stay until retention prunes them: fill ids are unique per source, so they can
  only ever match a redelivery, which the new owner handles.
* ``views`` (``read_model``): the rows each partition last published, and the portfolios
  moved by prices waiting for their tick-publish interval; committed after the EXEC only.
* undo: :meth:`state` before a batch, :meth:`restore` it after a failed commit. States are
  immutable values, so that is keeping the previous one (O(1)).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

import polars as pl

from pm_polars.daemon.alerts import AlertRules, AlertState
from pm_polars.daemon.checkpoint.store import Checkpoint
from pm_polars.daemon.read_model import ReadModel
from pm_polars.daemon.tick_table import Prices, TickTable
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.lot_state import check_cost_basis
from pm_polars.engine.marks import MARK_STATE_SCHEMA
from pm_polars.engine.state import EngineState, merge
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty
from pm_polars.publish.fx_rows import FxFacts
from pm_polars.types import TP, BatchResult

log = logging.getLogger(__name__)


@dataclass
class PartitionInfo:
    """An owned partition: the offset its state is at, and whether to republish it."""

    offset: int | None  # stored next_offset; None = never written
    republish: bool = True


@dataclass(frozen=True)
class BookState:
    """What a failed batch restores: the engine state and the price table (O(1) to take)."""

    engine: EngineState
    ticks: Prices


def ticks_only(ticks: pl.DataFrame) -> DecodedBatch:
    return DecodedBatch(empty(FILL_SCHEMA), ticks, empty(REJECT_SCHEMA))


class Book:
    """Engine + owned partitions + portfolio owners of one daemon instance."""

    def __init__(self, checkpoint: Checkpoint, ticks: TickTable, *, config: EngineConfig,
                 instruments: pl.DataFrame, tick_publish_ns: int = 0,
                 roll: tuple[int, dict[int, float]] | None = None,
                 alerts: AlertRules | None = None) -> None:
        self.checkpoint, self.ticks, self.instruments = checkpoint, ticks, instruments
        self.views = ReadModel(tick_publish_ns)  # published rows; conflated tick republishing
        self.engine = PortfolioEngine(instruments=instruments, config=config)
        # a book in several currencies or with inverse contracts: the publish path converts
        self.fx = FxFacts.of(self.engine.state.instruments, config.account_currency)
        self.parts: dict[TP, PartitionInfo] = {}
        self.owner: dict[str, TP] = {}
        self.alert_rules = alerts
        self.alert_states: dict[str, AlertState] = {}  # committed, per portfolio
        self._seed(roll)

    def _seed(self, roll: tuple[int, dict[int, float]] | None) -> None:
        """Start in the group's last trading day with its prices at the roll
        (``Checkpoint.load_roll``), then the price table: a roll is never redone with
        other prices, whatever partitions this instance owns or loads later."""
        if roll is not None:
            day, prices = roll
            marks = pl.DataFrame(
                {"instrument_token": list(prices), "roll_price": list(prices.values())},
                schema={"instrument_token": pl.Int64, "roll_price": pl.Float64},
            ).select([pl.col(c) if c in ("instrument_token", "roll_price")
                      else pl.lit(None, t).alias(c) for c, t in MARK_STATE_SCHEMA.items()])
            self.engine.state = replace(self.engine.state, marks=marks, trading_day=day)
        self._apply_prices()

    def _apply_prices(self) -> None:
        """The price table into the engine (already counted: late ticks are not again)."""
        if self.ticks.prices:
            late = self.engine.state.late_day_events
            self.engine.apply_decoded(ticks_only(self.ticks.as_ticks()))
            self.engine.state = replace(self.engine.state, late_day_events=late)

    def roll_record(self) -> tuple[int, str] | None:
        """``(trading day, prices at the roll JSON)`` of the engine (for ``pm:day``)."""
        state = self.engine.state
        if state.trading_day is None:
            return None
        rows = state.marks.filter(pl.col("roll_price").is_not_null())
        prices = dict(zip(map(str, rows.get_column("instrument_token").to_list()),
                          rows.get_column("roll_price").to_list(), strict=True))
        return state.trading_day, json.dumps(prices)

    @property
    def config(self) -> EngineConfig:
        return self.engine.config

    def apply(self, batch: DecodedBatch) -> BatchResult:
        """Apply ``batch`` (the engine's pure step); the state after is ``engine.state``."""
        return self.engine.apply_decoded(batch)

    def portfolios_of(self, tps: set[TP]) -> list[str]:
        return sorted(pid for pid, tp in self.owner.items() if tp in tps)

    def load(self, tps: list[TP]) -> dict[TP, int | None]:
        """Load ``tps`` from Redis into the engine (raises ``RedisError``); start offsets."""
        loaded: list[tuple[TP, EngineState | None, int | None]] = []
        alert_rows: dict[str, str] = {}
        for tp in tps:  # read everything first: a Redis error leaves the book untouched
            part, offset = self.checkpoint.load_partition(
                tp, instruments=self.instruments,
                quantity_decimals=self.config.quantity_decimals,
                account_currency=self.config.account_currency, mark=self.config.mark)
            loaded.append((tp, part, offset))
            if self.alert_rules is not None:
                alert_rows.update(self.checkpoint.load_alerts(tp))
        self.alert_states.update({pid: AlertState.from_json(text)
                                  for pid, text in alert_rows.items()})
        state = self.engine.state
        for tp, part, offset in loaded:
            pids = [] if part is None else part.portfolio_ids()
            if part is not None:
                check_cost_basis(part.positions, part.lots, self.config.cost_basis,
                                 f"partition {tp[0]}:{tp[1]}")
                state = merge(state, part)
            self.parts[tp] = PartitionInfo(offset)
            self.views.drop([tp], pids)  # rendered whole by its first batch (republish)
            self.owner.update(dict.fromkeys(pids, tp))
            log.info("event=partition_loaded partition=%s:%s next_offset=%s portfolios=%d",
                     tp[0], tp[1], offset, len(pids))
        self.engine.state = state
        self._apply_prices()
        return {tp: offset for tp, _, offset in loaded}

    def drop(self, tps: list[TP]) -> None:
        """Forget ``tps``: their portfolios leave the engine."""
        gone = set(tps)
        pids = self.portfolios_of(gone)
        for tp in tps:
            self.parts.pop(tp, None)
        for pid in pids:
            del self.owner[pid]
            self.alert_states.pop(pid, None)
        self.views.drop(tps, pids)
        self.engine.state = self.engine.state.without(pids)

    def reset(self) -> list[TP]:
        """Forget every partition, every portfolio and every seen id (the engine starts
        empty); returns the partitions that were owned, to load again. After Redis lost
        acknowledged writes (a failover, or a restart without fsync) the fill ids this
        engine applied beyond a partition's stored offset must not count as seen."""
        tps = sorted(self.parts)
        self.drop(tps)
        self.engine.state = EngineState.empty(self.instruments)
        return tps

    def state(self) -> BookState:
        return BookState(self.engine.state, self.ticks.prices)

    def restore(self, state: BookState) -> None:
        """Back to ``state`` after a failed commit (owners and offsets were not touched)."""
        self.engine.state = state.engine
        self.ticks.prices = state.ticks

    def republish_all(self) -> None:
        """Publish every owned partition whole with the next batch (after a Redis failure
        on a cluster: derived documents a failed master had not yet replicated are
        rewritten, see ``checkpoint.cluster``)."""
        for info in self.parts.values():
            info.republish = True

    def any_republish(self) -> bool:
        return any(info.republish for info in self.parts.values())
