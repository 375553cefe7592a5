"""Archive writer, readers and compaction: layout, atomicity, idempotent re-archiving."""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import count
from pathlib import Path

import polars as pl
import pytest
from history_helpers import D2, D3, START, at, batch, fill, reject, tick

from pm_polars import PortfolioEngine
from pm_polars.analytics import connect
from pm_polars.archive import ArchiveWriter, read
from pm_polars.archive.compact import compact
from pm_polars.archive.layout import has_overlaps, parse_file_name
from pm_polars.archive.writer import start_local_archive

TOKEN = 256265
TOPIC = "orders.filled.paper"


def files(root: Path, kind: str = "fills") -> list[str]:
    return sorted(str(p.relative_to(root / kind)) for p in (root / kind).rglob("*.parquet"))


def kafka_fills(first: int, last: int, partition: int = 3) -> list[dict[str, object]]:
    """Fills with offsets first..last on one partition: alternating 1-lot buys and sells."""
    return [
        fill("S1", TOKEN, "BUY" if o % 2 == 0 else "SELL", 1, 100.0 + o, at(D3, 4, 0, o % 60),
             fill_id=f"f-{o}", topic=TOPIC, partition=partition, offset=o)
        for o in range(first, last + 1)
    ]


def clock(start: int = 1_000) -> Callable[[], int]:
    it = count(start)
    return lambda: next(it)


def test_partitions_by_kind_and_event_date_and_names_by_offsets(tmp_path: Path) -> None:
    events = [
        *kafka_fills(1234, 1235),
        fill("S1", TOKEN, "BUY", 1, 100.0, at(D2, 9), topic=TOPIC, partition=3, offset=1236),
        tick(TOKEN, 101.0, at(D3, 5), topic="market.ticks", partition=0, offset=7),
        reject("quantity: must be > 0", topic=TOPIC, partition=3, offset=1237),
    ]
    arrival = at(D3, 6)
    with ArchiveWriter(tmp_path, fsync=False) as w:
        w.submit(batch(events), arrival_ns=arrival)
    assert files(tmp_path) == [
        "date=2026-11-24/orders.filled.paper-p3-o000000001236-000000001236.parquet",
        "date=2026-11-25/orders.filled.paper-p3-o000000001234-000000001235.parquet",
    ]
    assert files(tmp_path, "ticks") == [
        "date=2026-11-25/market.ticks-p0-o000000000007-000000000007.parquet"]
    # rejects have no event time: their date is the arrival date
    assert files(tmp_path, "rejects") == [
        "date=2026-11-25/orders.filled.paper-p3-o000000001237-000000001237.parquet"]
    back = read(tmp_path, "fills")
    assert back.get_column("offset").to_list() == [1234, 1235, 1236]  # arrival order
    assert set(back.get_column("arrival_ns").to_list()) == {arrival}
    assert set(back.get_column("batch_id").to_list()) == {0}
    assert read(tmp_path, "rejects").get_column("reason").to_list() == ["quantity: must be > 0"]


def test_buffers_until_max_rows_then_cuts_files(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, max_rows=4, max_age_s=1e9, fsync=False)
    for first in range(0, 10, 2):
        w.submit(batch(kafka_fills(first, first + 1)))
    # 10 rows in batches of 2 -> files of 4, 4 and (after flush) 2 rows
    assert [parse_file_name(Path(f)).first for f in files(tmp_path)] == [0, 4]  # type: ignore[union-attr]
    assert w.buffered_rows == 2
    w.close()
    assert len(files(tmp_path)) == 3
    assert read(tmp_path, "fills").height == 10


def test_max_age_flushes_on_submit(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, max_rows=1_000, max_age_s=0.0, fsync=False)
    w.submit(batch(kafka_fills(0, 1)))
    assert len(files(tmp_path)) == 1 and w.buffered_rows == 0


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no cleanup runs."""


def test_crash_mid_write_leaves_no_visible_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dying_replace(src: object, dst: object) -> None:
        raise Crash()

    monkeypatch.setattr(os, "replace", dying_replace)
    w = ArchiveWriter(tmp_path, fsync=False)
    w.submit(batch(kafka_fills(0, 4)))
    with pytest.raises(Crash):
        w.flush()
    monkeypatch.undo()
    day_dir = tmp_path / "fills" / "date=2026-11-25"
    leftovers = sorted(p.name for p in day_dir.iterdir())
    assert len(leftovers) == 1 and leftovers[0].startswith(".") and leftovers[0].endswith(".tmp")
    assert files(tmp_path) == []
    assert read(tmp_path, "fills").height == 0
    con = connect(tmp_path)
    assert con.sql("SELECT count(*) FROM fills").fetchall() == [(0,)]
    # an ordinary exception cleans its temp file up
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("disk")))
    w2 = ArchiveWriter(tmp_path, fsync=False)
    w2.submit(batch(kafka_fills(5, 6)))
    with pytest.raises(OSError):
        w2.flush()
    assert len(list(day_dir.iterdir())) == 1  # only the crash's temp file


def test_rearchiving_the_same_offsets_never_duplicates(tmp_path: Path) -> None:
    first = ArchiveWriter(tmp_path, fsync=False, clock=clock(100))
    first.submit(batch(kafka_fills(0, 9)))
    first.close()
    # the consumer crashed before committing and re-delivers from offset 0 (same file name:
    # replaced) and, with other batch boundaries, 5..14 (overlapping file)
    again = ArchiveWriter(tmp_path, fsync=False, clock=clock(200))
    again.submit(batch(kafka_fills(0, 9)))
    again.flush()
    again.submit(batch(kafka_fills(5, 14)))
    again.close()
    assert len(files(tmp_path)) == 2
    assert has_overlaps([tmp_path / "fills" / f for f in files(tmp_path)])
    back = read(tmp_path, "fills")
    assert back.get_column("offset").to_list() == list(range(15))
    con = connect(tmp_path)
    assert con.sql("SELECT count(*), count(DISTINCT \"offset\") FROM fills").fetchall() == [(15, 15)]
    stats = compact(tmp_path)
    assert stats.groups_rewritten == 1
    assert files(tmp_path) == [
        "date=2026-11-25/orders.filled.paper-p3-o000000000000-000000000014.parquet"]
    assert read(tmp_path, "fills").get_column("offset").to_list() == list(range(15))
    before = (tmp_path / "fills" / files(tmp_path)[0]).stat().st_mtime_ns
    assert compact(tmp_path).groups_rewritten == 0  # idempotent: nothing left to do
    assert (tmp_path / "fills" / files(tmp_path)[0]).stat().st_mtime_ns == before


def test_compaction_splits_by_target_rows_on_batch_boundaries(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, stream="bt", max_rows=2, fsync=False)
    for k in range(5):  # five local batches of 3 fills each (no offsets)
        w.submit(batch([fill("S1", TOKEN, "BUY", 1, 100.0 + i, at(D3, 4, k, i))
                        for i in range(3)]))
    w.close()
    assert len(files(tmp_path)) == 5
    compact(tmp_path, target_rows=7)
    # chunks start at batch boundaries: rows 0-8 (batches 0-2), rows 9-14 (batches 3-4)
    assert files(tmp_path) == [
        "date=2026-11-25/bt-b000000000000-000000000002.parquet",
        "date=2026-11-25/bt-b000000000003-000000000004.parquet",
    ]
    prices = read(tmp_path, "fills").get_column("fill_price").to_list()
    assert prices == [100.0, 101.0, 102.0] * 5


def test_local_runs_are_deterministic_and_replace_their_previous_run(tmp_path: Path) -> None:
    def run(root: Path, n_batches: int) -> list[str]:
        eng = PortfolioEngine(starting_cash=START)
        with start_local_archive(root, eng, "demo", max_rows=4) as w:
            for k in range(n_batches):
                w.submit(eng.apply_decoded(batch(
                    [fill("S1", TOKEN, "BUY", 1, 100.0, at(D3, 4, k, 0), fill_id=f"f{k}"),
                     tick(TOKEN, 101.0 + k, at(D3, 4, k, 1))])))
        return files(root) + files(root, "ticks")

    assert run(tmp_path / "a", 6) == run(tmp_path / "b", 6)
    run(tmp_path / "a", 2)  # a shorter second run replaces the first one entirely
    assert read(tmp_path / "a", "fills").get_column("fill_id").to_list() == ["f0", "f1"]
    assert (tmp_path / "a" / "engine.json").exists()


def test_apply_result_archives_applied_fills_and_duplicates_apart(tmp_path: Path) -> None:
    eng = PortfolioEngine(starting_cash=START)
    first = fill("S1", TOKEN, "BUY", 2, 100.0, at(D3), fill_id="f-1")
    with ArchiveWriter(tmp_path, fsync=False) as w:
        w.submit(eng.apply_decoded(batch([first])))
        w.submit(eng.apply_decoded(batch([first, tick(TOKEN, 101.0, at(D3, 5))])))
    assert read(tmp_path, "fills").get_column("fill_id").to_list() == ["f-1"]
    assert read(tmp_path, "duplicates").get_column("fill_id").to_list() == ["f-1"]
    assert read(tmp_path, "ticks").get_column("last_price").to_list() == [101.0]
    assert pl.read_parquet(tmp_path / "fills" / files(tmp_path)[0]).columns[-3:] == [
        "stream", "batch_id", "arrival_ns"]
