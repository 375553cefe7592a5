"""Alerts from the Redis outbox to the Kafka alerts topic (``daemon.alerts``).

Alerts are committed to ``pm:alerts:outbox:{group}`` in the checkpoint's transaction;
:meth:`AlertProducer.drain` produces them (key: portfolio id, value: the alert JSON) and,
once the broker acknowledged every one, trims them off the outbox. A crash between the
two produces them again on the next drain: at least once on Kafka, with a deterministic
``id`` per alert for consumers; exactly once in Redis (pub/sub is part of the EXEC).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pm_polars.daemon.checkpoint.store import Checkpoint

log = logging.getLogger(__name__)


class AlertDeliveryError(RuntimeError):
    """The broker did not acknowledge every alert (they stay in the outbox)."""


class AlertProducer:
    def __init__(self, config: dict[str, Any], topic: str, checkpoint: Checkpoint,
                 flush_timeout_s: float = 10.0) -> None:
        self.producer = Producer(config)
        self.topic, self.checkpoint, self.flush_timeout_s = topic, checkpoint, flush_timeout_s
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed.append(err.str())

    def drain(self) -> int:
        """Produce every outbox alert, wait for the broker, trim them; returns how many."""
        pending = self.checkpoint.outbox()
        if not pending:
            return 0
        self.failed = []
        for text in pending:
            key = str(json.loads(text).get("portfolio_id", "")).encode()
            while True:
                try:
                    self.producer.produce(self.topic, key=key, value=text.encode(),
                                          on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(self.flush_timeout_s)
        if remaining or self.failed:
            raise AlertDeliveryError(f"{remaining} alerts undelivered, errors {self.failed[:3]}")
        self.checkpoint.outbox_done(len(pending))
        log.info("event=alerts_produced topic=%s alerts=%d", self.topic, len(pending))
        return len(pending)

    def close(self) -> None:
        self.producer.flush(self.flush_timeout_s)
