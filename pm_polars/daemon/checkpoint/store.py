"""The checkpoint store: commits a :class:`CommitPlan` in ONE Redis MULTI/EXEC, loads state.

This is the only module that writes daemon state. :meth:`Checkpoint.commit`, on one
connection (the steps are marked ``# 1.`` ... in the code):

1. ``WATCH`` the ``meta`` hash of every partition the batch writes and read each stored
   ``next_offset`` (one round trip).
2. Compare each with the offset the engine's state was loaded at (or last committed). A
   mismatch means another owner (after a rebalance, or our own EXEC whose reply was lost)
   moved the partition on: ``UNWATCH``, nothing is written, the caller reloads it.
3. Wait until the batch's archive rows are durable (``before_exec``: the staging barrier,
   see ``staging``), so no committed record can be missing from the archive.
4. ``MULTI``; HSET per key (state rows, ``meta`` with the new ``next_offset``, position
   hashes, ``pm:parts`` contributions), ZADD/ZREMRANGEBYSCORE of ``seen``, MSET of the
   strategy documents, SADD to the index; the aggregate Lua script (Overall, aum, owners,
   prices, tick offsets); ``PUBLISH portfolio-updates``; ``EXEC`` (one round trip: the
   commands are encoded in bulk by Polars, see ``resp``).
5. ``EXEC`` refused (a watched key changed in between): back to 1, at most
   ``WATCH_RETRIES`` times, then report every partition stale.

Every write is absolute (row values, max offsets, latest prices), so an EXEC applied twice
leaves the same result. Redis is the source of truth; Kafka commits only follow for lag.
Loading (``load_partition``, ``load_ticks``, ``committed_offsets``, ``owners``) reads what
earlier commits wrote, through the same ``codec``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import polars as pl
import redis

from pm_polars.daemon.checkpoint.codec import check_account_currency, check_decimals, decode_state
from pm_polars.daemon.checkpoint.plan import CommitOutcome, CommitPlan
from pm_polars.engine.config import DEFAULT_ACCOUNT_CURRENCY
from pm_polars.engine.marks import check_mark
from pm_polars.engine.state import EngineState
from pm_polars.publish import aggregate_lua, resp
from pm_polars.publish.keys import Keys, part_name
from pm_polars.publish.redis_model import update_message
from pm_polars.types import TP

log = logging.getLogger(__name__)

WATCH_RETRIES = 5


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
                    # 1. WATCH the partitions' meta, read their stored offsets
                    cmds = [resp.command("WATCH", *metas)]
                    cmds += [resp.command("HMGET", m, "next_offset", "updated_ns")
                             for m in metas]
                    _, *stored = conn.call(cmds, len(cmds))
                    # 2. moved on by another writer: write nothing, the caller reloads
                    moved = [(pc.tp, _offset(off), _offset(by)) for pc, (off, by) in
                             zip(plan.partitions, stored, strict=True)
                             if _offset(off) != pc.expected_offset]
                    if moved:
                        conn.call([resp.UNWATCH], 1)
                        return CommitOutcome(stale={tp: off for tp, off, _ in moved},
                                             writers={tp: by for tp, _, by in moved})
                # 3. the archive rows of the batch are durable
                if before_exec is not None:
                    before_exec()
                    before_exec = None
                # 4. MULTI ... EXEC: state rows, offsets, documents, aggregates, PUBLISH
                results = conn.exec(batch)
                if results is None:  # 5. a watched key changed: check again
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
        declared = aggregate_lua.declared(keys, self.group, self.ticks_topic, plan.sources)
        arg = aggregate_lua.request(
            prefix=keys.prefix, group=self.group, sources=plan.sources, aum=plan.aum,
            owners=owners, prices=plan.prices,
            tick_offsets_key=keys.tick_offsets(self.ticks_topic),
            tick_offsets=sorted(plan.tick_offsets.items()), keys=declared,
            day_key=keys.day(self.group), roll=plan.roll, decimals=plan.quantity_decimals,
        )
        at_eval = batch.add(resp.command("EVAL", aggregate_lua.SCRIPT, len(declared),
                                         *declared.values(), arg))
        updated = plan.updated
        if updated:
            batch.add(resp.command("PUBLISH", keys.updates_channel,
                                   update_message(updated, plan.ts_ns)))
        return batch, at_eval

    # ------------------------------------------------------------------ load
    def load_partition(
        self, tp: TP, *, instruments: pl.DataFrame, quantity_decimals: int = 0,
        account_currency: str = DEFAULT_ACCOUNT_CURRENCY, mark: str = "last",
    ) -> tuple[EngineState | None, int | None]:
        """``(state, next_offset)`` of a partition; ``(None, None)`` if never written.

        Raises ``QuantityDecimalsMismatch`` if it was written with other
        ``quantity_decimals`` (``codec.check_decimals``), ``codec.AccountCurrencyMismatch``
        if it was booked in another account currency, ``MarkMismatch`` if it was published
        under another ``mark`` (``meta``)."""
        with self.client.pipeline(transaction=True) as pipe:  # one consistent read
            pipe.hgetall(self.state_key(tp, "meta"))
            pipe.hgetall(self.state_key(tp, "positions"))
            pipe.hgetall(self.state_key(tp, "cash"))
            pipe.hgetall(self.state_key(tp, "marks"))
            pipe.zrange(self.state_key(tp, "seen"), 0, -1, withscores=True)
            meta, positions, cash, mark_rows, seen = pipe.execute()
        if not meta or "next_offset" not in meta:
            return None, None
        check_decimals(meta, quantity_decimals, f"partition {tp[0]}:{tp[1]}")
        check_account_currency(meta, account_currency, f"partition {tp[0]}:{tp[1]}")
        check_mark(meta.get("mark"), mark, f"partition {tp[0]}:{tp[1]}")
        state = decode_state(
            positions, cash, mark_rows, [(str(m), float(s)) for m, s in seen], meta,
            instruments=instruments,
        )
        return state, int(meta["next_offset"])

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

    def load_alerts(self, tp: TP) -> dict[str, str]:
        """A partition's alert states (``daemon.alerts``): portfolio -> JSON."""
        return {str(k): str(v) for k, v in
                self.client.hgetall(self.state_key(tp, "alerts")).items()}

    def outbox(self) -> list[str]:
        """Alerts committed but not yet produced to Kafka, oldest first."""
        return [str(v) for v in self.client.lrange(self.keys.alerts_outbox(self.group), 0, -1)]

    def outbox_done(self, n: int) -> None:
        """The first ``n`` outbox alerts were produced (and acknowledged)."""
        self.client.ltrim(self.keys.alerts_outbox(self.group), n, -1)

    def load_roll(self) -> tuple[int, dict[int, float]] | None:
        """The group's last trading-day roll ``(day, {token: price at the roll})``."""
        raw = self.client.hgetall(self.keys.day(self.group))
        if not raw or "trading_day" not in raw:
            return None
        prices = json.loads(raw.get("roll_prices") or "{}")
        return int(raw["trading_day"]), {int(t): float(p) for t, p in prices.items()}

    def load_ticks(self) -> tuple[dict[int, int], dict[str, str]]:
        """``(tick offsets by partition, prices hash)`` as stored by earlier batches."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.tick_offsets(self.ticks_topic))
            pipe.hgetall(self.keys.prices)
            offsets, prices = pipe.execute()
        return {int(p): int(o) for p, o in offsets.items()}, dict(prices)
