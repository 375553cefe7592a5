"""The checkpoint: a batch's state changes AND its next offsets in ONE Redis MULTI/EXEC.

This is the only module that writes daemon state. Order inside one commit:

1. ``WATCH`` the ``meta`` hash of every partition the batch writes, read each stored
   ``next_offset`` and compare it with the offset the engine's state was loaded at (or last
   committed). A mismatch means another owner (after a rebalance, or our own EXEC whose
   reply was lost) moved the partition on: nothing is written and the caller reloads it.
2. ``MULTI``; per partition: state rows (positions, cash, marks, seen, meta with the new
   ``next_offset``), strategy documents, position hashes, index, ``pm:parts``
   contributions; then the aggregate Lua script (Overall, aum, owners, prices, tick offsets);
   then ``PUBLISH portfolio-updates``; ``EXEC``.

Every write is absolute (row values, max offsets, latest prices), so an EXEC applied twice
leaves the same result. Redis is the source of truth; Kafka commits only follow for lag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import redis

from pm_polars.daemon.state_codec import StateDelta, decode_snapshot
from pm_polars.engine.snapshot import Snapshot
from pm_polars.publish import aggregate_lua
from pm_polars.publish.keys import Keys, part_name
from pm_polars.publish.redis_model import queue_documents, update_message

log = logging.getLogger(__name__)

TP = tuple[str, int]  # (topic, partition)
WATCH_RETRIES = 5


@dataclass
class PartitionCommit:
    """What one batch writes for one owned fill partition."""

    tp: TP
    expected_offset: int | None  # stored next_offset the engine state corresponds to
    delta: StateDelta | None  # None: the partition consumed nothing (tick-only change)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall_parts: dict[str, str] = field(default_factory=dict)  # source -> JSON
    aum_part: str | None = None
    new_portfolios: list[str] = field(default_factory=list)  # owner check


@dataclass
class CommitPlan:
    """Everything one batch writes. ``prices`` items: (token, ts text, price JSON)."""

    partitions: list[PartitionCommit]
    prices: list[tuple[str, str, str]] = field(default_factory=list)
    tick_offsets: dict[int, int] = field(default_factory=dict)
    ts_ns: int = 0

    def is_empty(self) -> bool:
        return not (self.partitions or self.prices or self.tick_offsets)


@dataclass
class CommitOutcome:
    """``stale``: partitions another owner moved on (TP -> stored offset); nothing written."""

    stale: dict[TP, int | None] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return not self.stale


def _offset(value: Any) -> int | None:
    return None if value is None else int(value)


class Checkpoint:
    """Commits :class:`CommitPlan` s and loads partition state, for one consumer group."""

    def __init__(self, client: redis.Redis, keys: Keys, group: str, ticks_topic: str) -> None:
        self.client, self.keys, self.group, self.ticks_topic = client, keys, group, ticks_topic

    def _state(self, tp: TP, table: str) -> str:
        return self.keys.partition_state(self.group, tp[0], tp[1], table)

    # ------------------------------------------------------------------ commit
    def commit(self, plan: CommitPlan) -> CommitOutcome:
        """Write ``plan`` atomically; see the module docstring. Raises ``RedisError``."""
        metas = [self._state(pc.tp, "meta") for pc in plan.partitions]
        for _ in range(WATCH_RETRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    if metas:
                        pipe.watch(*metas)
                    stale = {}
                    for pc, meta in zip(plan.partitions, metas, strict=True):
                        stored = _offset(pipe.hget(meta, "next_offset"))
                        if stored != pc.expected_offset:
                            stale[pc.tp] = stored
                    if stale:
                        pipe.unwatch()
                        return CommitOutcome(stale=stale)
                    pipe.multi()
                    updated = self._queue(pipe, plan)
                    results = pipe.execute()
                except redis.WatchError:
                    log.info("event=checkpoint_watch_retry partitions=%d", len(metas))
                    continue
            conflicts = [str(c) for c in (results[-2] or [])]
            return CommitOutcome(conflicts=conflicts, updated=updated)
        # WATCH kept firing: let the caller re-check ownership on the next attempt
        return CommitOutcome(stale={pc.tp: pc.expected_offset for pc in plan.partitions})

    def _queue(self, pipe: Any, plan: CommitPlan) -> list[str]:
        keys = self.keys
        owners: list[tuple[str, str]] = []
        sources: set[str] = set()
        aum = False
        updated: set[str] = set()
        for pc in plan.partitions:
            if pc.delta is not None:
                self._queue_state(pipe, pc.tp, pc.delta)
            queue_documents(pipe, keys, pc.documents)
            updated.update(pc.documents)
            part = part_name(*pc.tp)
            for source, contribution in pc.overall_parts.items():
                pipe.hset(keys.overall_parts(self.group, source), part, contribution)
                sources.add(source)
            if pc.aum_part is not None:
                pipe.hset(keys.aum_parts(self.group), part, pc.aum_part)
                aum = True
            owners.extend((pid, part) for pid in pc.new_portfolios)
        arg = aggregate_lua.request(
            prefix=keys.prefix, group=self.group, sources=sorted(sources), aum=aum,
            owners=owners, prices=plan.prices,
            tick_offsets_key=keys.tick_offsets(self.ticks_topic),
            tick_offsets=sorted(plan.tick_offsets.items()),
        )
        pipe.eval(aggregate_lua.SCRIPT, 0, arg)
        updated.update(f"{s}_Overall" for s in sources)
        if updated:
            pipe.publish(keys.updates_channel, update_message(updated, plan.ts_ns))
        else:
            pipe.echo("no portfolio changed")  # keeps the EVAL result at index -2
        return sorted(updated)

    def _queue_state(self, pipe: Any, tp: TP, delta: StateDelta) -> None:
        if delta.positions:
            pipe.hset(self._state(tp, "positions"), mapping=delta.positions)
        if delta.cash:
            pipe.hset(self._state(tp, "cash"), mapping=delta.cash)
        if delta.marks:
            pipe.hset(self._state(tp, "marks"), mapping=delta.marks)
        seen = self._state(tp, "seen")
        if delta.seen_add:
            pipe.zadd(seen, delta.seen_add)
        if delta.seen_prune_below is not None:
            pipe.zremrangebyscore(seen, "-inf", f"({delta.seen_prune_below!r}")
        pipe.hset(self._state(tp, "meta"), mapping=delta.meta)

    # ------------------------------------------------------------------ load
    def load_partition(
        self, tp: TP, *, instruments: pl.DataFrame, starting_cash: float,
        dedupe_retention_ns: int | None,
    ) -> tuple[Snapshot | None, int | None]:
        """``(snapshot, next_offset)`` of a partition; ``(None, None)`` if never written."""
        with self.client.pipeline(transaction=True) as pipe:  # one consistent read
            pipe.hgetall(self._state(tp, "meta"))
            pipe.hgetall(self._state(tp, "positions"))
            pipe.hgetall(self._state(tp, "cash"))
            pipe.hgetall(self._state(tp, "marks"))
            pipe.zrange(self._state(tp, "seen"), 0, -1, withscores=True)
            meta, positions, cash, mark_rows, seen = pipe.execute()
        if not meta or "next_offset" not in meta:
            return None, None
        snap = decode_snapshot(
            positions, cash, mark_rows, [(str(m), float(s)) for m, s in seen], meta,
            instruments=instruments, starting_cash=starting_cash,
            dedupe_retention_ns=dedupe_retention_ns,
        )
        return snap, int(meta["next_offset"])

    def committed_offsets(self, tps: set[TP]) -> dict[TP, int | None]:
        """Stored next offsets of ``tps``: a fill partition's ``meta``, a ticks partition's
        tick offset (None: nothing committed yet)."""
        fills = sorted(tp for tp in tps if tp[0] != self.ticks_topic)
        with self.client.pipeline(transaction=False) as pipe:
            for tp in fills:
                pipe.hget(self._state(tp, "meta"), "next_offset")
            pipe.hgetall(self.keys.tick_offsets(self.ticks_topic))
            *metas, ticks = pipe.execute()
        out: dict[TP, int | None] = {tp: _offset(v) for tp, v in zip(fills, metas, strict=True)}
        stored = {int(q): int(o) for q, o in ticks.items()}
        out.update({tp: stored.get(tp[1]) for tp in tps if tp[0] == self.ticks_topic})
        return out

    def owners(self, portfolio_ids: list[str]) -> dict[str, TP]:
        """Partitions recorded in ``pm:owner`` for these portfolios (unknown ones omitted)."""
        values = self.client.hmget(self.keys.owners(self.group), portfolio_ids)
        out: dict[str, TP] = {}
        for pid, part in zip(portfolio_ids, values, strict=True):
            if part:
                topic, _, partition = str(part).rpartition(":")
                out[pid] = (topic, int(partition))
        return out

    def load_ticks(self) -> tuple[dict[int, int], dict[str, str]]:
        """``(tick offsets by partition, prices hash)`` as stored by earlier batches."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.tick_offsets(self.ticks_topic))
            pipe.hgetall(self.keys.prices)
            offsets, prices = pipe.execute()
        return {int(p): int(o) for p, o in offsets.items()}, dict(prices)
