"""The engine state rows one batch writes, fetched once (three Polars filters).

Both the checkpoint's state rows (``daemon.state_codec``) and the published model
(``model_rows``) need the positions, cash and marks of the portfolios of the partitions the
batch changed. They are a few dozen rows; each Polars query costs ~0.1 ms however small, so
they are selected once and then handled as Python tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pm_polars.engine.snapshot import Snapshot


@dataclass(frozen=True)
class StateRows:
    """Rows (tuples in the snapshot's column order) of some portfolios and their marks."""

    positions: list[tuple[Any, ...]]  # sorted by (portfolio_id, instrument_token)
    position_columns: list[str]
    cash: list[tuple[Any, ...]]  # sorted by portfolio_id
    cash_columns: list[str]
    marks: dict[int, tuple[Any, ...]]  # instrument_token -> mark state row
    mark_columns: list[str]

    @classmethod
    def fetch(cls, snap: Snapshot, portfolio_ids: list[str]) -> StateRows:
        """The rows of ``portfolio_ids`` and the marks of every instrument they hold."""
        every = len(portfolio_ids) >= snap.cash.height  # all held: no filter needed
        mine = pl.col("portfolio_id").is_in(portfolio_ids)
        positions = snap.positions if every else snap.positions.filter(mine)
        cash = snap.cash if every else snap.cash.filter(mine)
        pos_rows = sorted(positions.iter_rows())
        tok = positions.columns.index("instrument_token")
        tokens = sorted({r[tok] for r in pos_rows})
        marks = snap.marks if len(tokens) >= snap.marks.height else snap.marks.filter(
            pl.col("instrument_token").is_in(tokens))
        mark_tok = marks.columns.index("instrument_token")
        return cls(pos_rows, positions.columns, sorted(cash.iter_rows()), cash.columns,
                   {r[mark_tok]: r for r in marks.iter_rows()}, marks.columns)
