"""The prefetch thread's bookkeeping: order, bounded queue, drops, seeks and commits on the
consuming thread. (The real consumer, rebalances and stale partitions are exercised against a
real broker in ``tests/integration`` and ``tests/faults``.)"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pm_polars.daemon.kafka.microbatch import MicroBatcher, RawBatch
from pm_polars.daemon.kafka.prefetch import Prefetcher
from pm_polars.types import TP, Committable


@dataclass
class Record:
    """The part of ``confluent_kafka.Message`` the batcher reads."""

    t: str
    p: int
    o: int

    def value(self) -> bytes:
        return f"{self.t}:{self.p}:{self.o}".encode()

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)


@dataclass
class Log:
    """A partitioned log read from per-partition positions; records which thread did what."""

    ends: dict[TP, int]
    per_call: int = 7
    position: dict[TP, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    committed: dict[TP, int] = field(default_factory=dict)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.position = dict.fromkeys(self.ends, 0)
        self.gate.set()

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        self.gate.wait()
        out: list[Record] = []
        for tp, end in self.ends.items():
            while self.position[tp] < end and len(out) < min(max_records, self.per_call):
                out.append(Record(tp[0], tp[1], self.position[tp]))
                self.position[tp] += 1
        if not out:
            time.sleep(timeout)
        return out

    def seek(self, tp: TP, offset: int | None) -> None:
        self.calls.append(("seek", threading.current_thread().name))
        self.position[tp] = offset or 0

    def commit(self, offsets: Committable, asynchronous: bool = True) -> None:
        self.calls.append(("commit", threading.current_thread().name))
        self.committed.update(offsets)


class Empty:
    def consume(self, max_records: int, timeout: float) -> list[Record]:
        time.sleep(timeout)
        return []


A, B = ("fills", 0), ("fills", 1)


def _start(log: Log, depth: int = 2, max_events: int = 20) -> tuple[Prefetcher, threading.Event]:
    stop = threading.Event()
    batcher = MicroBatcher(log, Empty(), max_events, 0.005)  # type: ignore[arg-type]
    pre = Prefetcher(batcher, log, depth, stop.is_set)
    pre.start()
    return pre, stop


def _take(pre: Prefetcher, until: int, limit_s: float = 10.0,
          last: tuple[tuple[str, int, int], ...] = ()) -> list[tuple[str, int, int]]:
    """Batches' rows until ``until`` rows and every row of ``last`` were taken."""
    got: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + limit_s
    while (len(got) < until or not set(last) <= set(got)) and time.monotonic() < deadline:
        pre.wait(0.05)
        batch = pre.get()
        if batch is not None:
            got += _rows(batch)
    return got


def _rows(batch: RawBatch) -> list[tuple[str, int, int]]:
    f = batch.fills
    return list(zip(f.topics, f.partitions, f.offsets, strict=True))


def test_every_record_once_in_offset_order_with_a_bounded_queue() -> None:
    log = Log({A: 300, B: 250})
    pre, stop = _start(log, depth=2)
    try:
        time.sleep(0.3)  # nobody takes: the thread fills the queue and waits
        assert len(pre.queue) == 2
        got = _take(pre, 550)
    finally:
        stop.set()
        pre.join()
    for tp, end in log.ends.items():
        assert [o for t, p, o in got if (t, p) == tp] == list(range(end))
    assert len(got) == 550


def test_drop_forgets_queued_records_of_revoked_partitions() -> None:
    log = Log({A: 100, B: 100})
    pre, stop = _start(log, depth=3)
    try:
        time.sleep(0.3)
        log.gate.clear()  # the thread waits inside consume (as in a rebalance callback)
        queued = sum(len(b) for b in pre.queue)
        a_queued = sum(1 for b in pre.queue for t, p, _ in _rows(b) if (t, p) == A)
        assert a_queued and pre.drop([A]) >= a_queued
        assert sum(len(b) for b in pre.queue) == queued - a_queued
        assert all((t, p) != A for b in pre.queue for t, p, _ in _rows(b))
    finally:
        log.gate.set()
        stop.set()
        pre.join()


def test_a_seek_drops_what_was_fetched_before_it_and_runs_on_the_thread() -> None:
    log = Log({A: 400, B: 400}, per_call=5)
    pre, stop = _start(log, depth=2, max_events=10)
    try:
        first = _take(pre, 30)
        log.gate.clear()
        time.sleep(0.05)
        pre.seek(A, 17)  # e.g. a stale partition reloaded at stored offset 17
        pre.commit({A: 17, B: 5})
        assert not any(c == "seek" for c, _ in log.calls)  # not on the caller's thread
        log.gate.set()
        rest = _take(pre, 0, last=((*A, 399), (*B, 399)))
    finally:
        stop.set()
        pre.join()
    a_after = [o for t, p, o in rest if (t, p) == A]
    assert a_after == list(range(17, 400))  # contiguous from the seek, nothing older
    b_all = [o for t, p, o in first + rest if (t, p) == B]
    assert b_all == list(range(400))
    assert ("seek", "pm-prefetch") in log.calls and ("commit", "pm-prefetch") in log.calls
    assert log.committed == {A: 17, B: 5}


def test_an_error_on_the_thread_reaches_the_loop() -> None:
    class Broken(Log):
        def consume(self, max_records: int, timeout: float) -> list[Record]:
            raise RuntimeError("broker exploded")

    pre, stop = _start(Broken({A: 1}))
    try:
        pre.wait(1.0)
        try:
            pre.get()
        except RuntimeError as exc:
            assert "exploded" in str(exc)
        else:
            raise AssertionError("the thread's error was swallowed")
        assert pre.finished()
    finally:
        stop.set()
        pre.join()
