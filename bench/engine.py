"""Engine throughput: fills/s and ticks/s on decoded (Arrow/Polars) batches.

Run: ``.venv/bin/python -m bench.engine [--runs 5]``. Prints the median of ``--runs`` runs
for each case. Inputs are generated columnarly (hash-based pseudo-random numbers), so the
generator never dominates. Cases:

1. 1M-fill batches over 10k positions
2. 100k-fill batches over 10k positions          (floor: >= 1.5M fills/s)
3. 10k-fill micro-batches over 10k positions
4. one hot position with 10^5 fills in one batch (flips, reduce/add cycles)
5. 100k-tick batches over 10k instruments        (floor: >= 10M ticks/s)
6. 1k-tick batch against 1M open positions vs against 10k open positions: the cost must
   follow the touched positions, not all positions
7. raw JSON bytes -> decode -> apply, 100k mixed events (the daemon's per-batch work)
8. accounting modes (FIFO, fractional quantities) next to average cost on the same fills,
   and the JSON decode of fractional quantities (``bench.modes``)
9. 5 x 100k-fill batches each spanning a trading-day roll (split in two, rolled once)

Day figures (issue 14): every rate is printed next to the rate of the engine *before* the
trading day existed ("without"), measured in the same run: that engine's tree is taken from
git (the parent of the first commit that added ``day_roll_tz``) and its ``bench.engine`` is
run in a subprocess on the same inputs, after ours. Floor: with >= 85 % of without.
``--no-baseline`` skips it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import polars as pl

from pm_polars import PortfolioEngine
from pm_polars.engine.snapshot import Snapshot
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA, conform, empty

TS0 = 1_795_600_000_000_000_000


def fills_frame(n: int, positions: int, seed: int = 0, strategies: int = 100) -> pl.DataFrame:
    """``n`` fills spread over ``positions`` (portfolio, instrument) pairs."""
    i = pl.int_range(n, dtype=pl.Int64)
    pos = (i.hash(seed) % positions).cast(pl.Int64)
    qty = (i.hash(seed + 1) % 99 + 1).cast(pl.Int64)
    buy = (i.hash(seed + 2) % 2) == 0
    strategy = pl.lit("S") + (pos % strategies).cast(pl.String)
    frame = pl.select(
        seq=i,
        portfolio_id=pl.lit("paper_") + strategy,
        source=pl.lit("paper"),
        strategy_id=strategy,
        instrument_token=pos // strategies + 1,
        side=pl.when(buy).then(pl.lit("BUY")).otherwise(pl.lit("SELL")),
        quantity=qty,
        signed_qty=pl.when(buy).then(qty).otherwise(-qty),
        fill_price=90 + (i.hash(seed + 3) % 2000).cast(pl.Float64) / 100,
        fee=pl.lit(1.0),
        fill_id=pl.lit(f"s{seed}-") + i.cast(pl.String),
        ts=i + TS0,
    )
    return conform(frame, FILL_SCHEMA)


def ticks_frame(n: int, instruments: int, seed: int = 0) -> pl.DataFrame:
    i = pl.int_range(n, dtype=pl.Int64)
    frame = pl.select(
        seq=i,
        instrument_token=(i.hash(seed) % instruments).cast(pl.Int64) + 1,
        last_price=90 + (i.hash(seed + 1) % 2000).cast(pl.Float64) / 100,
        ts=i + TS0 + seed * n,
    )
    return conform(frame, TICK_SCHEMA)


def hot_position(n: int) -> pl.DataFrame:
    """One position: reduce 99%, add back, flip, repeat (stresses the scan's products)."""
    i = pl.int_range(n, dtype=pl.Int64)
    phase = i % 4
    qty = (
        pl.when(phase == 0).then(1_000_000).when(phase == 1).then(990_000)
        .when(phase == 2).then(1_990_000).otherwise(1_000_000)
    )
    buy = (phase == 0) | (phase == 3)
    frame = pl.select(
        seq=i, portfolio_id=pl.lit("paper_HOT"), source=pl.lit("paper"),
        strategy_id=pl.lit("HOT"), instrument_token=pl.lit(1, pl.Int64),
        side=pl.when(buy).then(pl.lit("BUY")).otherwise(pl.lit("SELL")),
        quantity=qty.cast(pl.Int64),
        signed_qty=pl.when(buy).then(qty).otherwise(-qty).cast(pl.Int64),
        fill_price=100 + (i.hash(7) % 1000).cast(pl.Float64) / 100,
        fee=pl.lit(0.0), fill_id=pl.lit(None, pl.String), ts=i + TS0,
    )
    return conform(frame, FILL_SCHEMA)


def batch(fills: pl.DataFrame | None = None, ticks: pl.DataFrame | None = None) -> DecodedBatch:
    return DecodedBatch(
        fills=fills if fills is not None else empty(FILL_SCHEMA),
        ticks=ticks if ticks is not None else empty(TICK_SCHEMA),
        rejects=empty(REJECT_SCHEMA),
    )


def median_seconds(
    runs: int, make_engine: Callable[[], PortfolioEngine], batches: list[DecodedBatch]
) -> float:
    """Median wall time of applying ``batches`` in order to a fresh ``make_engine()``."""
    times = []
    for _ in range(runs):
        eng = make_engine()
        start = time.perf_counter()
        for b in batches:
            eng.apply_decoded(b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


RESULTS: dict[str, float] = {}  # label -> events/s of this run


def report(label: str, events: int, seconds: float, unit: str) -> None:
    RESULTS[label] = events / seconds
    print(f"{label:<58} {events / seconds:>14,.0f} {unit}/s   ({seconds * 1e3:8.1f} ms)",
          flush=True)


FLOOR = 0.85
_LINE = re.compile(r"^(.{58}) +([\d,]+) \w+/s")


def baseline_rates(runs: int) -> dict[str, float] | None:
    """Rates of the engine before day figures (its own ``bench.engine``, from git)."""
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    try:
        first = subprocess.run(
            [*git, "log", "--format=%H", "--reverse", "-S", "day_roll_tz", "--",
             "pm_polars/engine/config.py"], capture_output=True, text=True, check=True,
        ).stdout.split()
        if not first:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run([*git, "archive", f"{first[0]}^", "pm_polars", "bench"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            out = subprocess.run([sys.executable, "-m", "bench.engine", "--runs", str(runs)],
                                 cwd=tmp, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"(no baseline: {exc})")
        return None
    rates = {}
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            rates[m.group(1).rstrip()] = float(m.group(2).replace(",", ""))
    return rates


def compare(base: dict[str, float]) -> None:
    print(f"\nwith day figures vs without (the engine before them), floor {FLOOR:.0%}:")
    for label, rate in RESULTS.items():
        old = base.get(label)
        if old is None:
            print(f"{label:<58} {rate:>14,.0f}   without: n/a (new case)")
            continue
        ratio = rate / old
        verdict = "ok" if ratio >= FLOOR else "BELOW FLOOR"
        print(f"{label:<58} {rate:>14,.0f} vs {old:>14,.0f}  {ratio:6.1%}  {verdict}")


def open_engine(positions: int) -> PortfolioEngine:
    """An engine holding exactly ``positions`` open long positions (100 per instrument)."""
    eng = PortfolioEngine()
    fills = fills_frame(positions, positions, seed=99).with_columns(
        pl.col("seq").alias("instrument_token") // 100 + 1,
        (pl.lit("paper_S") + (pl.col("seq") % 100).cast(pl.String)).alias("portfolio_id"),
        (pl.lit("S") + (pl.col("seq") % 100).cast(pl.String)).alias("strategy_id"),
        pl.lit("BUY").alias("side"),
        pl.col("quantity").alias("signed_qty"),
    )
    eng.apply_decoded(batch(fills))
    return eng


def with_seen_ids(snap: Snapshot, n: int) -> Snapshot:
    """``snap`` remembering ``n`` more fill ids (dedupe memory of a long day, 24 h kept)."""
    i = pl.int_range(n, dtype=pl.Int64, eager=True)
    seen = pl.DataFrame({"source": "live", "fill_id": "old-" + i.cast(pl.String), "ts": TS0 + i})
    return replace(snap, seen=pl.concat([snap.seen, seen], how="diagonal"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not measure the engine before day figures")
    args = parser.parse_args()
    runs = args.runs
    print(f"pm_polars engine benchmark, median of {runs} runs, polars {pl.__version__}")

    big = [batch(fills_frame(1_000_000, 10_000))]
    report("1M-fill batch, 10k positions", 1_000_000,
           median_seconds(runs, PortfolioEngine, big), "fills")

    mid = [batch(fills_frame(100_000, 10_000, seed=k)) for k in range(5)]
    report("5 x 100k-fill batches, 10k positions", 500_000,
           median_seconds(runs, PortfolioEngine, mid), "fills")

    small = [batch(fills_frame(10_000, 10_000, seed=k)) for k in range(20)]
    report("20 x 10k-fill micro-batches, 10k positions", 200_000,
           median_seconds(runs, PortfolioEngine, small), "fills")

    hot = [batch(hot_position(100_000))]
    report("hot position, 1e5 fills in one batch", 100_000,
           median_seconds(runs, PortfolioEngine, hot), "fills")

    warm = open_engine(10_000).snapshot()
    ticks = [batch(ticks=ticks_frame(100_000, 100, seed=k)) for k in range(5)]
    report("5 x 100k-tick batches, 10k open positions", 500_000,
           median_seconds(runs, partial(PortfolioEngine.restore, warm), ticks), "ticks")

    for n_open in (10_000, 1_000_000):
        state = open_engine(n_open).snapshot()
        one_k = [batch(ticks=ticks_frame(1_000, 10, seed=1))]
        seconds = median_seconds(runs, partial(PortfolioEngine.restore, state), one_k)
        report(f"1k-tick batch (10 instruments), {n_open:,} open positions", 1_000,
               seconds, "ticks")

    for remembered in (10_000, 1_000_000, 10_000_000):
        state = with_seen_ids(open_engine(10_000).snapshot(), remembered)
        small_batches = [batch(fills_frame(40, 10_000, seed=k)) for k in range(20)]
        seconds = median_seconds(runs, partial(PortfolioEngine.restore, state), small_batches)
        report(f"20 x 40-fill batches, {remembered:,} remembered fill ids", 800, seconds,
               "fills")

    raw = _json_messages(100_000)
    times = []
    for _ in range(runs):
        eng = PortfolioEngine()
        start = time.perf_counter()
        eng.apply(raw)
        times.append(time.perf_counter() - start)
    report("100k raw JSON messages (80% fills) decode+apply", 100_000,
           statistics.median(times), "events")

    day_ns = 86_400 * 10**9  # each batch's ts spread over two trading days
    rolling = [batch(fills_frame(100_000, 10_000, seed=k).with_columns(
        (pl.lit(TS0 + k * 2 * day_ns) + pl.col("seq") * (2 * day_ns // 100_000))
        .alias("ts"))) for k in range(5)]
    report("5 x 100k-fill batches, each across a day roll", 500_000,
           median_seconds(runs, PortfolioEngine, rolling), "fills")

    from bench import modes  # imports this module: import late

    modes.run(runs)
    modes.decode_rates(runs)

    if not args.no_baseline:
        base = baseline_rates(runs)
        if base:
            compare(base)


def _json_messages(n: int) -> list[bytes]:
    fills = fills_frame(n, 10_000).to_dicts()
    out = []
    for k, f in enumerate(fills):
        if k % 5 == 4:
            out.append(json.dumps({"event_type": "market_tick",
                                   "instrument_token": f["instrument_token"],
                                   "last_price": f["fill_price"], "ts": f["ts"]}).encode())
            continue
        out.append(json.dumps({
            "event_type": "order_fill", "source": f["source"], "fill_id": f["fill_id"],
            "ts": f["ts"], "quantity": f["quantity"], "fill_price": f["fill_price"],
            "fee": f["fee"], "original_signal": {"strategy_id": f["strategy_id"],
                                                 "instrument_token": f["instrument_token"],
                                                 "signal_type": f["side"]}}).encode())
    return out


if __name__ == "__main__":
    main()
