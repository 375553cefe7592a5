"""The engine state rows one batch writes, fetched once (as Python tuples).

Both the checkpoint's state rows (``daemon.checkpoint.codec``) and the published model
(``model_rows``) need the positions, cash and marks of the portfolios of the partitions the
batch changed. They are a few dozen rows; each Polars query costs ~0.1 ms however small, so
they are selected once and then handled as Python tuples.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import polars as pl

from pm_polars.engine import tradingday
from pm_polars.engine.state import EngineState

SMALL_FRAME = 500  # rows of a state frame filtered in Python (see ``_rows``)


@dataclass(frozen=True)
class StateRows:
    """Rows (tuples in the snapshot's column order) of some portfolios and their marks."""

    positions: list[tuple[Any, ...]]  # sorted by (portfolio_id, instrument_token)
    position_columns: list[str]
    cash: list[tuple[Any, ...]]  # sorted by portfolio_id
    cash_columns: list[str]
    marks: dict[int, tuple[Any, ...]]  # instrument_token -> mark state row
    mark_columns: list[str]
    trading_day: str | None = None  # the book's (ISO date)

    @classmethod
    def fetch(cls, snap: EngineState, portfolio_ids: list[str],
              extra_marks: Collection[int] = ()) -> StateRows:
        """The rows of ``portfolio_ids`` and the marks of every instrument they hold (and of
        ``extra_marks``: a currency book's FX instruments, whose marks are its rates)."""
        every = len(portfolio_ids) >= snap.cash.height  # all held: no filter needed
        wanted = set(portfolio_ids)
        pos_rows = sorted(_rows(snap.positions, "portfolio_id", wanted, every))
        tok = snap.positions.columns.index("instrument_token")
        tokens = {r[tok] for r in pos_rows} | set(extra_marks)
        marks = _rows(snap.marks, "instrument_token", tokens, len(tokens) >= snap.marks.height)
        mark_tok = snap.marks.columns.index("instrument_token")
        return cls(pos_rows, snap.positions.columns,
                   sorted(_rows(snap.cash, "portfolio_id", wanted, every)), snap.cash.columns,
                   {r[mark_tok]: r for r in marks}, snap.marks.columns,
                   tradingday.iso(snap.trading_day))


def _rows(frame: pl.DataFrame, column: str, wanted: set[Any], every: bool) -> list[tuple[Any, ...]]:
    """Rows (tuples) of ``frame`` whose ``column`` is in ``wanted`` (all if ``every``).

    Up to ``SMALL_FRAME`` rows they are filtered in Python (``rows()`` costs ~10 us, a
    Polars filter ~0.15 ms); beyond, by one Polars filter.
    """
    if every:
        return frame.rows()
    if frame.height <= SMALL_FRAME:
        at = frame.columns.index(column)
        return [r for r in frame.rows() if r[at] in wanted]
    return frame.filter(pl.col(column).is_in(sorted(wanted))).rows()
