"""The checkpoint: a batch's state changes AND its next offsets in ONE Redis MULTI/EXEC.

This is the only module that writes daemon state. One commit, on one connection:

1. ``WATCH`` the ``meta`` hash of every partition the batch writes and read each stored
   ``next_offset`` (one round trip); compare it with the offset the engine's state was
   loaded at (or last committed). A mismatch means another owner (after a rebalance, or our
   own EXEC whose reply was lost) moved the partition on: nothing is written and the caller
   reloads it.
2. ``MULTI``; HSET per key (state rows, ``meta`` with the new ``next_offset``, position
   hashes, ``pm:parts`` contributions), ZADD/ZREMRANGEBYSCORE of ``seen``, MSET of the
   strategy documents, SADD to the index; the aggregate Lua script (Overall, aum, owners,
   prices, tick offsets); ``PUBLISH portfolio-updates``; ``EXEC`` (one round trip: the
   commands are encoded in bulk by Polars, see ``resp``).

Every write is absolute (row values, max offsets, latest prices), so an EXEC applied twice
leaves the same result. Redis is the source of truth; Kafka commits only follow for lag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import redis

from pm_polars.daemon.state_codec import decode_snapshot
from pm_polars.engine.snapshot import Snapshot
from pm_polars.publish import aggregate_lua, resp
from pm_polars.publish.keys import Keys, part_name
from pm_polars.publish.redis_model import update_message

log = logging.getLogger(__name__)

TP = tuple[str, int]  # (topic, partition)
WATCH_RETRIES = 5


@dataclass
class PartitionCommit:
    """What one batch changes for one owned fill partition (the rows are plan-wide)."""

    tp: TP
    expected_offset: int | None  # stored next_offset the engine state corresponds to
    delta: dict[str, str] | None  # its new ``meta``; None: it consumed nothing (tick-only)
    new_portfolios: list[str] = field(default_factory=list)  # owner check


@dataclass
class CommitPlan:
    """Everything one batch writes.

    ``commands`` (``count`` of them): state and read-model writes already encoded (RESP,
    see ``publish.resp``), queued first; ``documents``: strategy portfolios they rewrite;
    ``sources`` whose ``{source}_Overall`` and ``aum`` the aggregate script recomputes;
    ``prices`` items ``(token, ts text, price JSON)``.
    """

    partitions: list[PartitionCommit]
    commands: list[bytes] = field(default_factory=list)
    count: int = 0
    documents: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    aum: bool = False
    prices: list[tuple[str, str, str]] = field(default_factory=list)
    tick_offsets: dict[int, int] = field(default_factory=dict)
    ts_ns: int = 0

    def is_empty(self) -> bool:
        return not (self.partitions or self.prices or self.tick_offsets)

    @property
    def updated(self) -> list[str]:
        """Portfolios this plan rewrites (strategies and ``{source}_Overall``)."""
        return sorted({*self.documents, *(f"{s}_Overall" for s in self.sources)})


@dataclass
class CommitOutcome:
    """``stale``: partitions another owner moved on (TP -> stored offset); nothing written.

    ``writers``: for those, the stored ``updated_ns`` (the ``ts_ns`` of the plan that wrote
    them: one of our own earlier attempts when only its EXEC reply was lost).
    """

    stale: dict[TP, int | None] = field(default_factory=dict)
    writers: dict[TP, int | None] = field(default_factory=dict)
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

    def state_key(self, tp: TP, table: str) -> str:
        return self.keys.partition_state(self.group, tp[0], tp[1], table)


    # ------------------------------------------------------------------ commit
    def commit(self, plan: CommitPlan,
               before_exec: Callable[[], None] | None = None) -> CommitOutcome:
        """Write ``plan`` atomically; see the module docstring. Raises ``RedisError``.

        ``before_exec`` runs after the offsets were checked, right before the EXEC is sent
        (the daemon waits there for the archive staging to be durable).
        """
        metas = [self.state_key(pc.tp, "meta") for pc in plan.partitions]
        batch, at_eval = self.encode(plan)
        with resp.RawConnection(self.client) as conn:
            for _ in range(WATCH_RETRIES):
                if metas:
                    cmds = [resp.command("WATCH", *metas)]
                    cmds += [resp.command("HMGET", m, "next_offset", "updated_ns")
                             for m in metas]
                    _, *stored = conn.call(cmds, len(cmds))
                    moved = [(pc.tp, _offset(off), _offset(by)) for pc, (off, by) in
                             zip(plan.partitions, stored, strict=True)
                             if _offset(off) != pc.expected_offset]
                    if moved:
                        conn.call([resp.UNWATCH], 1)
                        return CommitOutcome(stale={tp: off for tp, off, _ in moved},
                                             writers={tp: by for tp, _, by in moved})
                if before_exec is not None:
                    before_exec()
                    before_exec = None
                results = conn.exec(batch)
                if results is None:
                    log.info("event=checkpoint_watch_retry partitions=%d", len(metas))
                    continue
                conflicts = [str(c) for c in (results[at_eval] or [])]
                return CommitOutcome(conflicts=conflicts, updated=plan.updated)
        # WATCH kept firing: let the caller re-check ownership on the next attempt
        return CommitOutcome(stale={pc.tp: pc.expected_offset for pc in plan.partitions})

    def encode(self, plan: CommitPlan) -> tuple[resp.Batch, int]:
        """The commands of ``plan`` and the index of the aggregate script's result."""
        keys, batch = self.keys, resp.Batch(list(plan.commands), plan.count)
        owners = [(pid, part_name(*pc.tp)) for pc in plan.partitions for pid in pc.new_portfolios]
        arg = aggregate_lua.request(
            prefix=keys.prefix, group=self.group, sources=plan.sources, aum=plan.aum,
            owners=owners, prices=plan.prices,
            tick_offsets_key=keys.tick_offsets(self.ticks_topic),
            tick_offsets=sorted(plan.tick_offsets.items()),
        )
        at_eval = batch.add(resp.command("EVAL", aggregate_lua.SCRIPT, 0, arg))
        updated = plan.updated
        if updated:
            batch.add(resp.command("PUBLISH", keys.updates_channel,
                                   update_message(updated, plan.ts_ns)))
        return batch, at_eval

    # ------------------------------------------------------------------ load
    def load_partition(
        self, tp: TP, *, instruments: pl.DataFrame, starting_cash: float,
        dedupe_retention_ns: int | None,
    ) -> tuple[Snapshot | None, int | None]:
        """``(snapshot, next_offset)`` of a partition; ``(None, None)`` if never written."""
        with self.client.pipeline(transaction=True) as pipe:  # one consistent read
            pipe.hgetall(self.state_key(tp, "meta"))
            pipe.hgetall(self.state_key(tp, "positions"))
            pipe.hgetall(self.state_key(tp, "cash"))
            pipe.hgetall(self.state_key(tp, "marks"))
            pipe.zrange(self.state_key(tp, "seen"), 0, -1, withscores=True)
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
                pipe.hget(self.state_key(tp, "meta"), "next_offset")
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
