"""Steady-state scenario of ``bench/pipeline.py``: a growing book, measured from Redis.

A steady ``rate`` events/s (70 % ticks over 100 instruments, the rest fills over 200
portfolios) plus a probe fill for a NEW portfolio every 20 ms (the book grows by 50
portfolios/s). Latency of a probe = its produce time (the ``ts`` it carries, ms) -> the
``portfolio-updates`` message naming its portfolio, seen by a Redis subscriber (a thread of
this process). A bare consumer (a forked process, tuned like the daemon: fetch.wait.max.ms
10, ``consume(1000, 2 ms)``) reads the same probes in the same run: produce -> consume.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

PROBE = "probe"
TOKENS = [1_000 + i for i in range(100)]
BOOK = [f"steady_{i:03d}" for i in range(200)]
PROBE_ID = re.compile(rb'"strategy_id":"(probe_\d+_\d+)"')


@dataclass
class Figures:
    """Latencies (s) by probe index of the daemon (to Redis) and the bare consumer."""

    daemon: dict[int, float]
    bare: dict[int, float]
    probes: int

    @staticmethod
    def _q(values: list[float], q: float) -> float:
        s = sorted(values)
        return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")

    def summary(self) -> dict[str, float]:
        d, b = list(self.daemon.values()), list(self.bare.values())
        tenth = max(1, self.probes // 10)
        first = [v for i, v in self.daemon.items() if i < tenth]
        last = [v for i, v in self.daemon.items() if i >= self.probes - tenth]
        return {"p50": self._q(d, 0.5), "p99": self._q(d, 0.99),
                "bare_p50": self._q(b, 0.5), "bare_p99": self._q(b, 0.99),
                "first_p50": self._q(first, 0.5), "last_p50": self._q(last, 0.5),
                "first_p99": self._q(first, 0.99), "last_p99": self._q(last, 0.99),
                "missing": float(self.probes - len(d))}


def _fill(pid_source: str, strategy: str, token: int, side: str, ts: int, n: int) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": pid_source, "fill_id": f"s-{n}", "ts": ts,
        "quantity": 10, "fill_price": 100.0 + (n % 7) * 0.05, "fee": 1.0,
        "original_signal": {"strategy_id": strategy, "instrument_token": token,
                            "signal_type": side}}, separators=(",", ":")).encode()


def produce_steady(bootstrap: str, names: dict[str, str], rate: float, seconds: float,
                   seed: int) -> int:
    """Produce the scenario for ``seconds``; returns the number of probes sent."""
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    fills, ticks = names["orders.filled.paper"], names["market.ticks"]
    start, n, probes = time.perf_counter(), 0, 0
    while (elapsed := time.perf_counter() - start) < seconds:
        now_ms = time.time_ns() // 1_000_000
        while probes * 0.020 <= elapsed:  # a new portfolio every 20 ms
            strategy = f"{PROBE}_{probes}_{now_ms}"
            producer.produce(fills, key=f"paper_{strategy}".encode(),
                             value=_fill("paper", strategy, TOKENS[probes % 100], "BUY",
                                         now_ms, 10_000_000 + probes))
            probes += 1
        while n < rate * elapsed:
            if rng.random() < 0.7:
                tok = TOKENS[rng.randrange(100)]
                price = 100.0 + rng.randrange(-200, 200) * 0.05
                value = (f'{{"event_type":"market_tick","instrument_token":{tok},'
                         f'"last_price":{price!r},"ts":{now_ms}}}').encode()
                producer.produce(ticks, key=str(tok).encode(), value=value)
            else:
                i = rng.randrange(len(BOOK))
                side = "BUY" if n % 2 else "SELL"
                producer.produce(fills, key=f"paper_{BOOK[i]}".encode(),
                                 value=_fill("paper", BOOK[i], TOKENS[i % 100], side, now_ms, n))
            n += 1
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(30)
    return probes


def _bare(bootstrap: str, names: dict[str, str], parts: int,
          out: Queue[tuple[int, float]]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-steady-bare",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                         "fetch.queue.backoff.ms": 10})
    consumer.assign([TopicPartition(names["orders.filled.paper"], p, OFFSET_END)
                     for p in range(parts)])
    deadline = time.time() + 3.0
    while time.time() < deadline:  # fetch sessions up before the probes start
        consumer.consume(1000, 0.002)
    out.put((-1, 0.0))
    idle_since = None
    while True:
        msgs = consumer.consume(num_messages=1000, timeout=0.002)
        now = time.time()
        for m in msgs:
            if m.error() is None and (hit := PROBE_ID.search(m.value() or b"")):
                _, idx, ts = hit.group(1).split(b"_")
                out.put((int(idx), now - int(ts) / 1000))
        if msgs:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since > 4.0:
            break
    out.put((-2, 0.0))
    consumer.close()


def _subscribe(client, channel: str, got: dict[int, float], stop: threading.Event  # type: ignore[no-untyped-def]
               ) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    while not stop.is_set():
        msg = pubsub.get_message(timeout=0.05)
        if msg is None:
            continue
        now = time.time()
        for pid in json.loads(msg["data"])["portfolio_ids"]:
            if pid.startswith(f"paper_{PROBE}_"):
                _, _, idx, ts = pid.split("_")
                got.setdefault(int(idx), now - int(ts) / 1000)
    pubsub.close()


def run_steady(bootstrap: str, client, names: dict[str, str], fill_parts: int,  # type: ignore[no-untyped-def]
               rate: float, seconds: float, channel: str = "portfolio-updates") -> Figures:
    """Run the scenario against a warm daemon; latencies from Redis and a bare consumer."""
    ctx = multiprocessing.get_context("fork")
    bare_q: Queue[tuple[int, float]] = ctx.Queue()
    bare = ctx.Process(target=_bare, args=(bootstrap, names, fill_parts, bare_q))
    bare.start()
    assert bare_q.get(timeout=60) == (-1, 0.0)
    got: dict[int, float] = {}
    stop = threading.Event()
    sub = threading.Thread(target=_subscribe, args=(client, channel, got, stop), daemon=True)
    sub.start()
    time.sleep(0.3)
    counter = ctx.Queue()
    feeder = ctx.Process(target=lambda: counter.put(
        produce_steady(bootstrap, names, rate, seconds, seed=11)))
    feeder.start()
    probes = counter.get(timeout=seconds + 120)
    feeder.join()
    bare_lags: dict[int, float] = {}
    while (item := bare_q.get(timeout=120))[0] != -2:
        bare_lags[item[0]] = item[1]
    bare.join()
    deadline = time.time() + 10
    while len(got) < probes and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    sub.join()
    return Figures(dict(got), bare_lags, probes)


def report(runs: list[dict[str, float]]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ms = {k: v * 1e3 for k, v in med.items() if k != "missing"}
    return (f"steady (median of {len(runs)}): daemon p50 {ms['p50']:.1f} ms, p99 "
            f"{ms['p99']:.1f} ms; bare consumer p50 {ms['bare_p50']:.1f} ms, p99 "
            f"{ms['bare_p99']:.1f} ms; difference p50 {ms['p50'] - ms['bare_p50']:+.1f} ms, "
            f"p99 {ms['p99'] - ms['bare_p99']:+.1f} ms (floor +30 ms each); first tenth p50/p99 "
            f"{ms['first_p50']:.1f}/{ms['first_p99']:.1f} ms, last tenth "
            f"{ms['last_p50']:.1f}/{ms['last_p99']:.1f} ms; probes missing "
            f"{med['missing']:.0f}")
