"""The archive's write-ahead staging: records, torn tails, orphan recovery, committed rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pm_polars import PortfolioEngine
from pm_polars.archive import read
from pm_polars.archive.sink import ArchiveSink
from pm_polars.daemon.checkpoint.staging import (
    Record,
    Segment,
    committed_only,
    decode_all,
    encode,
    orphans,
)
from pm_polars.events import decode_messages
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty
from pm_polars.types import BatchResult

TICKS = "ticks"


def _ticks(first: int, n: int, partition: int = 0) -> pl.DataFrame:
    values = [b'{"event_type":"market_tick","instrument_token":%d,"last_price":%d.5,'
              b'"ts":1795600000000}' % (1 + i % 3, 100 + i) for i in range(n)]
    return decode_messages(values, topics=[TICKS] * n, partitions=[partition] * n,
                           offsets=list(range(first, first + n))).ticks


def _batch(first: int, n: int) -> BatchResult:
    return BatchResult(fills=empty(FILL_SCHEMA), ticks=_ticks(first, n),
                       rejects=empty(REJECT_SCHEMA), duplicates=empty(FILL_SCHEMA))


def test_records_round_trip_and_a_torn_tail_is_ignored() -> None:
    recs = [Record(i, 10 + i, {"ticks": _ticks(5 * i, 5)}) for i in range(3)]
    data = b"".join(encode(r) for r in recs)
    back = list(decode_all(data))
    assert [(r.batch, r.arrival_ns) for r in back] == [(0, 10), (1, 11), (2, 12)]
    assert back[2].frames["ticks"].equals(recs[2].frames["ticks"])
    assert len(list(decode_all(data[:-7]))) == 2  # crash in the middle of the last append
    corrupt = bytearray(data)
    corrupt[len(encode(recs[0])) + 40] ^= 0xFF  # a flipped byte in the second record
    assert len(list(decode_all(bytes(corrupt)))) == 1


def test_committed_only_keeps_rows_below_the_stored_offsets_once() -> None:
    first = Record(0, 1, {"ticks": _ticks(0, 10)})
    retry = Record(0, 2, {"ticks": _ticks(0, 10)})  # the same batch staged again
    later = Record(1, 3, {"ticks": _ticks(10, 10)})
    kept = committed_only([first, retry, later], {(TICKS, 0): 15})
    offsets = [o for r in kept for o in r.frames["ticks"]["offset"].to_list()]
    assert offsets == list(range(15))
    assert [r.arrival_ns for r in kept] == [2, 3]  # the last copy wins
    assert committed_only([first], {(TICKS, 1): 99}) == []  # other partition only


def test_only_segments_of_dead_processes_are_orphans(tmp_path: Path) -> None:
    live = Segment(tmp_path)
    live.append(Record(0, 1, {"ticks": _ticks(0, 3)}))
    assert orphans(tmp_path) == []  # locked by us
    live.close(delete=False)  # as if the process had died
    found = orphans(tmp_path)
    assert [o.path for o in found] == [live.path]
    assert [r.batch for r in found[0].records()] == [0]
    found[0].remove()
    assert not live.path.exists()


def test_a_crashed_sink_is_recovered_with_the_names_a_roll_would_use(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    eng = PortfolioEngine(starting_cash=5e6)
    crashed = ArchiveSink(root, "g", roll_rows=10**9)
    assert crashed.start(eng, lambda tps: {}) == 0
    for first in (0, 20, 40):  # three committed batches
        crashed.stage(_batch(first, 20))
        crashed.submit(_batch(first, 20))
    crashed.stage(_batch(60, 20))  # staged, EXEC never happened
    crashed.barrier()
    crashed._pool.shutdown(wait=True)
    assert crashed._segment is not None
    crashed._segment.close(delete=False)  # kill -9: nothing flushed, segment orphaned
    assert not list(root.glob("ticks/**/*.parquet"))

    asked: list[set[tuple[str, int]]] = []

    def committed(tps: set[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        asked.append(tps)
        return {(TICKS, 0): 60}

    sink = ArchiveSink(root, "g")
    assert sink.start(eng, committed) == 60 and asked == [{(TICKS, 0)}]
    files = sorted(p.name for p in root.glob("ticks/date=*/*.parquet"))
    assert files == ["ticks-p0-o000000000000-000000000059.parquet"]
    assert read(root, "ticks")["offset"].to_list() == list(range(60))
    assert (root / "engine.json").exists() and orphans(sink.dir) == []

    sink.stage(_batch(60, 20))  # re-read after the restart, committed this time
    sink.submit(_batch(60, 20))
    sink.close()
    assert read(root, "ticks")["offset"].to_list() == list(range(80))
    assert list(sink.dir.glob("*.seg")) == []
