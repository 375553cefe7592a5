"""Micro-batches: Kafka records gathered in bulk until max events or max wait.

A :class:`RawBatch` keeps fill records per partition (in offset order) and tick records,
and carries its offsets explicitly: ``next_offsets()`` is ``{(topic, partition): last
offset + 1}`` for the fill partitions it covers, ``tick_offsets()`` the same for ticks.
Records of a revoked partition are dropped from the open batch (``drop``) and will be
re-read by the partition's next owner from the offset stored in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, cast

from confluent_kafka import Message

TP = tuple[str, int]
IDLE_RETURN_S = 0.1  # an empty collect returns after this, so the loop stays live


class Source(Protocol):
    def consume(self, max_records: int, timeout: float) -> list[Message]: ...


@dataclass
class RawBatch:
    """Records of one micro-batch, not yet decoded, grouped by partition in offset order."""

    fills: dict[TP, list[Message]] = field(default_factory=dict)
    ticks: dict[int, list[Message]] = field(default_factory=dict)
    first_arrival: float | None = None  # time.monotonic() the oldest record was produced
    size: int = 0

    def __len__(self) -> int:
        return self.size

    def add_fills(self, messages: list[Message]) -> None:
        fills = self.fills
        for msg in messages:
            tp = cast(TP, (msg.topic(), msg.partition()))
            bucket = fills.get(tp)
            if bucket is None:
                bucket = fills[tp] = []
            bucket.append(msg)
        self.size += len(messages)

    def add_ticks(self, messages: list[Message]) -> None:
        ticks = self.ticks
        for msg in messages:
            p = cast(int, msg.partition())
            bucket = ticks.get(p)
            if bucket is None:
                bucket = ticks[p] = []
            bucket.append(msg)
        self.size += len(messages)

    def drop(self, tps: Iterable[TP]) -> int:
        """Forget the records of ``tps``; returns how many were dropped."""
        dropped = 0
        for tp in tps:
            dropped += len(self.fills.pop(tp, []))
        self.size -= dropped
        return dropped

    def next_offsets(self) -> dict[TP, int]:
        return {tp: cast(int, msgs[-1].offset()) + 1 for tp, msgs in self.fills.items() if msgs}

    def tick_offsets(self) -> dict[int, int]:
        return {p: cast(int, msgs[-1].offset()) + 1 for p, msgs in self.ticks.items() if msgs}


def produced_at(msg: Message, now_mono: float) -> float:
    """``time.monotonic()`` equivalent of the record's Kafka timestamp (never after now)."""
    kind, ms = msg.timestamp()
    if not kind or ms < 0:
        return now_mono
    return min(now_mono, now_mono - (time.time() - ms / 1000.0))


class MicroBatcher:
    """Collects from the fills and ticks sources until ``max_events`` or ``max_wait_s``.

    ``max_wait_s`` bounds how long a record waits for its batch: it counts from the oldest
    record's Kafka timestamp (its produce time), so records that queued up while the
    previous batch was being processed are flushed as soon as what is available has been
    read. Both sources are first read without blocking; only when neither has anything
    does ``collect`` block, in short slices alternating between them. With no records at
    all it returns an empty batch after about ``IDLE_RETURN_S`` so the loop stays live.
    """

    def __init__(
        self, fills: Source, ticks: Source, max_events: int, max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fills, self.ticks = fills, ticks
        self.max_events, self.max_wait_s = max_events, max_wait_s
        self.clock = clock
        self.slice_s = min(0.002, max_wait_s / 2)
        self._turn = 0

    def _read(self, batch: RawBatch, room: int, timeout: float) -> bool:
        if timeout > 0:  # block on one source at a time, alternating
            self._turn ^= 1
            src = self.fills if self._turn else self.ticks
            got = src.consume(room, timeout)
            (batch.add_fills if src is self.fills else batch.add_ticks)(got)
            firsts = got[:1]
        else:
            fills = self.fills.consume(room, 0.0)
            batch.add_fills(fills)
            ticks = self.ticks.consume(room - len(fills), 0.0) if room > len(fills) else []
            batch.add_ticks(ticks)
            firsts = fills[:1] + ticks[:1]
        if firsts and batch.first_arrival is None:
            now = self.clock()
            batch.first_arrival = min(produced_at(m, now) for m in firsts)
        return bool(firsts)

    def collect(self, batch: RawBatch, stopping: Callable[[], bool]) -> RawBatch:
        """Fill ``batch`` (possibly holding records already) and return it."""
        start = self.clock()
        while True:
            now = self.clock()
            room = self.max_events - len(batch)
            if room <= 0:
                return batch
            if self._read(batch, room, 0.0):
                continue  # drain what is available first
            if batch.first_arrival is not None:
                remaining = batch.first_arrival + self.max_wait_s - now
            else:
                remaining = start + IDLE_RETURN_S - now
            if remaining <= 0 or stopping():
                return batch
            self._read(batch, room, min(self.slice_s, remaining))
