"""Daemon building blocks without services: state codec round trip, tick table reduction,
reject guard, raw batch offsets."""

from __future__ import annotations

import polars as pl
import pytest

from pm_polars import PortfolioEngine
from pm_polars.daemon.book import ticks_only
from pm_polars.daemon.dlq import RejectGuard, RejectRatioExceeded
from pm_polars.daemon.state_codec import decode_snapshot, encode_deltas
from pm_polars.daemon.tick_table import TickTable
from pm_polars.demo.feed import generate_batches
from pm_polars.events import decode_messages


def _engine_and_fills() -> tuple[PortfolioEngine, pl.DataFrame]:
    eng = PortfolioEngine(starting_cash=1e7, dedupe_retention=3600.0)
    applied = []
    for batch in generate_batches(3, 6_000, 1_000, fill_rate=0.3):
        applied.append(eng.apply(batch).fills)
    return eng, pl.concat(applied)


def test_state_round_trips_bit_for_bit() -> None:
    eng, fills = _engine_and_fills()
    snap = eng.snapshot()
    fills = fills.with_columns(pl.lit("t").alias("topic"), pl.lit(0, pl.Int32).alias("partition"))
    delta = encode_deltas(snap, fills, {("t", 0): 6_000}, updated_ns=1)[("t", 0)]
    seen = sorted(delta.seen_add.items())
    back = decode_snapshot(
        delta.positions, delta.cash, delta.marks, seen, delta.meta,
        instruments=snap.instruments, starting_cash=1e7,
        dedupe_retention_ns=snap.meta["dedupe_retention_ns"],
    )
    restored = PortfolioEngine.restore(back)
    key = ["portfolio_id", "instrument_token"]
    assert restored.snapshot().positions.sort(key).equals(snap.positions.sort(key))
    assert restored.snapshot().cash.sort("portfolio_id").equals(snap.cash.sort("portfolio_id"))
    assert back.marks.sort("instrument_token").equals(snap.marks.sort("instrument_token"))
    assert back.seen.height == snap.seen.height
    assert back.meta["clock_ns"] == snap.meta["clock_ns"]
    assert restored.portfolios().equals(eng.portfolios())
    assert delta.meta["next_offset"] == "6000"


def test_reduced_ticks_give_the_same_marks_as_the_whole_batch() -> None:
    values = [v for b in generate_batches(5, 5_000, 5_000, fill_rate=0.0) for v in b]
    ticks = decode_messages(values).ticks
    table = TickTable()
    reduced = table.reduce(ticks)
    assert reduced.height == ticks["instrument_token"].n_unique()
    whole, once = PortfolioEngine(), PortfolioEngine()
    whole.apply_decoded(ticks_only(ticks))
    once.apply_decoded(ticks_only(reduced))
    assert whole.snapshot().marks.sort("instrument_token").equals(
        once.snapshot().marks.sort("instrument_token"))
    wins = table.merge(reduced)
    assert wins.height == reduced.height
    assert table.merge(reduced.with_columns(pl.col("ts") - 1)).height == 0  # older loses


def test_reject_guard_limits_the_ratio_over_the_window() -> None:
    guard = RejectGuard(max_ratio=0.5, window=1000)
    guard.check(500, 400)  # below the window: no verdict yet
    guard.check(500, 0)  # 400 of 1000
    with pytest.raises(RejectRatioExceeded, match="invalid"):
        guard.check(1000, 900)  # window slides: 900 of 1000 (+ part of the past)
    guard.check(1000, 100)  # the refused batch was not remembered
