"""Bid/ask marks and the price-sign rule next to the default, in the same run.

Run: ``.venv/bin/python -m bench.marks [--runs 5]``. Cases (medians; each case's runs
alternate with its baseline's, so both see the same load on a shared box):

1. 5 x 100k-tick batches over 100 instruments against 10k open positions: ticks without a
   quote vs ticks carrying ``bid``/``ask`` (the marks state keeps the winning quote).
2. Reads over 10k positions (``positions()`` + ``portfolios()``): ``mark="last"`` vs
   ``mark="bid_ask"``; floor: >= 80 % of last (as the issue's floor for currency
   conversion).
3. 5 x 100k-fill batches: the default engine vs one whose instruments allow negative prices
   (the engine step then judges price signs: one ``min`` per price column when all are
   positive).
4. JSON decode of 20k ticks without vs with ``bid``/``ask`` fields, and with
   ``positive_prices=False``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import polars as pl

from bench.engine import batch, fills_frame, report, ticks_frame
from pm_polars import PortfolioEngine
from pm_polars.events import DecodedBatch, decode_messages

POSITIONS = 10_000
INSTRUMENTS = 100  # fills_frame puts 100 strategies on each
FLOOR = 0.80


def _quoted(ticks: pl.DataFrame) -> pl.DataFrame:
    return ticks.with_columns((pl.col("last_price") - 0.05).alias("bid"),
                              (pl.col("last_price") + 0.05).alias("ask"))


def _alternate(cases: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(runs):
        for case, timed in cases.items():
            times[case].append(timed())
    return {c: statistics.median(t) for c, t in times.items()}


def _share(label: str, base: float, secs: float, floor: float | None) -> None:
    limit = f"(floor {floor:.0%})" if floor is not None else "(no floor)"
    print(f"{'':<58} {base / secs:>14.0%} of {label} {limit}", flush=True)


def _opened(mark: str, instruments: pl.DataFrame | None = None) -> PortfolioEngine:
    eng = PortfolioEngine(mark=mark, instruments=instruments)
    eng.apply_decoded(batch(fills_frame(100_000, POSITIONS, seed=1)))
    return eng


def _applying(engine: Callable[[], PortfolioEngine],
              batches: list[DecodedBatch]) -> Callable[[], float]:
    """A timed run: ``batches`` applied to a fresh ``engine()``; seconds."""
    def run() -> float:
        eng = engine()
        start = time.perf_counter()
        for b in batches:
            eng.apply_decoded(b)
        return time.perf_counter() - start
    return run


def tick_rates(runs: int) -> None:
    n, k = 100_000, 5
    plain = [batch(ticks=ticks_frame(n, INSTRUMENTS, seed=j)) for j in range(k)]
    quoted = [DecodedBatch(b.fills, _quoted(b.ticks), b.rejects) for b in plain]
    base = _opened("bid_ask")

    def opened() -> PortfolioEngine:
        return PortfolioEngine.of_state(base.state, base.config)

    secs = _alternate({"plain": _applying(opened, plain), "quoted": _applying(opened, quoted)},
                      runs)
    report(f"{k} x 100k-tick batches, no quote", n * k, secs["plain"], "ticks")
    report(f"{k} x 100k-tick batches, bid and ask", n * k, secs["quoted"], "ticks")
    _share("no quote", secs["plain"], secs["quoted"], None)


def read_rates(runs: int) -> None:
    engines = {}
    for mark in ("last", "bid_ask"):
        eng = _opened(mark)
        eng.apply_decoded(batch(ticks=_quoted(ticks_frame(10_000, INSTRUMENTS, seed=9))))
        engines[mark] = eng

    def timed(eng: PortfolioEngine) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            eng.positions()
            eng.portfolios()
            return time.perf_counter() - start
        return run

    secs = _alternate({m: timed(e) for m, e in engines.items()}, runs * 4)
    for mark in engines:
        report(f"positions() + portfolios(), 10k positions, mark={mark}", POSITIONS,
               secs[mark], "positions")
    _share("mark=last", secs["last"], secs["bid_ask"], FLOOR)


def sign_rates(runs: int) -> None:
    n, k = 100_000, 5
    batches = [batch(fills_frame(n, POSITIONS, seed=j)) for j in range(k)]
    allowing = pl.DataFrame({"instrument_token": [1], "multiplier": [1.0],
                             "allow_negative_price": [True]})

    secs = _alternate({"default": _applying(PortfolioEngine, batches),
                       "allowing": _applying(lambda: PortfolioEngine(instruments=allowing),
                                             batches)}, runs)
    report(f"{k} x 100k-fill batches, default instruments", n * k, secs["default"], "fills")
    report(f"{k} x 100k-fill batches, an instrument allows price <= 0", n * k,
           secs["allowing"], "fills")
    _share("default", secs["default"], secs["allowing"], None)


def _ticks_json(n: int, quoted: bool) -> list[bytes]:
    out = []
    for i in range(n):
        event: dict[str, object] = {"event_type": "market_tick", "instrument_token": i % 500 + 1,
                                    "last_price": 24512.0 + i % 7, "ts": 1_795_600_550_123 + i}
        if quoted:
            event |= {"bid": 24511.5 + i % 7, "ask": 24512.5 + i % 7}
        out.append(json.dumps(event).encode())
    return out


def decode_rates(runs: int) -> None:
    n = 20_000
    plain, quoted = _ticks_json(n, False), _ticks_json(n, True)

    def timed(msgs: list[bytes], positive: bool = True) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            decode_messages(msgs, positive_prices=positive)
            return time.perf_counter() - start
        return run

    secs = _alternate({"plain": timed(plain), "quoted": timed(quoted),
                       "unsigned": timed(quoted, False)}, runs)
    report("decode 20k JSON ticks, no quote", n, secs["plain"], "ticks")
    report("decode 20k JSON ticks, bid and ask", n, secs["quoted"], "ticks")
    report("decode 20k JSON ticks, bid and ask, positive_prices=False", n,
           secs["unsigned"], "ticks")
    _share("no quote", secs["plain"], secs["quoted"], None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    tick_rates(runs)
    read_rates(runs)
    sign_rates(runs)
    decode_rates(runs)


if __name__ == "__main__":
    main()
