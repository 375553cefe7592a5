"""Snapshot / restore: exact round trips, and continuing after a restore.

A restored engine must be indistinguishable from the original: identical frames (exact
float equality, same dtypes), identical documents and AUM, and identical behaviour on later
events -- which exercises every piece of hidden state: the dedupe memory (a re-delivered
fill after restore is still ignored), the ts of the latest tick and of the latest fill per
instrument (an older tick / fill after restore must not overwrite the mark), the
instruments' multipliers and the starting cash of portfolios created after the restore.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from reference import (
    T0,
    EngineBook,
    ReferenceBook,
    assert_books_match,
    engine_class,
    fill,
    position,
    tick,
)

START = 250_000.0
NIFTY = 256265  # lot size 50
RELIANCE = 738561  # no instrument row -> multiplier 1
BANKNIFTY = 260105  # lot size 15
INSTRUMENTS = [
    {"instrument_token": NIFTY, "tradingsymbol": "NIFTY25NOVFUT", "lot_size": 50},
    {"instrument_token": BANKNIFTY, "tradingsymbol": "BANKNIFTY25NOVFUT", "lot_size": 15},
]

FIRST = [
    fill("MOM", NIFTY, "BUY", 3, 24_500.0, fee=20.0, ts=T0 + 10, fill_id="f-1"),
    fill("MOM", NIFTY, "SELL", 1, 24_520.0, fee=20.0, ts=T0 + 20, fill_id="f-2"),
    fill("MR", RELIANCE, "SELL", 40, 2_900.0, fee=5.0, ts=T0 + 30, fill_id="f-1", source="live"),
    fill("MR", RELIANCE, "BUY", 10, 2_890.0, ts=T0 + 40, fill_id="f-3", source="live"),
    tick(NIFTY, 24_530.0, ts=T0 + 1_000),
    fill("MOM", BANKNIFTY, "BUY", 2, 51_000.0, ts=T0 + 500, fill_id="f-4"),
    fill("MOM", RELIANCE, "BUY", 5, 2_895.0, ts=T0 + 45, fill_id="f-5"),
]
# hand numbers at the snapshot (used to check the restored engine independently):
#   paper_MOM NIFTY (m=50): q 2 @ 24,500, realized 1*20*50 = 1,000, mark 24,530
#             unrealized = 30 * 2 * 50 = 3,000
#   paper_MOM BANKNIFTY (m=15): q 2 @ 51,000, mark = its only fill 51,000
#   live_MR RELIANCE: q -30 @ 2,900, realized 10*(2,890-2,900)*(-1) = 100
#   RELIANCE mark (no tick) = latest fill by ts: f-5 @ 2,895 (T0+45)

SECOND = [
    # re-deliveries of fills seen before the snapshot: ignored
    fill("MOM", NIFTY, "BUY", 3, 24_500.0, fee=20.0, ts=T0 + 10, fill_id="f-1"),
    fill("MR", RELIANCE, "SELL", 40, 2_900.0, fee=5.0, ts=T0 + 9_999, fill_id="f-1",
         source="live"),
    # an older tick: ignored (mark stays 24,530)
    tick(NIFTY, 10.0, ts=T0 + 999),
    # an older fill for an instrument without ticks: applies to the position, but does not
    # move the fallback mark (2,895 stays)
    fill("MR", RELIANCE, "BUY", 10, 2_800.0, ts=T0 + 1, fill_id="f-6", source="live"),
    # a brand-new portfolio: starts from the snapshot's starting cash, uses lot size 15
    fill("NEW", BANKNIFTY, "SELL", 1, 51_100.0, ts=T0 + 600, fill_id="f-7"),
]


def _sorted(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return df.sort(keys)


def assert_engines_identical(a: Any, b: Any) -> None:
    """Exact equality of every public view (no tolerance: a snapshot is lossless)."""
    assert_frame_equal(
        _sorted(a.positions(), ["portfolio_id", "instrument_token"]),
        _sorted(b.positions(), ["portfolio_id", "instrument_token"]),
        check_exact=True,
    )
    assert_frame_equal(
        _sorted(a.portfolios(), ["portfolio_id"]),
        _sorted(b.portfolios(), ["portfolio_id"]),
        check_exact=True,
    )
    assert a.aum() == b.aum()
    pids = a.portfolios()["portfolio_id"].to_list()
    sources = sorted(set(a.portfolios()["source"].to_list()))
    for pid in pids + [f"{s}_Overall" for s in sources]:
        assert a.portfolio(pid) == b.portfolio(pid), pid


def _new_engine() -> Any:
    return engine_class()(starting_cash=START, instruments=pl.DataFrame(INSTRUMENTS))


def _restore(snap: Any, via: str, tmp_path: Path) -> Any:
    cls = engine_class()
    if via == "memory":
        return cls.restore(snap)
    written = snap.write(tmp_path / "snapshot")
    read_back = type(snap).read(written if written is not None else tmp_path / "snapshot")
    return cls.restore(read_back)


@pytest.mark.parametrize("via", ["memory", "parquet"])
def test_round_trip_is_exact(via: str, tmp_path: Path) -> None:
    eng = _new_engine()
    eng.apply(FIRST)
    restored = _restore(eng.snapshot(), via, tmp_path)
    assert_engines_identical(restored, eng)

    # and the restored numbers are the hand-worked ones
    book = EngineBook(restored)
    nifty = position(book, "paper_MOM", NIFTY)
    assert nifty["quantity"] == 2 and nifty["multiplier"] == 50.0
    assert nifty["realized_pnl"] == pytest.approx(1_000.0, rel=1e-12)
    assert nifty["unrealized_pnl"] == pytest.approx(3_000.0, rel=1e-12)
    reliance = position(book, "live_MR", RELIANCE)
    assert reliance["quantity"] == -30 and reliance["last_price"] == 2_895.0
    assert reliance["realized_pnl"] == pytest.approx(100.0, rel=1e-12)


@pytest.mark.parametrize("via", ["memory", "parquet"])
def test_continue_after_restore_equals_never_snapshotting(via: str, tmp_path: Path) -> None:
    never = _new_engine()
    never.apply(FIRST)
    never.apply(SECOND)

    eng = _new_engine()
    eng.apply(FIRST)
    restored = _restore(eng.snapshot(), via, tmp_path)
    assert len(restored.apply(SECOND).rejects) == 0
    assert_engines_identical(restored, never)

    ref = ReferenceBook(starting_cash=START, instruments=INSTRUMENTS)
    ref.apply(FIRST)
    ref.apply(SECOND)
    book = EngineBook(restored)
    assert_books_match(book, ref, starting_cash=START)

    # hand-worked effects of SECOND on the restored engine:
    # duplicates ignored -> NIFTY still q 2; live f-1 re-delivery ignored
    assert position(book, "paper_MOM", NIFTY)["quantity"] == 2
    # older tick ignored -> NIFTY mark 24,530; unrealized still 30 * 2 * 50 = 3,000
    assert position(book, "paper_MOM", NIFTY)["last_price"] == 24_530.0
    # f-6 covers 10 of the short 30 @ 2,900 at 2,800: realized += 10 * 100 = 1,000 -> 1,100;
    # q -20; the fallback mark stays 2,895 (f-6 is older) -> unrealized = -5 * -20 = 100
    reliance = position(book, "live_MR", RELIANCE)
    assert reliance["quantity"] == -20 and reliance["last_price"] == 2_895.0
    assert reliance["realized_pnl"] == pytest.approx(1_100.0, rel=1e-12)
    assert reliance["unrealized_pnl"] == pytest.approx(100.0, rel=1e-12)
    # new portfolio: short 1 BANKNIFTY @ 51,100 x 15 -> cash = 250,000 + 766,500 = 1,016,500
    # BANKNIFTY mark = latest fill by ts = f-7 (T0+600) @ 51,100
    new = [r for r in book.portfolios() if r["portfolio_id"] == "paper_NEW"]
    assert len(new) == 1
    assert new[0]["cash"] == pytest.approx(1_016_500.0, rel=1e-12)
    assert new[0]["equity"] == pytest.approx(250_000.0, rel=1e-12)
    assert position(book, "paper_MOM", BANKNIFTY)["last_price"] == 51_100.0


def test_equal_ts_tick_after_restore_wins(tmp_path: Path) -> None:
    eng = _new_engine()
    eng.apply(FIRST)
    restored = _restore(eng.snapshot(), "parquet", tmp_path)
    restored.apply([tick(NIFTY, 24_540.0, ts=T0 + 1_000)])  # same ts as the stored tick
    # unrealized = (24,540 - 24,500) * 2 * 50 = 4,000
    nifty = position(EngineBook(restored), "paper_MOM", NIFTY)
    assert nifty["last_price"] == 24_540.0
    assert nifty["unrealized_pnl"] == pytest.approx(4_000.0, rel=1e-12)


def test_snapshot_is_not_affected_by_later_applies() -> None:
    eng = _new_engine()
    eng.apply(FIRST)
    snap = eng.snapshot()
    at_snapshot = _new_engine()
    at_snapshot.apply(FIRST)
    eng.apply(SECOND)  # must not leak into the snapshot taken before
    assert_engines_identical(engine_class().restore(snap), at_snapshot)


@pytest.mark.parametrize("via", ["memory", "parquet"])
def test_empty_engine_round_trip(via: str, tmp_path: Path) -> None:
    eng = _new_engine()
    restored = _restore(eng.snapshot(), via, tmp_path)
    assert restored.positions().height == 0
    assert restored.portfolios().height == 0
    # starting cash and instruments survive even with no positions:
    # BUY 1 NIFTY @ 100 x 50 -> cash = 250,000 - 5,000
    restored.apply([fill("A", NIFTY, "BUY", 1, 100.0, ts=T0)])
    row = EngineBook(restored).portfolios()[0]
    assert row["cash"] == pytest.approx(245_000.0, rel=1e-12)
    assert row["equity"] == pytest.approx(250_000.0, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Property: snapshot at a random point, restore (memory or Parquet), continue
# ---------------------------------------------------------------------------------------

_tokens = st.sampled_from([NIFTY, RELIANCE, BANKNIFTY])
_prices = st.floats(min_value=0.05, max_value=1e6, allow_nan=False, allow_infinity=False)
_ts = st.integers(min_value=0, max_value=100).map(lambda k: T0 + k)


@st.composite
def _streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        if draw(st.booleans()):
            events.append(tick(draw(_tokens), draw(_prices), draw(_ts)))
            continue
        events.append(
            fill(
                draw(st.sampled_from(["A", "B"])),
                draw(_tokens),
                draw(st.sampled_from(["BUY", "SELL"])),
                draw(st.one_of(st.integers(1, 10), st.integers(1, 10**9))),
                draw(_prices),
                fee=draw(st.floats(min_value=0, max_value=50)),
                ts=draw(_ts),
                # a small id pool: re-deliveries straddle the snapshot point
                fill_id=f"f-{draw(st.integers(0, 15))}" if draw(st.booleans()) else f"u-{i}",
                source=draw(st.sampled_from(["paper", "live"])),
            )
        )
    return events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=_streams(), via=st.sampled_from(["memory", "parquet"]))
def test_snapshot_anywhere_then_continue(
    data: st.DataObject, events: list[dict[str, Any]], via: str
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(events)), label="cut")
    before, after = events[:cut], events[cut:]

    never = _new_engine()
    never.apply(before)
    never.apply(after)

    eng = _new_engine()
    eng.apply(before)
    with tempfile.TemporaryDirectory() as tmp:
        restored = _restore(eng.snapshot(), via, Path(tmp))
    restored.apply(after)
    assert_engines_identical(restored, never)

    ref = ReferenceBook(starting_cash=START, instruments=INSTRUMENTS)
    ref.apply(events)
    assert_books_match(EngineBook(restored), ref, starting_cash=START)
