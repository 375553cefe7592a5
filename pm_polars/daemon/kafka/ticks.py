"""The ticks consumer: every partition of the ticks topic, like a global table.

Not in any consumer group: librdkafka needs a ``group.id`` even for ``assign()``, so it gets
a dummy one, but it never subscribes, joins or commits. Start offsets are the tick offsets
stored in Redis (with the prices, in the same MULTI); partitions without one start at the
beginning (``ticks_start="earliest"``, ``OFFSET_BEGINNING``) or the end (``"latest"``,
``OFFSET_END``; tansu mis-handles OFFSET_END and re-delivers part of the log). Fill
rebalances never touch this consumer. New partitions are picked up by a periodic metadata
check: a background thread reads the topic's metadata every ``REFRESH_INTERVAL_S`` (a
metadata request can take tens of ms and must not stall the loop) and ``refresh``, called by
the loop, assigns partitions that appeared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from pm_polars.daemon.kafka.clients import ErrorLog
from pm_polars.daemon.metrics import Metrics

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 2.0


class TicksSource:
    """Assigned (not subscribed) consumer of all partitions of ``topic``."""

    def __init__(
        self, config: Mapping[str, Any], topic: str, start: str, stored: Mapping[int, int],
        metrics: Metrics,
    ) -> None:
        conf = {**config, "enable.auto.commit": False, "enable.auto.offset.store": False,
                "error_cb": self._on_error}
        conf.pop("partition.assignment.strategy", None)
        self.consumer = Consumer(conf)
        self._meta_client = Consumer({k: v for k, v in conf.items() if k != "error_cb"})
        self.topic, self.metrics = topic, metrics
        self.default_start = OFFSET_END if start == "latest" else OFFSET_BEGINNING
        self.stored = dict(stored)
        self.assigned: set[int] = set()
        self.errors = ErrorLog(metrics)
        self.known: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="pm-ticks-metadata",
                                         daemon=True)

    def _on_error(self, err: KafkaError) -> None:
        self.errors(err, "ticks")

    def partitions(self) -> frozenset[int]:
        """Partitions of the topic per broker metadata (empty if unknown or unreachable)."""
        try:
            meta = self._meta_client.list_topics(self.topic, timeout=5.0).topics.get(self.topic)
        except Exception as exc:  # KafkaException: broker unreachable
            log.debug("event=ticks_metadata_failed error=%r", exc)
            return frozenset()
        if meta is None or meta.error is not None:
            return frozenset()
        return frozenset(meta.partitions)

    def _watch(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL_S):
            self.known = self.partitions()

    def start(self) -> None:
        """Assign the partitions known now and start watching for new ones."""
        self.known = self.partitions()
        self.refresh()
        self._watcher.start()

    def refresh(self) -> None:
        """Assign partitions of the topic that appeared since the last call (cheap)."""
        new = sorted(self.known - self.assigned)
        if not new:
            return
        parts = [
            TopicPartition(self.topic, p, self.stored.get(p, self.default_start)) for p in new
        ]
        self.consumer.incremental_assign(parts)
        self.assigned.update(new)
        log.info("event=ticks_assigned topic=%s partitions=%s starts=%s", self.topic, new,
                 {p.partition: p.offset for p in parts})

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        if not self.assigned:
            return []
        msgs = self.consumer.consume(num_messages=max_records, timeout=timeout)
        return self.errors.records(msgs, "ticks")

    def close(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=10)
        self.consumer.close()
        self._meta_client.close()
