"""The seen-id index (``engine.dedupe.SeenIds``) against a plain dict, over many batches.

Many small batches force many run merges and sweeps; retention makes ids expire; forced hash
collisions check that only exact ``(source, fill_id)`` matches count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_polars.engine import dedupe
from pm_polars.engine.dedupe import SeenIds
from pm_polars.engine.ranges import rows_in_ranges

FILLS = {"seq": pl.Int64, "source": pl.String, "fill_id": pl.String, "ts": pl.Int64}


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FILLS)


def _reference(batches: list[list[dict[str, Any]]], retention: int | None) -> list[list[int]]:
    """Per batch, the seqs of the duplicates, event by event: a sighting counts while its
    time is at or after ``hwm - retention`` (``hwm``: the newest ts before the row, every
    row counted); a fresh row's sighting time is its ts, or ``hwm`` without one."""
    seen: dict[tuple[str, str], int | None] = {}
    hwm: int | None = None
    out = []
    for batch in batches:
        dups = []
        for row in batch:
            key = (row["source"], row["fill_id"])
            if row["fill_id"] is not None:
                old = seen.get(key)
                live = key in seen and (
                    retention is None or old is None or hwm is None or old >= hwm - retention)
                if live:
                    dups.append(row["seq"])
                else:
                    seen[key] = row["ts"] if row["ts"] is not None else hwm
            if row["ts"] is not None:
                hwm = row["ts"] if hwm is None else max(hwm, row["ts"])
        out.append(dups)
    return out


def _with_marks(batch: list[dict[str, Any]], hwm: int | None) -> tuple[pl.DataFrame, int | None]:
    """The batch with ``_hwm`` per row (as ``timebound`` gives it) and the mark after."""
    marks = []
    for row in batch:
        marks.append(hwm)
        if row["ts"] is not None:
            hwm = row["ts"] if hwm is None else max(hwm, row["ts"])
    frame = _frame(batch).with_columns(pl.Series("_hwm", marks, dtype=pl.Int64))
    return frame, hwm


def _run(batches: list[list[dict[str, Any]]], retention: int | None) -> list[list[int]]:
    ids, out = SeenIds(), []
    clock: int | None = None
    for batch in batches:
        frame, clock = _with_marks(batch, clock)
        fresh, dups, conflicts = ids.split(frame, retention)
        assert conflicts.height == 0  # no content columns: a repeat is a duplicate
        assert sorted([*fresh["seq"], *dups["seq"]]) == sorted(frame["seq"])
        ids = ids.remember(fresh, clock, retention)
        out.append(dups["seq"].to_list())
    return out


row = st.fixed_dictionaries({
    "source": st.sampled_from(["paper", "live"]),
    "fill_id": st.none() | st.sampled_from([f"f{i}" for i in range(12)]),
    "ts": st.none() | st.integers(0, 60),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(row, max_size=8), max_size=40), st.none() | st.integers(0, 25))
def test_index_equals_a_dict(batches: list[list[dict[str, Any]]], retention: int | None) -> None:
    seq = iter(range(10**6))
    numbered = [[{**r, "seq": next(seq)} for r in b] for b in batches]
    assert _run(numbered, retention) == _reference(numbered, retention)


def test_hash_collisions_never_drop_a_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    # every key hashes alike: only the exact (source, fill_id) comparison tells them apart
    monkeypatch.setattr(dedupe, "key_hash", lambda: pl.when(pl.col("fill_id").is_not_null())
                        .then(pl.lit(7, pl.UInt64)).alias("_h"))
    batches = [[{"seq": 10 * b + i, "source": "paper", "fill_id": f"f{(b * 3 + i) % 7}",
                 "ts": 10 * b + i} for i in range(3)] for b in range(12)]
    assert _run(batches, None) == _reference(batches, None)
    assert _run(batches, 25) == _reference(batches, 25)


def test_runs_stay_logarithmic_and_expired_ids_are_swept() -> None:
    ids = SeenIds()
    retention = 1_000
    for b in range(2_000):
        batch = _frame([{"seq": b, "source": "paper", "fill_id": f"f{b}", "ts": b}])
        ids = ids.remember(batch, b, retention)
        assert len(ids.runs) <= 12
        for run in ids.runs:  # each run sorted by hash
            assert run["_h"].is_sorted()
    # live window 1,000 ids; a sweep runs every retention/16 of event time
    assert 1_000 <= ids.size <= 1_000 + retention // dedupe.SWEEPS_PER_RETENTION + 2
    assert ids.frame().height == ids.size
    back = SeenIds.from_frame(ids.frame())
    probe = _frame([{"seq": 0, "source": "paper", "fill_id": "f1500", "ts": 0},
                    {"seq": 1, "source": "paper", "fill_id": "f5", "ts": 0}])
    probe = probe.with_columns(pl.lit(1_999, pl.Int64).alias("_hwm"))
    fresh, dups, _ = back.split(probe, retention)
    assert dups["fill_id"].to_list() == ["f1500"] and fresh["fill_id"].to_list() == ["f5"]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 8)), max_size=30))
def test_rows_in_ranges_equals_the_loop(spans: list[tuple[int, int]]) -> None:
    lo = np.array([a for a, _ in spans], np.int64)
    hi = np.array([a + n for a, n in spans], np.int64)
    want = [r for a, b in zip(lo, hi, strict=True) for r in range(a, b)]
    assert rows_in_ranges(lo, hi).tolist() == want
