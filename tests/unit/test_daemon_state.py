"""Daemon building blocks without services: state codec round trip, tick table reduction,
reject guard, raw batch offsets."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest
from confluent_kafka import Message
from support.resp import parse_commands

from pm_polars import PortfolioEngine
from pm_polars.daemon.book import ticks_only
from pm_polars.daemon.checkpoint.codec import decode_state, encode_state
from pm_polars.daemon.kafka.dlq import RejectGuard, RejectRatioExceeded
from pm_polars.daemon.kafka.microbatch import RawBatch
from pm_polars.daemon.tick_table import TickTable
from pm_polars.demo.feed import generate_batches
from pm_polars.engine.state import EngineState, merge
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
    writes = encode_state(eng.state, eng.config.dedupe_retention_ns, fills, {("t", 0): 6_000},
                          updated_ns=1, key=lambda tp, table: f"{tp[0]}:{tp[1]}:{table}")
    cmds = [[a.decode() for a in c] for c in parse_commands(b"".join(writes.commands))]
    assert len(cmds) == writes.count
    assert sorted(tuple(c[:2]) for c in cmds) == [
        ("HSET", "t:0:cash"), ("HSET", "t:0:marks"), ("HSET", "t:0:meta"),
        ("HSET", "t:0:positions"), ("ZADD", "t:0:seen"), ("ZREMRANGEBYSCORE", "t:0:seen")]
    tables = {c[1]: dict(zip(c[2::2], c[3::2], strict=True)) for c in cmds if c[0] == "HSET"}
    zadd = next(c for c in cmds if c[0] == "ZADD")
    seen = sorted((m, float(s)) for s, m in zip(zadd[2::2], zadd[3::2], strict=True))
    back = decode_state(
        tables["t:0:positions"], tables["t:0:cash"], tables["t:0:marks"], seen,
        tables["t:0:meta"], instruments=snap.instruments,
    )
    restored = PortfolioEngine.of_state(back, eng.config)
    key = ["portfolio_id", "instrument_token"]
    assert restored.snapshot().positions.sort(key).equals(snap.positions.sort(key))
    assert restored.snapshot().cash.sort("portfolio_id").equals(snap.cash.sort("portfolio_id"))
    assert back.marks.sort("instrument_token").equals(snap.marks.sort("instrument_token"))
    assert back.seen.size == snap.seen.height
    assert back.clock_ns == snap.clock_ns
    assert restored.portfolios().equals(eng.portfolios())
    assert tables["t:0:meta"]["next_offset"] == "6000"


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
    assert len(wins) == reduced.height == len(table.prices)
    assert table.merge(reduced.with_columns(pl.col("ts") - 1)) == []  # older loses


def test_reject_guard_limits_the_ratio_over_the_window() -> None:
    guard = RejectGuard(max_ratio=0.5, window=1000)
    guard.check(500, 400)  # below the window: no verdict yet
    guard.check(500, 0)  # 400 of 1000
    with pytest.raises(RejectRatioExceeded, match="invalid"):
        guard.check(1000, 900)  # window slides: 900 of 1000 (+ part of the past)
    guard.check(1000, 100)  # the refused batch was not remembered


def test_raw_batch_columns_offsets_and_dropped_partitions() -> None:
    def msgs(topic: str, partition: int, offsets: range) -> list[Message]:
        return [Message(topic=topic, partition=partition, offset=o, value=b"%d" % o,
                        timestamp=(1, 1_000 + o)) for o in offsets]

    batch = RawBatch()
    batch.add_fills(msgs("f", 0, range(3)) + msgs("f", 1, range(10, 12)), owned={("f", 0), ("f", 1)})
    batch.add_fills(msgs("f", 0, range(3, 5)) + msgs("f", 2, range(2)), owned={("f", 0), ("f", 1)})
    batch.add_ticks(msgs("ticks", 1, range(7, 9)))
    assert len(batch) == 9  # the revoked partition 2's records were dropped on arrival
    assert batch.committable == {("f", 0): 5, ("f", 1): 12, ("ticks", 1): 9}
    assert batch.fills.values == [b"0", b"1", b"2", b"10", b"11", b"3", b"4"]
    assert batch.fills.stamps[:2] == [1_000, 1_001]
    assert batch.drop([("f", 1)]) == 2
    assert batch.committable == {("f", 0): 5, ("ticks", 1): 9}
    assert batch.fills.offsets == [0, 1, 2, 3, 4]


def _fill(fill_id: str, ts_s: int) -> dict[str, object]:
    return {"event_type": "order_fill", "source": "paper", "fill_id": fill_id,
            "ts": 1_795_600_000_000 + ts_s * 1000, "quantity": 1, "fill_price": 100.0,
            "original_signal": {"strategy_id": "S", "instrument_token": 1,
                                "signal_type": "BUY"}}


def test_merged_states_keep_the_newest_sighting_of_an_id() -> None:
    """An id seen, expired and seen again is in a state twice until a sweep; a partition
    load (``engine.state.merge``) must keep the newer sighting, so a redelivery of the
    second fill still counts once."""
    eng = PortfolioEngine(dedupe_retention=160)
    eng.apply([_fill("f0", 0)])
    stale = eng.snapshot().seen
    eng.apply([_fill("f1", 165)])  # the clock passes 160: f0 expires
    eng.apply([_fill("f0", 166)])  # a new fill reusing the id
    assert eng.positions()["quantity"].to_list() == [3]
    now = eng.snapshot()
    twice = replace(now, seen=pl.concat([stale, now.seen])).state()  # before the next sweep
    empty = EngineState.empty()
    for a, b in ((twice, empty), (empty, twice)):
        again = PortfolioEngine.of_state(merge(a, b), eng.config)
        res = again.apply([_fill("f0", 166)])  # the second f0, redelivered
        assert res.duplicates.height == 1
        assert again.positions()["quantity"].to_list() == [3]


def test_undo_keeps_the_dedupe_index_and_a_snapshot_is_indexed_from_its_frame() -> None:
    eng = PortfolioEngine(dedupe_retention=160)
    eng.apply([_fill("f0", 0), _fill("f1", 1)])
    before = eng.state
    eng.apply([_fill("f2", 2)])
    eng.state = before  # the daemon's undo: keep the previous state, nothing re-indexed
    assert eng.state.seen is before.seen
    assert eng.apply([_fill("f2", 2)]).fills_applied == 1  # f2 was undone with its batch
    snap = PortfolioEngine.restore(eng.snapshot()).snapshot()
    fewer = replace(snap, seen=snap.seen.filter(pl.col("fill_id") == "f1"))
    again = PortfolioEngine.restore(fewer)  # another seen frame: indexed from the frame
    res = again.apply([_fill("f0", 2), _fill("f1", 2)])
    assert res.duplicates["fill_id"].to_list() == ["f1"]
    assert again.positions()["quantity"].to_list() == [4]  # f0, f1, f2, then f0 again
