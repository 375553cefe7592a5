"""Apply a decoded batch to the partition engines and build its :class:`CommitPlan`.

Fills go to the engine of their own (topic, partition); the batch's ticks, reduced to one
winner per instrument, go to every engine (every instance needs every price). The plan holds
only what changed: state rows touched by the batch's fills, documents of changed portfolios
(once per batch, never per event), the partitions' aggregate contributions, the winning
prices and every next offset. Engines are mutated here; the caller snapshots them before
and restores them if the commit fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import polars as pl

from pm_polars.daemon.checkpoint import TP, CommitPlan, PartitionCommit
from pm_polars.daemon.decoding import Decoded
from pm_polars.daemon.partitions import OwnedPartition, Partitions
from pm_polars.daemon.state_codec import encode_delta
from pm_polars.daemon.tick_table import price_rows
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty
from pm_polars.publish.contributions import aum_contribution, overall_contributions


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch did (handed to sinks). Frames follow ``events.schema``."""

    fills: pl.DataFrame  # applied fills, all partitions
    ticks: pl.DataFrame  # valid ticks received
    rejects: pl.DataFrame
    duplicates: pl.DataFrame
    changed_portfolios: list[str] = field(default_factory=list)
    written_ns: int = 0


@dataclass
class Applied:
    """A plan plus the per-partition facts the caller needs after a successful commit."""

    plan: CommitPlan
    result: BatchResult
    new_portfolios: dict[TP, list[str]]


def _split_by_partition(fills: pl.DataFrame) -> dict[TP, pl.DataFrame]:
    if fills.height == 0:
        return {}
    parts = fills.partition_by("topic", "partition", as_dict=True, maintain_order=True)
    return {(str(k[0]), int(k[1])): v for k, v in parts.items()}


def apply_batch(
    decoded: Decoded,
    partitions: Partitions,
    next_offsets: dict[TP, int],
    tick_offsets: dict[int, int],
) -> Applied:
    """Apply ``decoded`` to every owned engine and return the commit plan."""
    now = time.time_ns()
    reduced = partitions.ticks.reduce(decoded.ticks)
    wins = partitions.ticks.merge(reduced)
    by_tp = _split_by_partition(decoded.fills)
    plan = CommitPlan(partitions=[], prices=price_rows(wins), tick_offsets=dict(tick_offsets),
                      ts_ns=now)
    applied, dups, changed_all = [], [], set()
    new_pids: dict[TP, list[str]] = {}
    for tp, op in partitions.owned.items():
        fills = by_tp.get(tp, empty(FILL_SCHEMA))
        consumed = tp in next_offsets
        if not consumed and reduced.height == 0 and not op.republish:
            continue
        res = op.engine.apply_decoded(DecodedBatch(fills, reduced, empty(REJECT_SCHEMA)))
        applied.append(res.fills)
        dups.append(res.duplicates)
        changed = set(res.changed_portfolios)
        if op.republish:
            changed.update(op.engine.portfolio_ids())
        pc = _partition_commit(op, res.fills, changed, next_offsets.get(tp), now)
        if pc is None:
            continue
        plan.partitions.append(pc)
        new_pids[tp] = pc.new_portfolios
        changed_all.update(changed)
    result = BatchResult(
        fills=pl.concat(applied) if applied else empty(FILL_SCHEMA),
        ticks=decoded.ticks,
        rejects=decoded.rejects,
        duplicates=pl.concat(dups) if dups else empty(FILL_SCHEMA),
        changed_portfolios=sorted(changed_all),
        written_ns=now,
    )
    return Applied(plan, result, new_pids)


def _partition_commit(
    op: OwnedPartition, fills: pl.DataFrame, changed: set[str], next_offset: int | None,
    now: int,
) -> PartitionCommit | None:
    if next_offset is None and not changed:
        return None
    engine = op.engine
    delta = None
    if next_offset is not None:
        delta = encode_delta(engine.snapshot(), fills, next_offset, now)
    pc = PartitionCommit(tp=op.tp, expected_offset=op.offset, delta=delta)
    if changed:
        pc.documents = engine.portfolio_documents(sorted(changed))
        pc.overall_parts = overall_contributions(engine)
        pc.aum_part = aum_contribution(engine)
    fresh = set(fills.get_column("portfolio_id").unique().to_list()) if fills.height else set()
    pc.new_portfolios = sorted(fresh - op.known_portfolios)
    return pc
