"""Input trust, classes 1 and 2 (issue 11): event time and the dedupe window.

Before: one far-future ``ts`` moved the dedupe clock, after which a re-delivered fill was
applied a second time, and the same kind of tick froze the instrument's mark for good;
``ts`` units were guessed by magnitude; whether an old duplicate was caught depended on the
batching; a fill older than the window was re-applied silently; the same ``fill_id`` with
other content was dropped as a plain duplicate.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_polars import PortfolioEngine
from pm_polars.engine.config import EngineConfig

T = 1_795_600_550_123  # ms
DAY = 86_400_000


def fill(fill_id: str | None, ts: int | None, qty: int = 5, price: float = 10.0,
         side: str = "BUY") -> bytes:
    event: dict[str, Any] = {
        "event_type": "order_fill", "source": "paper", "fill_id": fill_id, "quantity": qty,
        "fill_price": price, "original_signal": {"strategy_id": "S", "instrument_token": 1,
                                                 "signal_type": side}}
    if ts is not None:
        event["ts"] = ts
    return json.dumps(event).encode()


def tick(ts: int | None, price: float) -> bytes:
    event: dict[str, Any] = {"event_type": "market_tick", "instrument_token": 1,
                             "last_price": price}
    if ts is not None:
        event["ts"] = ts
    return json.dumps(event).encode()


def test_a_far_future_event_cannot_move_the_clock_or_freeze_a_mark() -> None:
    eng = PortfolioEngine(dedupe_retention=86_400)
    eng.apply([fill("f1", T)])
    far = eng.apply([tick(T + 100 * DAY, 99.0), fill("x", T + 3650 * DAY)])
    assert [r.split(" is more than")[1][:16] for r in far.rejects["reason"]] == [
        " max_jump 7d ahe", " max_jump 7d ahe"]
    assert eng.clock_ns == T * 10**6  # the clock did not move
    again = eng.apply([fill("f1", T), tick(T + 1000, 11.0)])
    assert again.duplicates.height == 1 and again.rejects.height == 0  # still a duplicate
    [row] = eng.positions().rows(named=True)
    assert row["quantity"] == 5 and row["last_price"] == 11.0  # the mark is not frozen


def test_the_jump_is_judged_event_by_event_from_the_accepted_mark() -> None:
    config = EngineConfig(max_jump_ns=10 * 10**6)  # 10 ms
    eng = PortfolioEngine(config=config)
    got = eng.apply([tick(T, 1.0), tick(T + 10, 2.0), tick(T + 25, 3.0), tick(T + 20, 4.0)])
    assert got.rejects["seq"].to_list() == [2]  # 25 > 10 + 10; 20 <= 10 + 10
    assert eng.clock_ns == (T + 20) * 10**6


def test_the_wall_clock_bound_refuses_events_ahead_of_now() -> None:
    eng = PortfolioEngine(config=EngineConfig(max_skew_ns=60 * 10**9))
    now = time.time_ns() // 10**6
    got = eng.apply([tick(now + 3_600_000, 5.0), tick(now, 6.0), tick(T, 7.0)])
    assert got.rejects["seq"].to_list() == [0]
    assert "is more than max_skew 1m ahead of this host's clock" in got.rejects["reason"][0]
    assert got.ticks.height == 2  # a historical tick (T) is fine


def test_a_backtest_over_a_long_weekend_runs_as_is() -> None:
    eng = PortfolioEngine(dedupe_retention=86_400)
    friday, tuesday = T, T + 4 * DAY
    got = eng.apply([fill("a", friday), fill("b", tuesday), fill("c", tuesday + 1)])
    assert got.rejects.height == 0 and got.fills.height == 3


def test_a_fill_older_than_the_window_is_refused_naming_it_whatever_the_batching() -> None:
    stream = [fill("f1", T), tick(T + 2 * DAY, 11.0), fill("f1", T), fill("f2", T + 1)]
    whole = PortfolioEngine(dedupe_retention=86_400)
    one = whole.apply(stream)
    split = PortfolioEngine(dedupe_retention=86_400)
    parts = [split.apply(stream[:2]), split.apply(stream[2:3]), split.apply(stream[3:])]
    for rejects in (one.rejects, *[p.rejects for p in parts]):
        for reason in rejects["reason"]:
            assert "older than the dedupe window (dedupe_retention 1d)" in reason
    assert one.rejects["seq"].to_list() == [2, 3]
    assert sum(p.rejects.height for p in parts) == 2
    assert whole.positions()["quantity"].to_list() == split.positions()["quantity"].to_list() \
        == [5]


def test_a_conflicting_resend_is_refused_with_its_own_reason_and_counter() -> None:
    eng = PortfolioEngine()
    eng.apply([fill("f1", T)])
    for changed in (fill("f1", T, qty=6), fill("f1", T, price=10.5), fill("f1", T, side="SELL")):
        got = eng.apply([changed])
        assert got.conflicts == 1 and got.duplicates.height == 0
        assert got.rejects["reason"][0].startswith(
            "fill_id: conflicts with the fill already applied as ('paper', 'f1')")
    same = eng.apply([fill("f1", T + 5)])  # a redelivery (its ts may differ)
    assert same.duplicates.height == 1 and same.conflicts == 0
    assert eng.positions()[["quantity", "average_price"]].rows() == [(5, 10.0)]
    in_batch = PortfolioEngine().apply([fill("g", T), fill("g", T, qty=9), fill("g", T)])
    assert (in_batch.fills.height, in_batch.conflicts, in_batch.duplicates.height) == (1, 1, 1)


def test_a_conflict_is_still_a_conflict_after_a_snapshot_restore(tmp_path: Any) -> None:
    eng = PortfolioEngine()
    eng.apply([fill("f1", T)])
    back = PortfolioEngine.restore(eng.snapshot().write(tmp_path / "snap"))
    assert back.apply([fill("f1", T, qty=7)]).conflicts == 1
    assert back.apply([fill("f1", T)]).duplicates.height == 1


events = st.lists(
    st.one_of(
        st.builds(fill, st.sampled_from(["a", "b", "c", None]),
                  st.none() | st.integers(0, 5).map(lambda d: T + d * DAY // 2),
                  st.sampled_from([5, 6])),
        st.builds(tick, st.none() | st.integers(0, 40).map(lambda d: T + d * DAY // 8),
                  st.sampled_from([10.0, 11.0])),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.lists(st.integers(0, 14), max_size=5), st.sampled_from([None, 86_400]))
def test_ts_less_and_old_events_give_the_same_verdicts_however_batched(
    stream: list[bytes], cuts: list[int], retention: int | None
) -> None:
    whole = PortfolioEngine(dedupe_retention=retention)
    one = whole.apply(stream)
    split = PortfolioEngine(dedupe_retention=retention)
    bounds = [0, *sorted({min(c, len(stream)) for c in cuts}), len(stream)]
    parts = [split.apply(stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)
             if b > a]
    # seq restarts per batch: compare verdicts by position in the stream
    offsets = [a for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    rejected = sorted(o + s for o, p in zip(offsets, parts, strict=True)
                      for s in p.rejects["seq"].to_list())
    dups = sorted(o + s for o, p in zip(offsets, parts, strict=True)
                  for s in p.duplicates["seq"].to_list())
    assert rejected == one.rejects["seq"].to_list()
    assert dups == one.duplicates["seq"].to_list()
    assert whole.clock_ns == split.clock_ns
    assert whole.positions().rows() == split.positions().rows()
    assert whole.snapshot().seen.sort("fill_id")["ts"].to_list() == \
        split.snapshot().seen.sort("fill_id")["ts"].to_list() or retention is not None


@pytest.mark.parametrize("ts", [1_795_600_550, 1_795_600_550_123_000, 1_795_600_550_123_000_000])
def test_other_units_are_refused_not_rescaled(ts: int) -> None:
    got = PortfolioEngine().apply([tick(ts, 1.0)])
    assert got.ticks.height == 0
    assert got.rejects["reason"][0].startswith("ts: must be epoch milliseconds")


def test_a_ts_less_tick_counts_from_the_newest_ts_so_far_also_across_batches() -> None:
    """Found by the property above: a ts-less tick after an older tick of a later batch took
    that older tick's ts, lost to the stored mark, and the state depended on the cut."""
    stream = [fill("a", None), tick(None, 10.0), *[fill("a", None)] * 4, tick(None, 10.0),
              tick(T + 3 * 3_600_000, 11.0), tick(T, 10.0), tick(None, 10.0)]
    whole = PortfolioEngine()
    whole.apply(stream)
    split = PortfolioEngine()
    split.apply(stream[:8])
    split.apply(stream[8:])
    for eng in (whole, split):
        assert eng.state.marks.select("tick_price", "tick_ts").rows() == [
            (10.0, (T + 3 * 3_600_000) * 10**6)]
