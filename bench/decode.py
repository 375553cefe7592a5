"""Decode cost against its limit, the native JSON reader on the same bytes in the same run.

Run: ``.venv/bin/python -m bench.decode [--n 100000] [--runs 5] [--batch 10000]``.

Every figure is messages per second, the median of ``--runs`` timed runs after a warm-up,
printed next to its limit and the ratio (both measured in this run, so the ratio holds on a
busy machine while the absolute figures move):

* the native readers, on ``b"\\n".join(messages)`` (the join is timed too: a caller holding
  a list of Kafka values must make it): pyarrow's JSON reader with the explicit wire schema
  (the reader ``pm_polars.events`` uses, so its ratio is the decode's own overhead) and
  ``pl.read_ndjson`` with the wire schema;
* decode cases: clean fills, clean ticks, a 30/70 fill/tick mix in ``--batch`` batches, and
  fills with 1% poison records (limit: the clean fills' decode rate, floor 50%);
* the engine from raw JSON: ``--engine-n`` mixed events in ``--batch`` batches through
  ``PortfolioEngine.apply(list[bytes])``, against ``pl.read_ndjson`` on the same bytes and
  batches (floor: >= 50% and >= 500k ev/s), with the split decode vs apply;
* a small batch's latency (``--small`` mixed messages per call).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable

import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from pm_polars import PortfolioEngine
from pm_polars.events import decode_messages
from pm_polars.events.schema import arrow_schema

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
POLARS_SCHEMA: dict[str, pl.DataType] = {
    "event_type": pl.String(),
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts": pl.Int64(),
    "quantity": pl.Int64(),
    "fill_price": pl.Float64(),
    "fee": pl.Float64(),
    "original_signal": pl.Struct(
        {"strategy_id": pl.String, "instrument_token": pl.Int64, "signal_type": pl.String}
    ),
    "instrument_token": pl.Int64(),
    "last_price": pl.Float64(),
}
Msgs = list[bytes | None]


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


def poisoned(n: int, rng: random.Random, rate: float = 0.01) -> Msgs:
    msgs: Msgs = [fill(i, rng) for i in range(n)]
    for i in rng.sample(range(n), int(n * rate)):
        msgs[i] = rng.choice(POISON)
    return msgs


def mixed(n: int, rng: random.Random, fill_share: float = 0.3) -> Msgs:
    return [fill(i, rng) if rng.random() < fill_share else tick(i, rng) for i in range(n)]


def chunks(msgs: Msgs, size: int) -> list[Msgs]:
    return [msgs[i : i + size] for i in range(0, len(msgs), size)]


def interleaved(works: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall seconds of each of ``works``, run in turn ``runs`` times after one warm-up each,
    so that every ratio compares runs made moments apart (other load on the machine moves
    the absolute figures, much less the ratios)."""
    for work in works.values():
        work()
    walls: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(runs):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            walls[name].append(time.perf_counter() - start)
    return walls


def median_s(work: Callable[[], object], runs: int) -> float:
    """Median wall seconds of ``runs`` calls of ``work`` after one warm-up call."""
    return statistics.median(interleaved({"work": work}, runs)["work"])


def ratio(walls: dict[str, list[float]], name: str, limit: str) -> float:
    """Median over the runs of (rate of ``name``) / (rate of ``limit``)."""
    return statistics.median(lim / got for got, lim in zip(walls[name], walls[limit], strict=True))


def _joined(batch: Msgs) -> bytes:
    return b"\n".join(m for m in batch if m is not None)


def pyarrow_read(batches: list[Msgs]) -> None:
    options = pj.ParseOptions(explicit_schema=arrow_schema("int", False))
    for b in batches:
        pj.read_json(pa.py_buffer(_joined(b)), parse_options=options)


def polars_read(batches: list[Msgs]) -> None:
    for b in batches:
        pl.read_ndjson(_joined(b), schema=POLARS_SCHEMA)


def decode_all(batches: list[Msgs]) -> None:
    for b in batches:
        decode_messages(b)


def row(
    label: str, n: int, walls: dict[str, list[float]], name: str, limit: str, floor: float | None
) -> None:
    rate, lim = (n / statistics.median(walls[k]) for k in (name, limit))
    r = ratio(walls, name, limit)
    verdict = "" if floor is None else f"  floor {floor:.0%}: " + ("ok" if r >= floor else "BELOW")
    print(f"{label:<24} {rate:>11,.0f}/s  vs {limit:<18} {lim:>11,.0f}/s  = {r:5.0%}{verdict}")


def decode_case(label: str, msgs: Msgs, batch: int, runs: int) -> None:
    """Print decode vs both native readers, measured in turn."""
    batches = chunks(msgs, batch)
    check = [decode_messages(b) for b in batches]
    assert sum(b.size for b in check) == len(msgs)
    walls = interleaved(
        {
            "decode": lambda: decode_all(batches),
            "pyarrow (explicit)": lambda: pyarrow_read(batches),
            "pl.read_ndjson": lambda: polars_read(batches),
        },
        runs,
    )
    row(label, len(msgs), walls, "decode", "pyarrow (explicit)", 0.8)
    row("", len(msgs), walls, "decode", "pl.read_ndjson", None)


def poison_case(clean: Msgs, bad: Msgs, batch: int, runs: int) -> None:
    """1% poison against the clean fills' decode, measured in turn."""
    good, poisoned_ = chunks(clean, batch), chunks(bad, batch)
    walls = interleaved(
        {
            "1% poison": lambda: decode_all(poisoned_),
            "clean decode": lambda: decode_all(good),
            "pyarrow (explicit)": lambda: pyarrow_read(good),
        },
        runs,
    )
    row("fills + 1% poison", len(bad), walls, "1% poison", "clean decode", 0.5)
    row("", len(bad), walls, "1% poison", "pyarrow (explicit)", None)


def engine_case(n: int, batch: int, runs: int, rng: random.Random) -> None:
    """``n`` mixed events in ``batch``-event batches through ``PortfolioEngine.apply``."""
    batches = chunks(mixed(n, rng), batch)
    split: dict[str, list[float]] = {"decode": [], "apply": []}

    def run() -> None:
        eng = PortfolioEngine()
        for b in batches:
            eng.apply(b)

    def run_split() -> None:
        eng, d, a = PortfolioEngine(), 0.0, 0.0
        for b in batches:
            start = time.perf_counter()
            decoded = decode_messages(b)
            mid = time.perf_counter()
            eng.apply_decoded(decoded)
            d, a = d + mid - start, a + time.perf_counter() - mid
        split["decode"].append(d)
        split["apply"].append(a)

    walls = interleaved(
        {"engine.apply": run, "pl.read_ndjson": lambda: polars_read(batches), "split": run_split},
        runs,
    )
    row(f"engine {n // 1000}k in {batch // 1000}k", n, walls, "engine.apply", "pl.read_ndjson", 0.5)
    rate = n / statistics.median(walls["engine.apply"])
    d, a = (statistics.median(split[k][1:]) for k in ("decode", "apply"))
    print(
        f"{'':<24} of which decode {d * 1e3:.0f} ms ({n / d:,.0f}/s), apply {a * 1e3:.0f} ms"
        f" ({n / a:,.0f}/s); floor 500,000/s: {'ok' if rate >= 500_000 else 'BELOW'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--engine-n", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(42)
    fills: Msgs = [fill(i, rng) for i in range(args.n)]
    sizes = sum(len(m or b"") for m in fills) / len(fills)
    print(
        f"{args.n:,} messages per case in {args.batch:,}-message batches, mean fill"
        f" {sizes:.0f} B, median of {args.runs} runs, cpus {os.cpu_count()}"
    )
    decode_case("clean fills", fills, args.batch, args.runs)
    decode_case("clean ticks", [tick(i, rng) for i in range(args.n)], args.batch, args.runs)
    decode_case("mixed 30/70", mixed(args.n, rng), args.batch, args.runs)
    poison_case(fills, poisoned(args.n, rng), args.batch, args.runs)
    engine_case(args.engine_n, args.batch, args.runs, rng)
    small = mixed(args.small, rng)
    wall = median_s(lambda: decode_messages(small), 50)
    print(f"small batch ({args.small} mixed): {wall * 1e3:.2f} ms per call (median of 50)")


if __name__ == "__main__":
    main()
