"""librdkafka configuration of the daemon's clients, and rate-limited Kafka error logs.

Our required settings come first and ``-X`` properties override them (kcat-style
pass-through: SASL/SSL, timeouts, anything). Producer-side, consumer-only properties are
dropped so a shared ``-X session.timeout.ms=...`` does not make librdkafka warn.
librdkafka's own log lines go to the ``pm_polars.kafka`` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pm_polars.daemon.metrics import Metrics

log = logging.getLogger(__name__)
kafka_log = logging.getLogger("pm_polars.kafka")

ERROR_LOG_INTERVAL_S = 5.0
CONSUMER_ONLY_PREFIXES = (
    "group.", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
    "auto.offset.reset", "enable.auto.", "auto.commit.", "partition.assignment.strategy",
    "fetch.", "isolation.level", "enable.partition.eof", "queued.", "check.crcs",
    "coordinator.", "consume.callback.max.messages",
)


def consumer_config(bootstrap: str, group_id: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Consumer settings: manual offsets (Redis is the truth), cooperative-sticky."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "topic.metadata.refresh.interval.ms": 30_000,
        # Kafka/Redpanda answer a fetch as soon as data arrives; brokers that hold it for
        # the full wait (tansu does) add up to this much latency (librdkafka default 500)
        "fetch.wait.max.ms": 100,
        # a partition whose prefetch queue is full (queued.min.messages) is fetched again
        # after this; librdkafka's 1000 ms default stalls a busy daemon on a backlog for up
        # to 1 s each time (backlog bench: 0.75-1.34 s per 200k events -> 0.79-0.83 s)
        "fetch.queue.backoff.ms": 10,
        "logger": kafka_log,
        **extra,
    }


def producer_config(bootstrap: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Producer settings (dead letters): acks from every in-sync replica."""
    passed = {k: v for k, v in extra.items() if not k.startswith(CONSUMER_ONLY_PREFIXES)}
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "logger": kafka_log, **passed}


class ErrorLog:
    """Logs a Kafka error once per ``ERROR_LOG_INTERVAL_S`` per code (it may repeat fast)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.last: dict[int, float] = {}

    def __call__(self, err: KafkaError, where: str) -> None:
        self.metrics.kafka_errors.inc()
        now = time.monotonic()
        if now - self.last.get(err.code(), -1e9) >= ERROR_LOG_INTERVAL_S:
            self.last[err.code()] = now
            log.warning("event=kafka_error where=%s code=%s error=%r", where, err.name(), err.str())

    def records(self, msgs: list[Message], where: str) -> list[Message]:
        """``msgs`` without error events; those are logged (partition EOF silently)."""
        if not msgs or all(m.error() is None for m in msgs):
            return msgs
        for msg in msgs:
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                self(err, where)
        return [m for m in msgs if m.error() is None]


def produce_waiting(producer: Producer, topic: str, value: bytes | None, *,
                    key: bytes | None = None,
                    headers: list[tuple[str, str | bytes | None]] | None = None,
                    on_delivery: Any = None) -> None:
    """``producer.produce``, waiting (polling 0.1 s) while the local queue is full."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers,
                             on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)
