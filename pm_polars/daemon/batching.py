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
    """Records of one micro-batch, not yet decoded."""

    fills: dict[TP, list[Message]] = field(default_factory=dict)
    ticks: list[Message] = field(default_factory=list)
    first_arrival: float | None = None  # time.monotonic() of the first record

    def __len__(self) -> int:
        return len(self.ticks) + sum(len(v) for v in self.fills.values())

    def add_fills(self, messages: Iterable[Message]) -> None:
        fills = self.fills
        for msg in messages:
            tp = cast(TP, (msg.topic(), msg.partition()))
            bucket = fills.get(tp)
            if bucket is None:
                bucket = fills[tp] = []
            bucket.append(msg)

    def add_ticks(self, messages: list[Message]) -> None:
        self.ticks.extend(messages)

    def drop(self, tps: Iterable[TP]) -> int:
        """Forget the records of ``tps``; returns how many were dropped."""
        dropped = 0
        for tp in tps:
            dropped += len(self.fills.pop(tp, []))
        return dropped

    def next_offsets(self) -> dict[TP, int]:
        return {tp: cast(int, msgs[-1].offset()) + 1 for tp, msgs in self.fills.items() if msgs}

    def tick_offsets(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for msg in self.ticks:
            p, o = cast(int, msg.partition()), cast(int, msg.offset()) + 1
            if o > out.get(p, -1):
                out[p] = o
        return out


class MicroBatcher:
    """Collects from the fills and ticks sources until ``max_events`` or ``max_wait_s``.

    The wait starts at the first record of a batch. With no records at all, ``collect``
    returns an empty batch after about ``IDLE_RETURN_S`` so the caller's loop stays live.
    Fills are polled with a short timeout and ticks without blocking, so neither source
    starves the other.
    """

    def __init__(
        self, fills: Source, ticks: Source, max_events: int, max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fills, self.ticks = fills, ticks
        self.max_events, self.max_wait_s = max_events, max_wait_s
        self.clock = clock
        self.slice_s = min(0.005, max_wait_s / 2)

    def collect(self, batch: RawBatch, stopping: Callable[[], bool]) -> RawBatch:
        """Fill ``batch`` (possibly holding records already) and return it."""
        start = self.clock()
        while True:
            now = self.clock()
            if batch.first_arrival is not None:
                remaining = batch.first_arrival + self.max_wait_s - now
            else:
                remaining = start + IDLE_RETURN_S - now
            room = self.max_events - len(batch)
            if room <= 0 or remaining <= 0 or (stopping() and batch.first_arrival is None):
                return batch
            got = self.fills.consume(room, min(self.slice_s, remaining))
            if got:
                batch.add_fills(got)
                room -= len(got)
            if room > 0:
                ticks = self.ticks.consume(room, 0.0)
                if ticks:
                    batch.add_ticks(ticks)
                    got = got or ticks
            if got and batch.first_arrival is None:
                batch.first_arrival = self.clock()
            if stopping():
                return batch
