"""Decode cost: small-batch latency, then throughput of fills, ticks, a fill/tick mix and
fills with 1% poison records.

Run: ``.venv/bin/python -m bench.decode [--n 100000] [--runs 5] [--small 200] [--calls 50]``.

* small batch: per-call wall and CPU time of ``--small`` mixed valid messages (the latency
  case of the daemon), median of ``--calls`` calls after a warm-up;
* throughput: messages per second (median wall time of ``--runs`` timed runs after one
  warm-up), the median CPU time of the process (all threads; steadier on a busy machine) and
  messages per CPU second; the mix is ``2 * --n`` messages (30% fills) decoded in batches of
  ``--batch`` (daemon-sized). Counts are checked to add up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable

from pm_polars.events import DecodedBatch, decode_messages

POISON: list[bytes | None] = [
    None,  # tombstone
    b"",
    b"not json at all",
    b'{"event_type": "order_fill", "source": "paper", "quantity": 5',  # truncated
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'{"event_type": "order_fill"}{"event_type": "order_fill"}',
    b'{"event_type": "order_fill", "source": "paper", "quantity": "75", "fill_price": 1.0}',
    b'{"event_type": "market_tick", "instrument_token": 256265, "last_price": NaN}',
    b'{"event_type": "market_tick", "instrument_token": 256265, "last_price": -3.5}',
    b'{"event_type": "order_fill", "source": "paper", "quantity": 1.5, "fill_price": 2.0}',
    b'{"event_type": "heartbeat"}',
    b'{"event_type": "order_fill", "source": "paper", "quantity": 5, "fill_price": 2.0,'
    b' "original_signal": {"strategy_id": "S", "instrument_token": 1, "signal_type": "HOLD"}}',
    b'{"event_type": "order_fill", "source": "paper", "quantity": 5,}',  # trailing comma
    b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2.0, "ts": "yesterday"}',
    b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2.0, "ts": true}',
]


def fill(i: int, rng: random.Random) -> bytes:
    event = {
        "event_type": "order_fill",
        "source": "paper",
        "fill_id": f"f-{i:07d}",
        "ts": 1795600550123 + i,
        "quantity": rng.randint(1, 500),
        "fill_price": round(rng.uniform(100.0, 30000.0), 2),
        "fee": 20.0,
        "original_signal": {
            "strategy_id": f"Momentum_NIFTY50_{i % 7}",
            "instrument_token": 256265 + i % 50,
            "signal_type": rng.choice(["BUY", "SELL"]),
        },
    }
    return json.dumps(event).encode()


def tick(i: int, rng: random.Random) -> bytes:
    event = {
        "event_type": "market_tick",
        "instrument_token": 256265 + i % 50,
        "last_price": round(rng.uniform(100.0, 30000.0), 2),
        "ts": 1795600550200 + i,
    }
    return json.dumps(event).encode()


def poisoned(n: int, rng: random.Random, rate: float = 0.01) -> list[bytes | None]:
    msgs: list[bytes | None] = [fill(i, rng) for i in range(n)]
    for i in rng.sample(range(n), int(n * rate)):
        msgs[i] = rng.choice(POISON)
    return msgs


def mixed(n: int, rng: random.Random, fill_share: float = 0.3) -> list[bytes | None]:
    return [fill(i, rng) if rng.random() < fill_share else tick(i, rng) for i in range(n)]


def timed(decode: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``runs`` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        decode()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def measure(name: str, msgs: list[bytes | None], runs: int, batch_size: int = 0) -> None:
    size = batch_size or len(msgs)
    chunks = [msgs[i : i + size] for i in range(0, len(msgs), size)]
    decode: Callable[[list[bytes | None]], DecodedBatch] = decode_messages
    batches = [decode(chunk) for chunk in chunks]  # warm-up, and the correctness check
    assert sum(b.size for b in batches) == len(msgs), (len(msgs), [b.size for b in batches])
    wall_s, cpu_s = timed(lambda: [decode(chunk) for chunk in chunks], runs)
    counts = [sum(getattr(b, f).height for b in batches) for f in ("fills", "ticks", "rejects")]
    print(
        f"{name:<20} {len(msgs) / wall_s:>10,.0f} msgs/s  wall {wall_s * 1e3:6.1f} ms"
        f"  cpu {cpu_s * 1e3:6.1f} ms  {len(msgs) / cpu_s:>10,.0f} msgs/cpu-s"
        f"  (fills {counts[0]}, ticks {counts[1]}, rejects {counts[2]})"
    )


def small_batch(msgs: list[bytes | None], calls: int) -> None:
    for _ in range(5):
        batch = decode_messages(msgs)  # warm-up
    assert batch.size == len(msgs) and batch.rejects.height == 0
    wall_s, cpu_s = timed(lambda: decode_messages(msgs), calls)
    print(
        f"small batch ({len(msgs)} mixed) per call: wall {wall_s * 1e3:.2f} ms"
        f"  cpu {cpu_s * 1e3:.2f} ms  (median of {calls})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(42)
    fills = [fill(i, rng) for i in range(args.n)]
    print(f"mean fill message: {sum(map(len, fills)) / len(fills):.0f} B, cpus: {os.cpu_count()}")
    small_batch(mixed(args.small, rng), args.calls)
    measure("valid fills", list(fills), args.runs)
    measure("valid ticks", [tick(i, rng) for i in range(args.n)], args.runs)
    measure(f"mix 30/70 by {args.batch // 1000}k", mixed(2 * args.n, rng), args.runs, args.batch)
    measure("fills + 1% poison", poisoned(args.n, rng), args.runs)


if __name__ == "__main__":
    main()
