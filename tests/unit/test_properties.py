"""Property tests: the columnar engine against the scalar reference on random streams.

Streams mix two sources, three strategies and four instruments (multipliers 1, 50, 25, 1),
fills of 1 to 10**9 units (mixed with tiny ones) at prices from 0.05 to 1e6, deliberate
flips and 99% reductions, ticks whose ts arrive out of order (with ties), re-delivered
fill_ids, and a few invalid records.

Tolerance (see ``reference.compare_books``): quantities exact; average_price to 1e-9
relative to itself; other money to 1e-9 relative to max(|value|, traded notional of the
position / portfolio), because realized and unrealized P&L are differences of notionals
that may be computed as differences of cumulative sums.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from reference import (
    T0,
    EngineBook,
    ReferenceBook,
    assert_books_match,
    compare_books,
    fill,
    tick,
)

SOURCES = ("paper", "live")
STRATEGIES = ("S1", "S2", "S3")
TOKENS = (101, 202, 303, 404)
INSTRUMENTS = [
    {"instrument_token": 202, "tradingsymbol": "FUT202", "multiplier": 50},
    {"instrument_token": 303, "tradingsymbol": "FUT303", "multiplier": 25},
]  # 101 and 404 default to m = 1

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

prices = st.one_of(
    st.floats(min_value=0.05, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.05, max_value=2.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.05, 0.1, 1.0, 99.95, 24510.5, 1e6]),
)
sizes = st.one_of(
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=10**9),
    st.sampled_from([1, 2, 10**9]),
)
fees = st.one_of(
    st.none(),
    st.just(0.0),
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False),
)
timestamps = st.integers(min_value=0, max_value=300).map(lambda k: T0 + k)  # many ties

INVALID_EVENTS: list[dict[str, Any]] = [
    fill("S1", 101, "BUY", 10**9, 1.0, ts=T0 + 999) | {"quantity": 0},
    fill("S2", 202, "SELL", 7, 1.0, ts=T0 + 999) | {"fill_price": math.nan},
    fill("S3", 303, "HOLD", 7, 50.0, ts=T0 + 999),
    fill("S1", 404, "BUY", 7, 50.0, ts=T0 + 999, source="live") | {"fill_price": -1.0},
    tick(101, -5.0, ts=T0 + 999),
    {"event_type": "market_tick", "instrument_token": 202, "ts": T0 + 999},
    {"event_type": "heartbeat", "ts": T0 + 999},
]


@st.composite
def event_streams(draw: st.DrawFn, max_events: int = 60) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=max_events))
    qty: dict[tuple[str, str, int], int] = {}  # tracked to aim flips / reductions
    seen: set[tuple[str, str]] = set()
    used_ids: list[tuple[str, str]] = []
    events: list[dict[str, Any]] = []
    for _ in range(n):
        kind = draw(
            st.sampled_from(["fill", "fill", "fill", "flip", "reduce99", "tick", "tick", "invalid"])
        )
        if kind == "tick":
            events.append(tick(draw(st.sampled_from(TOKENS)), draw(prices), draw(timestamps)))
            continue
        if kind == "invalid":
            events.append(draw(st.sampled_from(INVALID_EVENTS)))
            continue
        source = draw(st.sampled_from(SOURCES))
        strategy = draw(st.sampled_from(STRATEGIES))
        token = draw(st.sampled_from(TOKENS))
        key = (source, strategy, token)
        q = qty.get(key, 0)
        if kind == "flip" and q != 0:
            side = "SELL" if q > 0 else "BUY"
            size = abs(q) + draw(sizes)
        elif kind == "reduce99" and abs(q) >= 2:
            side = "SELL" if q > 0 else "BUY"
            size = abs(q) - max(1, abs(q) // 100)
        else:
            side = draw(st.sampled_from(["BUY", "SELL"]))
            size = draw(sizes)

        id_kind = draw(st.sampled_from(["new", "new", "new", "none", "dup"]))
        if id_kind == "dup" and used_ids:
            dup_source, fill_id = draw(st.sampled_from(used_ids))
            source = draw(st.sampled_from([dup_source, dup_source, "paper", "live"]))
        elif id_kind == "none":
            fill_id = None
        else:
            fill_id = f"f-{len(events)}"
        event = fill(
            strategy,
            token,
            side,
            size,
            draw(prices),
            fee=draw(fees),
            ts=draw(timestamps),
            fill_id=fill_id,
            source=source,
        )
        events.append(event)
        if fill_id is not None:
            if (source, fill_id) in seen:
                continue
            seen.add((source, fill_id))
            used_ids.append((source, fill_id))
        key = (source, strategy, token)
        qty[key] = qty.get(key, 0) + (size if side == "BUY" else -size)
    return events


def _chunks(events: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    bounds = [0, *sorted(set(cuts)), len(events)]
    return [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _reference(events: list[dict[str, Any]]) -> tuple[ReferenceBook, int]:
    ref = ReferenceBook(instruments=INSTRUMENTS)
    return ref, len(ref.apply(events))


@PROPERTY_SETTINGS
@given(events=event_streams())
def test_engine_matches_reference(events: list[dict[str, Any]]) -> None:
    ref, ref_rejects = _reference(events)
    eng = EngineBook.create(instruments=INSTRUMENTS)
    assert len(eng.apply(events)) == ref_rejects
    assert_books_match(eng, ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_streams(max_events=30))
def test_raw_json_bytes_give_the_same_state(events: list[dict[str, Any]]) -> None:
    """The wire form (a list of raw JSON messages) is accounted exactly like the dicts."""
    raw = [json.dumps(e).encode() for e in events]  # NaN prices become the NaN token
    ref, ref_rejects = _reference(events)
    eng = EngineBook.create(instruments=INSTRUMENTS)
    assert len(eng.apply(raw)) == ref_rejects
    assert_books_match(eng, ref)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=event_streams())
def test_batch_invariance(data: st.DataObject, events: list[dict[str, Any]]) -> None:
    cuts = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(events)), max_size=len(events)),
        label="cuts",
    )
    ref, ref_rejects = _reference(events)

    whole = EngineBook.create(instruments=INSTRUMENTS)
    whole.apply(events)

    split = EngineBook.create(instruments=INSTRUMENTS)
    split_rejects = sum(len(split.apply(chunk)) for chunk in _chunks(events, cuts))
    assert split_rejects == ref_rejects

    # split engine == reference (which is sequential, so batch boundaries cannot matter)
    assert_books_match(split, ref)
    # split engine == one-batch engine ("identical state": same quantities exactly, money
    # to the documented tolerance)
    assert_books_match(split, whole)


def _stream_stats(events: list[dict[str, Any]]) -> Counter[str]:
    """Replay through the reference one event at a time and count what happened."""
    ref = ReferenceBook(instruments=INSTRUMENTS)
    stats: Counter[str] = Counter()
    for event in events:
        before = {(r["portfolio_id"], r["instrument_token"]): r for r in ref.positions()}
        token = event.get("instrument_token")
        mark_before = ref.mark(token) if token in TOKENS else None
        stats["rejects"] += len(ref.apply([event]))
        after = {(r["portfolio_id"], r["instrument_token"]): r for r in ref.positions()}
        if event.get("event_type") == "market_tick" and token in TOKENS:
            price = event.get("last_price")
            stats["ticks_ignored"] += ref.mark(token) == mark_before != price
        if event.get("event_type") == "order_fill" and "fill_id" in event and before == after:
            stats["duplicates"] += 1
        for key, row in after.items():
            old_q = before[key]["quantity"] if key in before else 0
            stats["flips"] += old_q * row["quantity"] < 0
            stats["reduced_99"] += 0 < abs(row["quantity"]) * 50 < abs(old_q)
            stats["billion_lots"] += abs(row["quantity"]) >= 10**9 > abs(old_q)
    return stats


def test_stream_generator_produces_the_interesting_cases() -> None:
    """Guard against a silently weak generator: the features the properties rely on occur."""
    totals: Counter[str] = Counter()

    # 200 examples: even seeded, Hypothesis draws differently after other tests ran in the
    # same process (60 examples gave 53 99%-reductions alone and 8 after the unit suite)
    @seed(20261125)
    @settings(max_examples=200, database=None, deadline=None, phases=[Phase.generate])
    @given(events=event_streams())
    def collect(events: list[dict[str, Any]]) -> None:
        totals.update(_stream_stats(events))

    collect()
    for feature in ("flips", "reduced_99", "billion_lots", "duplicates", "rejects"):
        assert totals[feature] >= 20, totals
    assert totals["ticks_ignored"] >= 5, totals


# ---------------------------------------------------------------------------------------
# Deterministic hot position: 10**5 fills in one batch
# ---------------------------------------------------------------------------------------


def _hot_stream(n: int, seed: int) -> list[dict[str, Any]]:
    """One position, three phases.

    First and last 40%: an unbroken same-direction run of "reduce by 99%, add back to ~1e9"
    cycles (thousands of 0.01 factors within one open segment: a cumulative product of
    quantity ratios underflows to 0 after ~160 of them). Middle 20%: flips, exact closes,
    tiny trades, 99% reductions and add-backs mixed at random.
    """
    rng = random.Random(seed)
    price = 24_510.5
    q = 0
    events: list[dict[str, Any]] = []
    for i in range(n):
        if rng.random() < 0.05:  # occasional jump across the whole price range
            price = math.exp(rng.uniform(math.log(0.05), math.log(1e6)))
        else:
            price = max(0.05, price * math.exp(rng.gauss(0.0, 0.002)))
        away = "SELL" if q > 0 else "BUY"
        toward = "BUY" if q > 0 else "SELL"
        r = rng.random()
        mixed = 0.4 * n <= i < 0.6 * n
        if q == 0:
            side, size = rng.choice(["BUY", "SELL"]), rng.randint(1, 10**9)
        elif (r < 0.35 or (not mixed and r < 0.5)) and abs(q) >= 2:  # reduce by 99%
            side, size = away, abs(q) - max(1, abs(q) // 100)
        elif r < 0.70 or not mixed:  # add back up to ~1e9
            side, size = toward, max(1, 10**9 - abs(q) + rng.randint(-1000, 1000))
        elif r < 0.85:  # flip
            side, size = away, abs(q) + rng.randint(1, 10**9)
        elif r < 0.95:  # tiny trade either way
            side, size = rng.choice(["BUY", "SELL"]), rng.randint(1, 10)
        else:  # close exactly
            side, size = away, abs(q)
        events.append(
            fill(
                "HOT",
                202,
                side,
                size,
                round(price, 2),
                fee=round(rng.uniform(0.0, 50.0), 2),
                ts=T0 + i,
                fill_id=f"hot-{i}",
            )
        )
        q += size if side == "BUY" else -size
    return events


def test_hot_position_100k_fills_one_batch() -> None:
    events = _hot_stream(100_000, seed=20261125)
    events.append(tick(202, 24_600.0, ts=T0 + 10**6))  # a final mark after every fill
    ref, ref_rejects = _reference(events)
    assert ref_rejects == 0
    # the stream must actually exercise what it claims to
    quantities = [0]
    for e in events[:-1]:
        q = e["quantity"] if e["original_signal"]["signal_type"] == "BUY" else -e["quantity"]
        quantities.append(quantities[-1] + q)
    steps = list(zip(quantities, quantities[1:], strict=False))
    flips = sum(1 for a, b in steps if a * b < 0)
    # longest run of 99% reductions inside one open segment (no flat, no flip in between)
    longest = run = 0
    for a, b in steps:
        if a * b <= 0:
            run = 0
        elif 0 < abs(b) * 50 < abs(a):
            run += 1
            longest = max(longest, run)
    assert flips > 1_000 and longest > 10_000, (flips, longest)

    eng = EngineBook.create(instruments=INSTRUMENTS)
    assert eng.apply(events) == []
    assert_books_match(eng, ref)


# ---------------------------------------------------------------------------------------
# The comparison itself must be able to fail: plausible engine bugs are detected
# ---------------------------------------------------------------------------------------


class _OlderTickOverwrites(ReferenceBook):
    def _apply_tick(self, tick: Any) -> None:
        self._tick_marks[tick.instrument_token] = (tick.ts, tick.price)


class _NoDedupe(ReferenceBook):
    def _apply_fill(self, fill: Any) -> bool:
        self._seen_fill_ids.clear()
        return super()._apply_fill(fill)


class _FlipKeepsOldAverage(ReferenceBook):
    def _apply_fill(self, fill: Any) -> bool:
        pos = self._positions.get((fill.portfolio_id, fill.instrument_token))
        old_q, old_avg = (pos.quantity, pos.average_price) if pos else (0, 0.0)
        applied = super()._apply_fill(fill)
        pos = self._positions.get((fill.portfolio_id, fill.instrument_token))
        if pos is not None and old_q * pos.quantity < 0:
            pos.average_price = old_avg
        return applied


class _NoMultiplier(ReferenceBook):
    def multiplier(self, token: int) -> float:
        return 1.0


class _TsOrderWithinBatch(ReferenceBook):
    def apply(self, events: Any) -> list[tuple[Any, str]]:
        events = list(events)
        return super().apply(sorted(events, key=lambda e: e.get("ts") or 0))


@pytest.mark.parametrize(
    "mutant",
    [_OlderTickOverwrites, _NoDedupe, _FlipKeepsOldAverage, _NoMultiplier, _TsOrderWithinBatch],
)
def test_comparison_detects_plausible_bugs(mutant: type[ReferenceBook]) -> None:
    events = [
        fill("S1", 202, "BUY", 10, 100.0, ts=T0 + 9, fill_id="a"),
        fill("S1", 202, "BUY", 10, 100.0, ts=T0 + 9, fill_id="a"),
        fill("S1", 202, "SELL", 25, 110.0, ts=T0 + 1, fill_id="b"),
        tick(202, 105.0, ts=T0 + 20),
        tick(202, 90.0, ts=T0 + 10),
        fill("S2", 101, "SELL", 3, 7.0, ts=T0 + 5, fill_id="c"),
        fill("S3", 404, "BUY", 10, 100.0, ts=T0 + 10),
        fill("S3", 404, "SELL", 4, 110.0, ts=T0 + 1),
        fill("S3", 404, "BUY", 6, 120.0, ts=T0 + 5),
    ]
    ref, _ = _reference(events)
    bad = mutant(instruments=INSTRUMENTS)
    bad.apply(events)
    assert compare_books(bad, ref), f"{mutant.__name__} went unnoticed"
