"""Decode-ahead: the next batch is decoded on a worker thread while this one is applied.

Decoding (Polars, mostly outside the GIL) is the largest per-batch cost; the loop's own
thread meanwhile reads Kafka and applies/commits the previous batch, so under a backlog the
two overlap. Only decoding moves to the worker: everything that touches the book, Redis or
the consumers (rebalance callbacks run inside ``consume``) stays on the loop's thread, in
batch order.

A batch collected but not yet applied can hold records of partitions that are since
revoked, or that a stale commit reloaded and seeked back (their records will be read
again): those partitions are *excluded* from it (``exclude``) and their rows dropped
before it is applied (``Decoded.without``).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from pm_polars.daemon.batching import RawBatch
from pm_polars.daemon.decoding import Decoded, decode_batch

TP = tuple[str, int]


@dataclass
class Ahead:
    """A collected batch, its decode in progress, and partitions to leave out of it."""

    batch: RawBatch
    decoded: Future[tuple[Decoded, float]]
    excluded: set[TP] = field(default_factory=set)

    def result(self) -> tuple[Decoded, dict[TP, int], dict[int, int], float]:
        """The decoded rows, next offsets (without the excluded partitions) and the seconds
        decoding took on the worker."""
        decoded, seconds = self.decoded.result()
        offsets = {tp: o for tp, o in self.batch.next_offsets().items()
                   if tp not in self.excluded}
        if self.excluded:
            decoded = decoded.without(self.excluded)
        return decoded, offsets, self.batch.tick_offsets(), seconds


class DecodeAhead:
    """At most one batch ahead of the one being applied."""

    def __init__(self, ticks_topic: str) -> None:
        self.ticks_topic = ticks_topic
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="pm-decode")
        self.ahead: Ahead | None = None

    @property
    def busy(self) -> bool:
        return self.ahead is not None

    def take(self) -> Ahead | None:
        """The batch ahead (to apply now), if any."""
        ahead, self.ahead = self.ahead, None
        return ahead

    def submit(self, batch: RawBatch) -> None:
        """Start decoding ``batch`` (the previous one must have been taken)."""
        assert self.ahead is None, "take() the batch ahead first"
        self.ahead = Ahead(batch, self.pool.submit(self._decode, batch))

    def _decode(self, batch: RawBatch) -> tuple[Decoded, float]:
        t0 = time.perf_counter()
        return decode_batch(batch, self.ticks_topic), time.perf_counter() - t0

    def exclude(self, tps: set[TP]) -> None:
        """Leave ``tps`` out of the batch ahead (revoked, or reloaded after a stale commit)."""
        if self.ahead is not None:
            self.ahead.excluded |= tps

    def close(self) -> None:
        self.pool.shutdown(wait=True)
