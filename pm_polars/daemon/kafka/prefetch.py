"""Prefetch: the next micro-batches are consumed on a thread while the loop applies this one.

librdkafka and Polars release the GIL, so consuming batch *n+1* (fetch, payload extraction)
overlaps decoding, applying and committing batch *n*. The thread runs the
:class:`~pm_polars.daemon.kafka.microbatch.MicroBatcher` and hands finished
:class:`RawBatch` values to the loop through a queue of at most ``depth`` batches (memory stays
bounded under a backlog: ``depth × max_events`` records wait at most).

Exactly-once is unchanged, because three things hold:

1. **Rebalance never mid-apply.** Rebalance callbacks run on this thread (inside
   ``consume``); they take the book lock, which the loop holds while it processes a batch, so a
   revocation or an assignment waits for the batch in hand to be committed, and no batch is
   processed while one runs.
2. **Revoked partitions' records are dropped.** The revoke callback (holding the lock) calls
   :meth:`Prefetcher.drop`: the records of those partitions leave every queued batch and the
   batch being collected; records a later ``consume`` returns are filtered by ``owned``.
3. **A re-seek drops what was fetched before it.** When the loop reloads a stale partition
   it asks for a seek (:meth:`Prefetcher.seek`, under the lock). The thread performs it
   between two collections, so no batch straddles a seek; every batch carries the seek
   generation its collection began at (``RawBatch.seek_gen``), and a batch older than the
   partition's request has that partition's records removed when it is taken (:meth:`get`).
   librdkafka delivers only post-seek records after ``seek`` returns, so the records that
   reach the engine for a partition are contiguous from its stored offset.

Every call on the fills consumer happens on this thread while it runs (the loop's seeks and
Kafka commits are handed over): librdkafka blocks a call from another thread while a
rebalance callback is being served, and that callback waits for the book lock the loop holds.

Records arrive in each partition's offset order (one thread appends them in ``consume``
order; the queue is FIFO).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from pm_polars.daemon.kafka.microbatch import MicroBatcher, RawBatch
from pm_polars.types import TP, Committable

log = logging.getLogger(__name__)

IDLE_GET_S = 0.1  # the loop wakes this often without a batch (republish, lag, stop checks)


class FillOffsets(Protocol):
    """What the loop asks of the fills consumer: seeks and (monitoring) offset commits."""

    def seek(self, tp: TP, offset: int | None) -> None: ...
    def commit(self, offsets: Committable, asynchronous: bool = True) -> None: ...


class Prefetcher:
    """A consumer thread feeding the loop a bounded queue of micro-batches."""

    def __init__(
        self, batcher: MicroBatcher, fills: FillOffsets, depth: int,
        stopping: Callable[[], bool], before_collect: Callable[[], None] = lambda: None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.batcher, self.fills, self.depth = batcher, fills, depth
        self.stopping, self.before_collect = stopping, before_collect
        self.queue: deque[RawBatch] = deque()
        self.ready = threading.Condition()
        self.current = RawBatch()  # being collected (touched only by the thread + callbacks)
        self.seek_gen = 0  # bumped by every re-seek
        self.sought: dict[TP, int] = {}  # partition -> generation of its last re-seek
        self.to_seek: dict[TP, int | None] = {}  # asked for by the loop, done by the thread
        self.to_commit: dict[TP, int] = {}
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pm-prefetch", daemon=True)

    # ---------------------------------------------------------------- the thread
    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping():
                self.before_collect()
                self.current = RawBatch(seek_gen=self._seek_requested())
                self._fill(self.current)
        except BaseException as exc:  # re-raised on the loop's thread by ``get``
            self.error = exc
        finally:
            self.done.set()
            with self.ready:
                self.ready.notify_all()

    def _fill(self, batch: RawBatch) -> None:
        """Collect ``batch`` and queue it. While the queue is full, keep adding to it (up to
        ``max_events``): under a backlog the loop then gets full batches, not the many
        small ones a busy loop would leave behind."""
        while True:
            self.batcher.collect(batch, self.stopping)
            with self.ready:
                if not len(batch):
                    return
                if len(self.queue) < self.depth or self.stopping():
                    self.queue.append(batch)
                    self.ready.notify_all()
                    return
                self.ready.wait(0.05 if len(batch) >= self.batcher.max_events else 0.005)

    # ---------------------------------------------------------------- the loop's side
    def wait(self, timeout: float = IDLE_GET_S) -> None:
        """Until a batch is queued, the thread has stopped, or ``timeout`` (no lock held:
        the thread's rebalance callbacks may need the book lock meanwhile)."""
        with self.ready:
            if not self.queue and not self.done.is_set():
                self.ready.wait(timeout)

    def get(self) -> RawBatch | None:
        """The next batch or ``None``; re-raises the thread's error once it is drained.

        Take it with the book lock held, so no revocation slips in between taking the batch
        and processing it. It is made consistent with the re-seeks asked for so far."""
        with self.ready:
            batch = self.queue.popleft() if self.queue else None
            self.ready.notify_all()
        if batch is None:
            if self.error is not None:
                raise self.error
            return None
        return self._consistent(batch)

    def finished(self) -> bool:
        """The thread has stopped and every batch it queued was taken."""
        with self.ready:
            return self.done.is_set() and not self.queue

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)

    def _consistent(self, batch: RawBatch) -> RawBatch:
        """Without records of partitions whose re-seek was asked for after ``batch`` began
        collecting (they predate the seek)."""
        with self.ready:
            stale = [tp for tp, gen in self.sought.items() if gen > batch.seek_gen]
        if stale:
            batch.drop(stale)
        return batch

    def _seek_requested(self) -> int:
        """Perform the commits and seeks the loop asked for (on this thread, between two
        batches); the seek generation they bring the consumer to."""
        with self.ready:
            todo, self.to_seek, gen = self.to_seek, {}, self.seek_gen
            commits, self.to_commit = self.to_commit, {}
        if commits:
            self.fills.commit(commits)
        for tp, offset in todo.items():
            try:
                self.fills.seek(tp, offset)
            except Exception as exc:  # KafkaException: no longer assigned; a revoke follows
                log.info("event=seek_failed partition=%s:%s error=%r", tp[0], tp[1], exc)
        return gen

    # ---------------------------------------------------------------- under the lock
    def drop(self, tps: Iterable[TP]) -> int:
        """Forget queued and in-collection records of ``tps`` (revoked); how many."""
        tps = list(tps)
        with self.ready:
            dropped = sum(b.drop(tps) for b in self.queue)
        return dropped + self.current.drop(tps)

    def commit(self, offsets: Committable, asynchronous: bool = True) -> None:
        """Commit ``offsets`` to Kafka from this thread, before its next batch (monitoring
        only: Redis holds the offsets that count). A consumer call from the loop's thread
        while a rebalance callback waits for the book lock would deadlock librdkafka."""
        with self.ready:
            self.to_commit.update(offsets)

    def seek(self, tp: TP, offset: int | None) -> None:
        """Ask for ``tp`` to be sought to ``offset``; what was fetched for it before is
        forgotten (queued now, or taken later from a batch that began before the seek)."""
        with self.ready:
            self.seek_gen += 1
            self.sought[tp] = self.seek_gen
            self.to_seek[tp] = offset
            for b in self.queue:
                b.drop([tp])
