"""One micro-batch, start to finish: consume -> decode -> apply -> checkpoint -> commit -> sinks.

The batch was consumed by ``kafka.microbatch`` (a ``RawBatch`` carrying its
``committable``). Order (the exactly-once argument relies on it):

1. decode (``intake``); the reject-ratio guard may stop the daemon here (nothing written);
2. keep the book's state (engine state and tick table: immutable values, O(1));
3. apply to the engine and build the commit plan (``apply``);
4. dead letters produced and flushed (once per batch, before the commit);
   (fills refused for arriving on a foreign partition included); the archive rows are
   staged (made durable, see ``pm_polars.archive.sink``) before the EXEC;
5. checkpoint commit: state + offsets + read model in one MULTI/EXEC (``checkpoint``);
   on a Redis/Kafka error: restore the kept state, back off, go to 3 (nothing advanced);
   on a stale partition (another owner moved it on): restore, reload that partition from
   Redis, seek it to the stored offset, drop its records from this batch, go to 3;
6. after EXEC: Kafka offset commit (monitoring only), metrics, sinks. After a stale
   partition, the rows an earlier attempt had for it below the stored offset were committed
   (by another owner, or by our own EXEC whose reply was lost: its ``updated_ns`` is that
   attempt's): the sinks get them too, and the metrics count them when the EXEC was ours.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import polars as pl
import redis

from pm_polars.archive.sink import Rows, rows_of
from pm_polars.daemon import owners
from pm_polars.daemon.apply import Applied, apply_batch, settle
from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint.plan import CommitOutcome
from pm_polars.daemon.checkpoint.staging import Record, committed_only
from pm_polars.daemon.checkpoint.store import Checkpoint
from pm_polars.daemon.intake import Decoded, decode_batch
from pm_polars.daemon.kafka.alert_out import AlertDeliveryError, AlertProducer
from pm_polars.daemon.kafka.dlq import DeadLetters, DeliveryError, RejectGuard
from pm_polars.daemon.kafka.microbatch import RawBatch
from pm_polars.daemon.kafka.prefetch import FillOffsets
from pm_polars.daemon.metrics import Metrics
from pm_polars.daemon.retry import Backoff
from pm_polars.daemon.sinks import Sinks
from pm_polars.engine.instruments import allows_negative
from pm_polars.types import KINDS, TP, BatchResult

log = logging.getLogger(__name__)
RETRYABLE = (redis.RedisError, DeliveryError, OSError)  # OSError: archive staging


@dataclass
class _Pending:
    decoded: Decoded  # carries the batch's committable (stale partitions' dropped)
    dead_lettered: bool = False
    attempts: list[tuple[int, BatchResult]] = field(default_factory=list)  # (ts_ns, result)
    stale: dict[TP, int | None] = field(default_factory=dict)  # partition -> stored offset
    ours: dict[TP, int | None] = field(default_factory=dict)  # stale by our own lost EXEC


class BatchStep:
    """Processes batches for one daemon; see the module docstring for the order."""

    def __init__(
        self, *, book: Book, checkpoint: Checkpoint, fills: FillOffsets,
        dead_letters: DeadLetters, guard: RejectGuard, sinks: Sinks, metrics: Metrics,
        backoff: Backoff, ticks_topic: str, alerts: AlertProducer | None = None,
    ) -> None:
        self.book, self.checkpoint, self.fills = book, checkpoint, fills
        self.foreign: dict[str, TP] = {}  # portfolio -> partition owned elsewhere
        self.dead_letters, self.guard, self.sinks = dead_letters, guard, sinks
        self.metrics, self.backoff, self.ticks_topic = metrics, backoff, ticks_topic
        self.alerts = alerts  # produces the committed alerts (outbox) to Kafka
        # some instrument allows prices <= 0: the engine step judges the sign, not decode
        self.positive_prices = not allows_negative(book.instruments)

    def process(self, batch: RawBatch) -> None:
        t0 = time.perf_counter()
        decoded = decode_batch(batch, self.ticks_topic,
                               self.book.config.quantity_decimals, self.positive_prices)
        self.metrics.stage("decode", time.perf_counter() - t0)
        self.process_decoded(decoded)

    def process_decoded(self, decoded: Decoded) -> None:
        self.guard.check(decoded.records, decoded.rejects.height)
        pending = _Pending(decoded)
        while True:
            outcome, applied = self.backoff.call(
                "checkpoint", lambda: self._attempt(pending), RETRYABLE
            )
            if outcome.committed:
                break
            self._reload_stale(outcome, pending)
        self._after_commit(pending, applied, outcome)

    def _attempt(self, p: _Pending) -> tuple[CommitOutcome, Applied]:
        book = self.book
        self._lookup_owners(p.decoded)
        before = book.state()
        staging = bool(self.sinks.staging)

        def stage(result: BatchResult) -> None:  # durable in the background while we plan
            self.sinks.stage(result)

        try:
            t0 = time.perf_counter()
            applied = apply_batch(p.decoded, book, self.foreign,
                                  on_applied=stage if staging else None)
            t1 = time.perf_counter()
            self.metrics.stage("apply", t1 - t0)
            p.attempts.append((applied.plan.ts_ns, applied.result))
            if not p.dead_lettered:
                sent = self.dead_letters.send(applied.result.rejects)
                self.metrics.dlq_records.inc(sent)
                p.dead_lettered = True
            t2 = time.perf_counter()
            barrier = self.sinks.barrier if staging else None
            if applied.plan.is_empty():
                if barrier is not None:
                    barrier()
                outcome = CommitOutcome()
            else:
                outcome = self.checkpoint.commit(applied.plan, before_exec=barrier)
            self.metrics.stage("redis", time.perf_counter() - t2)
        except BaseException as exc:
            book.restore(before)
            if isinstance(exc, redis.RedisError):
                self.metrics.redis_errors.inc()
            raise
        if not outcome.committed:
            book.restore(before)
        return outcome, applied

    def _lookup_owners(self, decoded: Decoded) -> None:
        """Partitions of portfolios this instance has not seen (``pm:owner``; rare)."""
        unknown = owners.unknown(decoded, self.book.owner, self.foreign)
        if unknown:
            self.foreign.update(self.checkpoint.owners(unknown))

    def _reload_stale(self, outcome: CommitOutcome, p: _Pending) -> None:
        """Another owner (or our own EXEC whose reply was lost) moved these partitions on."""
        self.metrics.stale_writes.inc()
        tps = list(outcome.stale)
        p.stale.update(outcome.stale)
        mine = {ts for ts, _ in p.attempts}
        p.ours.update({tp: outcome.stale[tp] for tp, by in outcome.writers.items() if by in mine})
        for tp, stored in outcome.stale.items():
            log.warning("event=stale_partition partition=%s:%s stored_offset=%s action=reload",
                        tp[0], tp[1], stored)
        behind = [tp for tp, stored in outcome.stale.items()
                  if (info := self.book.parts.get(tp)) is not None and info.offset is not None
                  and (stored is None or stored < info.offset)]
        if behind:  # Redis lost writes: our engine saw fill ids its state no longer has
            log.warning("event=partition_rolled_back partitions=%s action=reload_all "
                        "note=Redis lost acknowledged writes (failover or restart without "
                        "fsync); the lost records are read again", behind)
            kept = {tp: info.offset for tp, info in self.book.parts.items()}
            tps = self.book.reset()
            p.stale.update({tp: kept[tp] for tp in tps if tp not in outcome.stale})
        self.book.drop(tps)
        starts = self.backoff.call("reload partitions", lambda: self.book.load(tps),
                                   (redis.RedisError,))
        for tp, offset in starts.items():
            try:
                self.fills.seek(tp, offset)
            except Exception as exc:  # KafkaException: no longer assigned; a revoke follows
                log.info("event=seek_failed partition=%s:%s error=%r", tp[0], tp[1], exc)
        p.decoded = p.decoded.without(set(tps))

    def _after_commit(self, p: _Pending, applied: Applied, outcome: CommitOutcome) -> None:
        t0 = time.perf_counter()
        written = time.time_ns()
        committable = p.decoded.committable
        settle(self.book, applied, committable)
        conflicts = applied.refused + len(outcome.conflicts)
        if conflicts:
            self.metrics.partition_conflicts.inc(conflicts)
            log.warning("event=partition_conflict refused_fills=%d raced_claims=%s note=%s",
                        applied.refused, outcome.conflicts,
                        "a portfolio's fills arrived on a second partition; refused and "
                        "dead-lettered, never merged (producers must key fills by "
                        "portfolio_id)")
        self.fills.commit(committable)
        if applied.alerts and self.alerts is not None:
            self.backoff.call("produce alerts", self.alerts.drain,
                              (redis.RedisError, AlertDeliveryError))
        res = self._with_earlier(p, applied.result, p.ours)  # our lost EXEC's rows count too
        m = self.metrics
        m.count_events("fill", res.fills.height)
        m.count_events("tick", res.ticks.height)
        m.count_events("reject", res.rejects.height)
        m.count_events("duplicate", res.duplicates.height)
        if res.conflicts:
            m.fill_conflicts.inc(res.conflicts)
        m.batches.inc()
        ts = pl.concat([res.fills.get_column("ts"), res.ticks.get_column("ts")])
        m.event_to_redis.observe_many((written - ts) / 1e9)
        m.stage("commit", time.perf_counter() - t0)
        t1 = time.perf_counter()
        self.sinks.submit(self._with_earlier(p, applied.result, p.stale))
        m.stage("sinks", time.perf_counter() - t1)

    def _with_earlier(self, p: _Pending, res: BatchResult,
                      stale: dict[TP, int | None]) -> BatchResult:
        """``res`` plus the rows earlier attempts had for ``stale`` partitions below their
        stored offsets (committed by our own EXEC whose reply was lost, or by another owner;
        see step 6)."""
        if len(p.attempts) <= 1 or not stale:
            return res
        limits: dict[TP, int | None] = {**stale, **p.decoded.committable}
        kept = committed_only(
            [Record(i, 0, rows_of(r).frames()) for i, (_, r) in enumerate(p.attempts)], limits)
        frames: dict[str, pl.DataFrame] = {
            k: pl.concat([r.frames[k] for r in kept if k in r.frames], how="diagonal")
            for k in KINDS if any(k in r.frames for r in kept)}
        rows = Rows.of(frames)
        return replace(res, fills=rows.fills, ticks=rows.ticks, rejects=rows.rejects,
                       duplicates=rows.duplicates)
