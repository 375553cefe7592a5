"""Decode throughput: 100k fills, 100k ticks, 100k fills with 1% poison records.

Run: ``.venv/bin/python bench/decode.py [--n 100000] [--runs 5]``. Prints messages per second
(median wall time of ``--runs`` timed runs after one warm-up), the median CPU time of the
process (all threads; a check on figures taken on a busy machine) and checks the counts add
up.
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


def measure(name: str, msgs: list[bytes | None], runs: int) -> None:
    decode: Callable[[list[bytes | None]], DecodedBatch] = decode_messages
    batch = decode(msgs)  # warm-up, and the correctness check
    assert batch.size == len(msgs), (batch.size, len(msgs))
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        decode(msgs)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    wall_s, cpu_s = statistics.median(walls), statistics.median(cpus)
    print(
        f"{name:<20} {len(msgs) / wall_s:>10,.0f} msgs/s  wall {wall_s * 1e3:6.1f} ms"
        f"  cpu {cpu_s * 1e3:6.1f} ms  (fills {batch.fills.height}, ticks {batch.ticks.height},"
        f" rejects {batch.rejects.height})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(42)
    fills = [fill(i, rng) for i in range(args.n)]
    print(f"mean fill message: {sum(map(len, fills)) / len(fills):.0f} B, cpus: {os.cpu_count()}")
    measure("valid fills", list(fills), args.runs)
    measure("valid ticks", [tick(i, rng) for i in range(args.n)], args.runs)
    measure("fills + 1% poison", poisoned(args.n, rng), args.runs)


if __name__ == "__main__":
    main()
