"""The fills consumer: a consumer group on a topic pattern, cooperative-sticky.

Offsets come from Redis, not from Kafka: on assignment the ``Ownership`` listener loads each
partition's state and returns the offset to start at (``None``: the beginning), and we
``incremental_assign`` exactly there, then commit those stored offsets to Kafka at once: a
partition that is complete in Redis gives its new owner nothing new to commit, and without
this its Kafka committed offset would stay wherever the previous owner's last (async) commit
left it. Later Kafka commits follow each Redis commit (``commit``), for lag monitoring only.
Auto-commit and the offset store are off.
Rebalance callbacks run inside ``consume`` on the consuming thread and hold ``lock`` (the
book lock, held by the loop while it processes a batch), so they never interleave with the
apply/commit of a batch even when a prefetch thread consumes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from pm_polars.daemon.kafka.clients import ErrorLog
from pm_polars.daemon.metrics import Metrics
from pm_polars.types import TP, Committable

log = logging.getLogger(__name__)


class Ownership(Protocol):
    """Reacts to assignment changes (implemented by the app)."""

    def assigned(self, tps: list[TP]) -> dict[TP, int | None]: ...
    def revoked(self, tps: list[TP], lost: bool) -> None: ...


class FillsSource:
    """Group consumer of the fill topics."""

    def __init__(
        self, config: dict[str, Any], pattern: str, ownership: Ownership, metrics: Metrics,
        lock: threading.RLock | None = None,
    ) -> None:
        self.consumer = Consumer({**config, "error_cb": self._on_error})
        self.lock = lock or threading.RLock()
        self.ownership, self.metrics = ownership, metrics
        self.errors = ErrorLog(metrics)
        self.owned: set[TP] = set()
        self.consumer.subscribe(
            [pattern], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _on_error(self, err: KafkaError) -> None:
        self.errors(err, "fills")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self._assign(consumer, partitions)

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.metrics.rebalance("assign")
        starts = self.ownership.assigned(tps) if tps else {}
        assign = []
        for t, p in tps:
            start = starts.get((t, p))
            assign.append(TopicPartition(t, p, OFFSET_BEGINNING if start is None else start))
        consumer.incremental_assign(assign)
        self.owned.update(tps)
        self.metrics.assigned.set(len(self.owned))
        self.commit({tp: o for tp, o in starts.items() if o is not None and tp in self.owned})
        log.info("event=assigned partitions=%s starts=%s", _fmt(tps),
                 {f"{t}:{p}": starts.get((t, p)) for t, p in tps})

    def _revoke(self, partitions: list[TopicPartition], lost: bool) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.metrics.rebalance("lost" if lost else "revoke")
        if tps:
            self.ownership.revoked(tps, lost)
        self.owned.difference_update(tps)
        self.metrics.assigned.set(len(self.owned))
        for t, p in tps:  # another member reports these now: no stale lag left behind
            self.metrics.forget_lag(t, p)
        log.info("event=%s partitions=%s", "lost" if lost else "revoked", _fmt(tps))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self._revoke(partitions, lost=False)
            consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self._revoke(partitions, lost=True)
            consumer.incremental_unassign(partitions)

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        """Up to ``max_records`` records; errors are logged, not returned. Records of
        partitions revoked meanwhile are dropped by the batch (``RawBatch.add_fills``)."""
        msgs = self.consumer.consume(num_messages=max_records, timeout=timeout)
        return self.errors.records(msgs, "fills")

    def seek(self, tp: TP, offset: int | None) -> None:
        """Restart fetching ``tp`` at ``offset`` (``None``: the beginning)."""
        target = OFFSET_BEGINNING if offset is None else offset
        self.consumer.seek(TopicPartition(tp[0], tp[1], target))

    def commit(self, offsets: Committable, asynchronous: bool = True) -> None:
        """Commit next offsets of owned partitions to Kafka (monitoring only, after Redis;
        offsets of partitions not owned, e.g. ticks, are ignored)."""
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.owned]
        if parts:
            try:
                if asynchronous:
                    self.consumer.commit(offsets=parts, asynchronous=True)
                else:
                    self.consumer.commit(offsets=parts, asynchronous=False)
            except Exception as exc:  # KafkaException: e.g. no coordinator yet
                log.debug("event=kafka_commit_failed error=%r", exc)

    def lag(self, next_offsets: Mapping[TP, int | None]) -> dict[TP, int]:
        """High watermark (cached from fetches; tansu's ListOffsets is wrong) minus position."""
        out = {}
        for tp in self.owned:
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except Exception:  # no fetch yet
                continue
            pos = next_offsets.get(tp)
            if high >= 0:
                out[tp] = max(0, high - (pos or 0))
        return out

    def close(self) -> None:
        """Leave the group (revokes every partition through the callbacks)."""
        self.consumer.close()


def _fmt(tps: list[TP]) -> str:
    return ",".join(f"{t}:{p}" for t, p in sorted(tps)) or "-"
