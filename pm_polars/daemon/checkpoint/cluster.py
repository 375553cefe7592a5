"""The checkpoint on Redis Cluster: one MULTI/EXEC per partition, then the derived writes.

:meth:`ClusterCheckpoint.commit` (the single-node :class:`~.store.Checkpoint` writes all of
this in one transaction; here no transaction may span two slots):

1. ``WATCH`` every partition's meta on a connection of its own (WATCH is per connection)
   and read its stored ``next_offset``: all partitions in one round trip. Any moved on:
   nothing is written, the caller reloads them (as on one node).
2. Claims of new portfolios (``pm:owner:{G}``, one slot, first claim wins): absolute and
   repeatable, so a crash after them re-claims the same partitions.
3. Archive barrier, then per partition, on its master and its watching connection:
   ``MULTI``, its state rows, its ``next_offset``, its contributions
   (``pm:state:{G:T:P}:parts``), its new ``version``, ``EXEC`` (all partitions' sent
   before any reply is read, so they commit in no fixed order). Each is
   atomic; a crash between two leaves some partitions at the new offset and the others at
   the old: each partition's state and offset still move together, so on restart the first
   are not re-applied and the others re-read their records: exactly once per partition. A
   retry after a failure in the middle finds the committed ones moved on by its own attempt
   (``updated_ns``) and reloads them, like a lost EXEC reply on one node.
4. Aggregates, one transaction per document's slot: the contributions copied next to
   ``portfolio:{S}_Overall`` / ``aum``, each only if its partition's version is not older
   than the copy's (so a slow former owner never moves a sum back), then the aggregate
   script sums them, then a version for the Overall position hashes.
5. Derived documents (``portfolio:*``, ``position:*``, the index), one pipeline over the
   nodes; each written only if its version (its partition's) is not older than the stored
   one. Then prices and tick offsets (one slot, only upwards) and ``PUBLISH``.

Versions are ``max(batch clock in µs, stored + 1)``: they grow with every commit of a
partition (or aggregate), and also after a failover lost the last writes of a master (a
counter would restart below the versions its documents already carry on other nodes). µs,
not ns: Lua compares doubles, exact below 2^53.
After a Redis error the caller is told to republish every owned partition whole
(``on_failure``): a master killed before replicating its last acknowledged writes loses
them, and the lost derived documents and contribution copies are written again. A lost
partition transaction loses its state and offset together: the next commit finds the
offset behind, reloads the partition and re-reads its records (logged as a stale
partition).

Steps 2, 4 and 5 are idempotent and steps 3's transactions are guarded by the offsets, so a
retry of the whole commit never applies anything twice. After any error the slot map is
refreshed (``redis_conn.refresh``) before the error goes to the caller's backoff.
Between step 3 and step 5 a reader sees a partition's previous documents: the window is the
rest of this call (a few round trips), or, if Redis fails in it, until the retry succeeds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

import redis
from redis.cluster import RedisCluster

from pm_polars.daemon.checkpoint.plan import CommitOutcome, CommitPlan
from pm_polars.daemon.checkpoint.routing import Routed, route
from pm_polars.daemon.checkpoint.store import Checkpoint, _offset
from pm_polars.publish import aggregate_lua, resp
from pm_polars.publish.keys import Keys, part_name
from pm_polars.publish.redis_model import update_message
from pm_polars.redis_conn import refresh
from pm_polars.types import TP

log = logging.getLogger(__name__)

COPY = """
for i = 1, #ARGV, 3 do
  local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) >= cur then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""
NEXT_VERSION = """
local v = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', v))
return v
"""
GUARD = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[1]) < cur then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call(ARGV[2], KEYS[1], unpack(ARGV, 3))
return 1
"""


class ClusterCheckpoint(Checkpoint):
    """:class:`Checkpoint` over a ``redis.RedisCluster`` (``Keys(cluster=True)``).

    ``homes`` and ``marks`` are read at each commit: the partition of every published
    portfolio, and the latest price per token (for the Overall positions' ``last_price``).
    """

    def __init__(self, client: RedisCluster, keys: Keys, group: str, ticks_topic: str
                 ) -> None:
        super().__init__(client, keys, group, ticks_topic)  # type: ignore[arg-type]
        self.cluster = client
        self.homes: Callable[[], Mapping[str, TP]] = dict
        self.marks: Callable[[], Mapping[str, float]] = dict
        self.on_failure: Callable[[], None] = lambda: None

    def commit(self, plan: CommitPlan,
               before_exec: Callable[[], None] | None = None) -> CommitOutcome:
        try:
            return self._commit(plan, before_exec)
        except redis.RedisError:
            refresh(self.client)
            self.on_failure()
            raise

    def _commit(self, plan: CommitPlan,
                before_exec: Callable[[], None] | None) -> CommitOutcome:
        homes = {**self.homes(), **{pid: pc.tp for pc in plan.partitions
                                     for pid in pc.new_portfolios}}
        routed = route(plan, self.keys, self.group, homes)
        clock_us = plan.ts_ns // 1000
        with ExitStack() as stack:
            # 1. one connection per partition (WATCH is per connection), all in parallel
            conns = {pc.tp: stack.enter_context(resp.RawConnection(
                self._node(self.state_key(pc.tp, "meta")))) for pc in plan.partitions}
            stored = self._watch(conns)
            moved = {pc.tp: (_offset(stored[pc.tp][0]), _offset(stored[pc.tp][1]))
                     for pc in plan.partitions
                     if _offset(stored[pc.tp][0]) != pc.expected_offset}
            if moved:
                for conn in conns.values():
                    conn.call([resp.UNWATCH], 1)
                return CommitOutcome(stale={tp: off for tp, (off, _) in moved.items()},
                                     writers={tp: by for tp, (_, by) in moved.items()})
            conflicts = self._claims(plan)  # 2.
            if before_exec is not None:
                before_exec()
            versions = {tp: max(clock_us, int(stored[tp][2] or 0) + 1) for tp in conns}
            refused = self._partitions(routed, conns, versions)  # 3.
        if refused:  # WATCH fired: another writer; reload it and the ones committed
            done = {c.tp: int(c.delta["next_offset"]) if c.delta else c.expected_offset
                    for c in plan.partitions if c.tp not in refused}
            return CommitOutcome(stale={**done, **dict.fromkeys(refused)},
                                 writers={**dict.fromkeys(done, plan.ts_ns),
                                          **dict.fromkeys(refused)})
        hashes = self._aggregates(plan, routed, versions, clock_us)  # 4.
        self._documents(routed, versions, homes, hashes, plan)  # 5.
        return CommitOutcome(conflicts=conflicts, updated=plan.updated)

    # ------------------------------------------------------------------ steps
    def _watch(self, conns: Mapping[TP, resp.RawConnection]) -> dict[TP, list[Any]]:
        """``WATCH`` each partition's meta on its connection; its stored next_offset,
        updated_ns and version. One round trip for all (sent first, then read)."""
        for tp, conn in conns.items():
            meta = self.state_key(tp, "meta")
            conn.send([resp.command("WATCH", meta),
                       resp.command("HMGET", meta, "next_offset", "updated_ns", "version")])
        return {tp: conn.read(2)[1] for tp, conn in conns.items()}

    def _claims(self, plan: CommitPlan) -> list[str]:
        owners = [(pid, part_name(*pc.tp)) for pc in plan.partitions
                  for pid in pc.new_portfolios]
        if not owners:
            return []
        keys = {"owners": self.keys.owners(self.group)}
        result = self._script(keys, owners=owners)
        return [str(c) for c in (result[0] or [])]

    def _partitions(self, routed: Routed, conns: Mapping[TP, resp.RawConnection],
                    versions: Mapping[TP, int]) -> list[TP]:
        """Step 3: every partition's MULTI/EXEC, sent to all masters before any reply is
        read; the partitions whose WATCH fired (nothing written for them)."""
        batches = {}
        for tp, conn in conns.items():
            batch = resp.Batch()
            for cmd in routed.state.get(tp, []):
                batch.add(cmd)
            parts = routed.parts.get(tp)
            if parts:
                fields = [x for item in sorted(parts.items()) for x in item]
                batch.add(resp.command("HSET", self.state_key(tp, "parts"), *fields))
            batch.add(resp.command("HSET", self.state_key(tp, "meta"), "version",
                                   versions[tp]))
            conn.send([resp.MULTI, *batch.chunks, resp.EXEC])
            batches[tp] = batch
        return [tp for tp, conn in conns.items() if conn.read_exec(batches[tp]) is None]

    def _aggregates(self, plan: CommitPlan, routed: Routed, versions: Mapping[TP, int],
                    clock_us: int) -> list[tuple[int, list[Any]]]:
        """Step 4 (one transaction per aggregate, all sent before any reply is read);
        returns ``(version, hashes)`` of each Overall's position hashes."""
        targets: list[tuple[str, str, str, str | None]] = [(
            f"overall:{s}", self.keys.overall_parts(self.group, s),
            self.keys.portfolio(f"{s}_Overall"), s) for s in plan.sources]
        if plan.aum:
            targets.append(("aum", self.keys.aum_parts(self.group), self.keys.aum, None))
        marks = self.marks() if plan.sources else {}
        out: list[tuple[int, list[Any]]] = []
        with ExitStack() as stack:
            sent = []
            for name, parts_key, doc_key, source in targets:
                argv: list[Any] = []
                for tp in sorted(versions):
                    doc = routed.parts.get(tp, {}).get(name)
                    if doc is not None:
                        argv += [part_name(*tp), versions[tp], doc]
                copy = resp.command("EVAL", COPY, 2, parts_key, f"{parts_key}:seq", *argv)
                if source is None:
                    agg = self._eval_command({"aum_parts": parts_key, "aum": doc_key},
                                             aum=True)
                else:
                    agg = self._eval_command({f"parts:{source}": parts_key,
                                              f"doc:{source}": doc_key},
                                             sources=[source], marks=marks,
                                             decimals=plan.quantity_decimals)
                version = resp.command("EVAL", NEXT_VERSION, 1, self.keys.version(doc_key),
                                       clock_us)
                batch = resp.Batch([copy, agg, version], 3)
                conn = stack.enter_context(resp.RawConnection(self._node(doc_key)))
                conn.send([resp.MULTI, *batch.chunks, resp.EXEC])
                sent.append((conn, batch, source))
            for conn, batch, source in sent:
                results = conn.read_exec(batch)
                if results is None:  # nothing is WATCHed on these connections
                    raise redis.ResponseError("aggregate transaction aborted")
                if source is not None:
                    out.append((int(results[2]), json.loads(results[1][1]) or []))
        return out

    def _documents(self, routed: Routed, versions: Mapping[TP, int],
                   homes: Mapping[str, TP], hashes: list[tuple[int, list[Any]]],
                   plan: CommitPlan) -> None:
        """Step 5: guarded documents, the index, prices and tick offsets, ``PUBLISH``:
        grouped by master, sent to all before any reply is read."""
        keys = self.keys
        by_node: dict[int, tuple[redis.Redis, list[bytes]]] = {}

        def add(key: str, cmd: bytes) -> None:
            node = self._node(key)
            by_node.setdefault(id(node), (node, []))[1].append(cmd)

        for pid, name, key, args in routed.documents:
            add(key, resp.command("EVAL", GUARD, 2, key, keys.version(key),
                                  versions[homes[pid]], name, *args))
        for version, items in hashes:
            for key, fields in items:
                add(key, resp.command("EVAL", GUARD, 2, key, keys.version(key), version,
                                      "HSET", *fields))
        members = [*routed.index, *(f"{s}_Overall" for s in plan.sources)]
        if members:
            add(keys.index, resp.command("SADD", keys.index, *members))
        if plan.prices or plan.tick_offsets:
            ticks = {"prices": keys.prices,
                     "tick_offsets": keys.tick_offsets(self.ticks_topic)}
            add(keys.prices, self._eval_command(
                ticks, prices=plan.prices, tick_offsets=sorted(plan.tick_offsets.items())))
        if plan.updated:  # last on its connection (cluster PUBLISH reaches every node)
            add(keys.aum, resp.command("PUBLISH", keys.updates_channel,
                                       update_message(plan.updated, plan.ts_ns)))
        with ExitStack() as stack:
            conns = [(stack.enter_context(resp.RawConnection(node)), cmds)
                     for node, cmds in by_node.values()]
            for conn, cmds in conns:
                conn.send(cmds)
            for conn, cmds in conns:
                conn.read(len(cmds))

    def _node(self, key: str) -> redis.Redis:
        """The client of the master serving ``key``'s slot (as the slot map says)."""
        node = self.cluster.nodes_manager.get_node_from_slot(self.cluster.keyslot(key))
        client: redis.Redis | None = node.redis_connection
        if client is None:
            raise redis.ConnectionError(f"no connection to {node.name} yet")
        return client

    # ------------------------------------------------------------------ script
    def _request(self, keys: Mapping[str, str], **parts: Any) -> str:
        req: dict[str, Any] = {"sources": [], "aum": False, "owners": [], "prices": [],
                               "tick_offsets": [], "marks": None, "decimals": 0, **parts}
        return aggregate_lua.request(
            prefix=self.keys.prefix, group=self.group, sources=req["sources"], aum=req["aum"],
            owners=req["owners"], prices=req["prices"],
            tick_offsets_key=keys.get("tick_offsets", ""), tick_offsets=req["tick_offsets"],
            keys=keys, cluster=True, marks=req["marks"], decimals=req["decimals"])

    def _eval_command(self, keys: Mapping[str, str], **parts: Any) -> bytes:
        return resp.command("EVAL", aggregate_lua.SCRIPT, len(keys), *keys.values(),
                            self._request(keys, **parts))

    def _script(self, keys: Mapping[str, str], **parts: Any) -> Any:
        return self.client.execute_command("EVAL", aggregate_lua.SCRIPT, len(keys),
                                           *keys.values(), self._request(keys, **parts))
