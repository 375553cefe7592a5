"""Replay: the state rebuilt from the archive equals the live engine's for the same events."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from history_helpers import D3, START, at, batch, build_book, fill, tick
from polars.testing import assert_frame_equal

from pm_polars import PortfolioEngine, Snapshot
from pm_polars.archive import ArchiveWriter, archive_dates, save_engine_config
from pm_polars.archive.replay import arrival_windows, load_ordered, replay
from pm_polars.cli import main
from pm_polars.demo.runner import run_demo

A, B = 256265, 260105
TOPIC = "orders.filled.paper"


def same_state(a: PortfolioEngine, b: PortfolioEngine) -> None:
    assert_frame_equal(a.positions(), b.positions())
    assert_frame_equal(a.portfolios(), b.portfolios())
    sa, sb = a.snapshot(), b.snapshot()
    assert_frame_equal(sa.marks.sort("instrument_token"), sb.marks.sort("instrument_token"))
    assert_frame_equal(sa.seen.sort("source", "fill_id"), sb.seen.sort("source", "fill_id"))
    assert a.clock_ns == b.clock_ns


def kafka_batches(with_ids: bool = True) -> list[list[dict[str, object]]]:
    """Two partitions trading one position each; same-ts ticks decide the marks by arrival.

    The order matters: P1's position is opened, reduced and flipped across batches, so any
    reordering changes its average price and realized P&L. Without ids the engine cannot
    drop repeated fills itself (and the redelivered fill is left out).
    """
    t = at(D3)
    batches = [
        [fill("S1", A, "BUY", 10, 100.0, t, fill_id="1", topic=TOPIC, partition=0, offset=0),
         tick(A, 101.0, t + 5, topic="market.ticks", partition=0, offset=0),
         fill("S2", A, "SELL", 4, 99.0, t, fill_id="2", topic=TOPIC, partition=1, offset=0)],
        [fill("S1", A, "SELL", 3, 103.0, t + 1, fill_id="3", topic=TOPIC, partition=0, offset=1),
         tick(A, 102.0, t + 5, topic="market.ticks", partition=0, offset=1),
         fill("S1", A, "BUY", 2, 98.0, t + 2, fill_id="4", topic=TOPIC, partition=0, offset=2)],
        [fill("S1", A, "SELL", 15, 104.0, t + 3, fill_id="5", topic=TOPIC, partition=0,
              offset=3),
         fill("S2", B, "BUY", 1, 500.0, t + 3, fill_id="6", topic=TOPIC, partition=1, offset=1),
         # a redelivered fill: a duplicate, archived apart and not replayed
         fill("S1", A, "BUY", 10, 100.0, t, fill_id="1", topic=TOPIC, partition=0, offset=0)],
    ]
    if with_ids:
        return batches
    batches[-1] = batches[-1][:-1]  # no id, no redelivery
    return [[{**e, "fill_id": None} if e["kind"] == "fill" else e for e in events]
            for events in batches]


def live_and_archive(root: Path, with_ids: bool = True) -> PortfolioEngine:
    eng = PortfolioEngine(starting_cash=START)
    save_engine_config(root, eng)
    with ArchiveWriter(root, fsync=False) as w:
        for events in kafka_batches(with_ids):
            w.submit(eng.apply_decoded(batch(events)))
    return eng


@pytest.mark.parametrize("chunk", [1, 2, 1_000])
def test_replay_equals_live_whatever_the_chunking(tmp_path: Path, chunk: int) -> None:
    live = live_and_archive(tmp_path)
    same_state(replay(tmp_path, chunk_events=chunk), live)
    # P1 after BUY 10@100, SELL 3@103, BUY 2@98, SELL 15@104: short 6 opened at 104
    p1 = live.positions().filter(pl.col("portfolio_id") == "paper_S1").row(0, named=True)
    assert (p1["quantity"], p1["average_price"]) == (-6, 104.0)
    # realized 3 x 3 + 9 x (104 - 99.5556) where 99.5556 = (7 x 100 + 2 x 98) / 9
    assert p1["realized_pnl"] == pytest.approx(9.0 + 9 * (104.0 - 896.0 / 9))
    assert p1["last_price"] == 102.0  # equal-ts ticks: the later arrival wins


def test_order_key_follows_arrival_across_kinds(tmp_path: Path) -> None:
    live_and_archive(tmp_path)
    ev = load_ordered(tmp_path)
    merged = pl.concat([
        ev.fills.select("seq", pl.col("fill_id").alias("what")),
        ev.ticks.select("seq", pl.col("last_price").cast(pl.String).alias("what")),
    ]).sort("seq")
    assert merged.get_column("what").to_list() == ["1", "101.0", "2", "3", "102.0", "4", "5", "6"]


def test_replay_until_equals_live_on_the_prefix(tmp_path: Path) -> None:
    live_and_archive(tmp_path)
    cutoff = at(D3) + 1
    prefix = PortfolioEngine(starting_cash=START)
    for events in kafka_batches():
        kept = [e for e in events if int(e["ts"]) <= cutoff]  # type: ignore[call-overload]
        prefix.apply_decoded(batch(kept))
    same_state(replay(tmp_path, until_ns=cutoff), prefix)


def test_replay_after_rearchived_offsets_equals_live(tmp_path: Path) -> None:
    live = live_and_archive(tmp_path, with_ids=False)
    # the consumer died before committing the last two batches and archived them again;
    # without fill ids only the archive's offset identity keeps them from counting twice
    with ArchiveWriter(tmp_path, fsync=False) as w:
        for events in kafka_batches(with_ids=False)[1:]:
            w.submit(batch(events))
    same_state(replay(tmp_path), live)


def test_replay_walks_arrival_windows_across_days(tmp_path: Path) -> None:
    live = build_book(tmp_path)
    windows = arrival_windows(tmp_path, archive_dates(tmp_path), chunk_events=1)
    # one batch a day: its fills file and ticks file end at the same arrival -> 3 windows
    assert windows is not None and len(windows) == 3
    assert [w.after for w in windows[1:]] == [w.upto for w in windows[:-1]]
    same_state(replay(tmp_path, chunk_events=1), live)
    same_state(replay(tmp_path), live)


def test_demo_archive_replays_to_the_demo_state(tmp_path: Path) -> None:
    res = run_demo(events=6_000, batch_size=700, seed=5, data_dir=tmp_path, refresh_s=1e9,
                   out=io.StringIO(), archive_root=tmp_path / "archive")
    assert res.duplicates > 0 and res.rejects > 0
    demo = PortfolioEngine.restore(Snapshot.read(res.output_dir / "snapshot"))
    same_state(replay(tmp_path / "archive", chunk_events=2_500), demo)
    out = tmp_path / "rebuilt"
    assert main(["replay", "--archive-root", str(tmp_path / "archive"),
                 "--snapshot-out", str(out)]) == 0
    same_state(PortfolioEngine.restore(Snapshot.read(out)), demo)


def test_replay_rebooks_an_average_cost_archive_fifo(tmp_path: Path) -> None:
    """`pm-polars replay --cost-basis fifo`: the same events booked FIFO (by hand: P1 buys 10
    @ 100, sells 3 @ 103 (+9), buys 2 @ 98, sells 15 @ 104: closes 7 @ 100 (+28) and 2 @ 98
    (+12), then opens a short lot of 6 @ 104)."""
    live_and_archive(tmp_path)
    fifo = replay(tmp_path, cost_basis="fifo")
    p1 = fifo.positions().filter(pl.col("portfolio_id") == "paper_S1").row(0, named=True)
    assert (p1["quantity"], p1["average_price"], p1["realized_pnl"]) == (-6, 104.0, 49.0)
    assert fifo.lots().filter(pl.col("portfolio_id") == "paper_S1")["quantity"].to_list() == [-6]
    out = tmp_path / "fifo-snap"
    assert main(["replay", "--archive-root", str(tmp_path), "--cost-basis", "fifo",
                 "--snapshot-out", str(out)]) == 0
    assert PortfolioEngine.restore(Snapshot.read(out)).config.cost_basis == "fifo"
