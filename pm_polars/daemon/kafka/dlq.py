"""Invalid records: the dead-letter topic, and the limit that stops a bad deploy.

Each rejected record is produced to the dead-letter topic with the raw bytes as value,
headers ``reason``, ``topic``, ``partition``, ``offset`` (UTF-8 text) and the key
``topic/partition/offset`` of the original record (its own key is not kept). Dead letters
are flushed *before* the batch's Redis commit: a crash in between re-reads the batch and
dead-letters its records again (at-least-once), never zero times. A bad tick is
dead-lettered by every instance (each reads all ticks). Copies of one record share the key,
so a DLQ reader can drop them, and a compacted DLQ topic keeps one.

A record larger than ``max_value_bytes`` (default 900 KB, under the 1 MB message size that
Kafka brokers and librdkafka accept by default) is dead-lettered with its first
``max_value_bytes`` bytes and the headers ``truncated`` (original size in bytes) and
``sha256`` (of the whole original); the original stays retrievable at the source
topic/partition/offset named in the headers. A poison record can never become fatal.

:class:`RejectGuard` stops the daemon when more than ``max_ratio`` of the last ``window``
records (at least ``window`` seen) were invalid, *before* those records are dead-lettered.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from typing import Any

import polars as pl
from confluent_kafka import KafkaError, Message, Producer

from pm_polars.daemon.kafka.clients import produce_waiting
from pm_polars.types import RECORD_ID

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Dead letters could not be delivered (broker unreachable); the batch is retried."""


class RejectRatioExceeded(RuntimeError):
    """Too many invalid records: stop instead of dead-lettering a whole bad deploy."""


class DeadLetters:
    """Producer of the dead-letter topic."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        flush_timeout_s: float = 10.0,
        max_value_bytes: int = 900_000,
    ) -> None:
        self.producer = Producer(config)
        self.topic = topic
        self.max_value_bytes = max_value_bytes
        self.flush_timeout_s = flush_timeout_s
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed.append(err.str())

    def send(self, rejects: pl.DataFrame) -> int:
        """Produce every reject and wait for the broker; raise ``DeliveryError`` on failure."""
        if rejects.height == 0:
            return 0
        self.failed = []
        for raw, reason, topic, partition, offset in rejects.select(
            "raw", "reason", *RECORD_ID
        ).iter_rows():
            headers: list[tuple[str, str | bytes | None]] = [
                ("reason", str(reason)[:2000].encode()),
                ("topic", str(topic or "").encode()),
                ("partition", "" if partition is None else str(partition).encode()),
                ("offset", "" if offset is None else str(offset).encode()),
            ]
            key = None if topic is None or offset is None else \
                f"{topic}/{partition}/{offset}".encode()
            if raw is not None and len(raw) > self.max_value_bytes:
                headers.append(("truncated", str(len(raw)).encode()))
                headers.append(("sha256", hashlib.sha256(raw).hexdigest().encode()))
                raw = raw[: self.max_value_bytes]
            produce_waiting(self.producer, self.topic, raw, key=key, headers=headers,
                            on_delivery=self._on_delivery)
        remaining = self.producer.flush(self.flush_timeout_s)
        if remaining or self.failed:
            raise DeliveryError(
                f"{remaining} dead letters undelivered after {self.flush_timeout_s} s, "
                f"errors {self.failed[:3]}"
            )
        return rejects.height

    def close(self) -> None:
        self.producer.flush(self.flush_timeout_s)


class RejectGuard:
    """Share of invalid records over (at least) the last ``window`` records."""

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio, self.window = max_ratio, window
        self.batches: deque[tuple[int, int]] = deque()  # (records, rejects)
        self.records = self.rejects = 0

    def check(self, records: int, rejects: int) -> None:
        """Account one batch; raise :class:`RejectRatioExceeded` over the limit.

        The batch is only remembered if it passes, so a retried batch is not counted twice.
        """
        batches = list(self.batches) + [(records, rejects)]
        total, bad = self.records + records, self.rejects + rejects
        while len(batches) > 1 and total - batches[0][0] >= self.window:
            total -= batches[0][0]
            bad -= batches[0][1]
            batches.pop(0)
        if total >= self.window and bad > self.max_ratio * total:
            raise RejectRatioExceeded(
                f"{bad} of the last {total} records are invalid (> {self.max_ratio:.0%}); "
                "stopping instead of dead-lettering them. Fix the producer, or raise "
                "--max-reject-ratio / --reject-window if this is expected"
            )
        self.batches = deque(batches)
        self.records, self.rejects = total, bad
