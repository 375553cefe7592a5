"""PortfolioEngine: the stateful shell around the pure accounting functions.

State is five frames (positions, cash, marks, seen fill ids, instruments) plus a clock (the
newest event time seen, ns UTC). ``apply`` computes the complete new state from the old state
and one batch and only then swaps it in, so a failing batch leaves the engine untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pm_polars.engine import accounting, dedupe, marks, views
from pm_polars.engine.documents import portfolio_documents
from pm_polars.engine.instruments import load_instruments
from pm_polars.engine.plans import run
from pm_polars.engine.ranges import rows_in_ranges
from pm_polars.engine.snapshot import Snapshot
from pm_polars.events import DecodedBatch, decode_any

log = logging.getLogger(__name__)

CASH_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "source": pl.String(),
    "strategy_id": pl.String(),
    "cash": pl.Float64(),
}

DEFAULT_STARTING_CASH = 1_000_000.0


@dataclass(frozen=True)
class ApplyResult:
    """What one ``apply`` did. Frames follow the schemas in ``pm_polars.events.schema``."""

    fills: pl.DataFrame  # fills applied (duplicates excluded), arrival order
    ticks: pl.DataFrame  # ticks received (including ones older than the stored mark)
    rejects: pl.DataFrame  # invalid records with a ``reason``
    duplicates: pl.DataFrame  # fills ignored as already seen
    changed_portfolios: list[str] = field(default_factory=list)

    @property
    def fills_applied(self) -> int:
        return self.fills.height

    @property
    def ticks_applied(self) -> int:
        return self.ticks.height


class PortfolioEngine:
    """Positions, P&L, cash and marks for many portfolios, updated in columnar batches.

    ``starting_cash`` (account currency) is credited to each portfolio when its first fill
    arrives. ``instruments`` gives contract multipliers (see ``load_instruments``).
    ``dedupe_retention`` (seconds of event time) bounds the memory of seen fill ids; ``None``
    (the default) keeps them forever; the daemon sets 24 h.
    """

    def __init__(
        self,
        starting_cash: float = DEFAULT_STARTING_CASH,
        instruments: pl.DataFrame | str | Path | None = None,
        dedupe_retention: float | None = None,
    ) -> None:
        self.starting_cash = float(starting_cash)
        self.dedupe_retention_ns = (
            None if dedupe_retention is None else int(dedupe_retention * 10**9)
        )
        self._instruments = load_instruments(instruments)
        self._positions = pl.DataFrame(schema=accounting.POSITION_STATE_SCHEMA)
        self._cash = pl.DataFrame(schema=CASH_SCHEMA)
        self._marks = pl.DataFrame(schema=marks.MARK_STATE_SCHEMA)
        self._seen = dedupe.SeenIds()
        self._clock_ns: int | None = None

    # ------------------------------------------------------------------ writes
    def apply(self, batch: object) -> ApplyResult:
        """Apply one batch: raw JSON bytes, event dicts, a Polars frame or an Arrow table."""
        return self.apply_decoded(decode_any(batch))

    def apply_decoded(self, decoded: DecodedBatch) -> ApplyResult:
        """Apply an already decoded batch (the daemon's path)."""
        fresh, dups = self._seen.split(decoded.fills, self._horizon_ns())
        positions, cash = self._positions, self._cash
        if fresh.height:
            fresh = self._with_multiplier(fresh)
            ledger = accounting.fill_ledger(self._positions, fresh)
            positions = accounting.merge_positions(
                self._positions, accounting.position_deltas(ledger)
            )
            cash = self._merge_cash(accounting.cash_flows(ledger), fresh)
        else:
            fresh = fresh.with_columns(pl.lit(1.0).alias("multiplier"))
        new_marks, tick_changed = marks.merge_marks(
            self._marks, decoded.ticks, "last_price", "tick"
        )
        new_marks, fill_changed = marks.merge_marks(new_marks, fresh, "fill_price", "fill")
        clock = _max_ts(self._clock_ns, decoded.ticks, fresh)
        seen = self._seen.remember(fresh, clock, self.dedupe_retention_ns)
        mark_changed = set(tick_changed.to_list())
        if fill_changed.len():  # a fill price is the mark only before the first tick
            fallback = new_marks.filter(
                pl.col("instrument_token").is_in(fill_changed.implode())
                & pl.col("tick_price").is_null()
            )
            mark_changed.update(fallback.get_column("instrument_token").to_list())
        filled = fresh.get_column("portfolio_id")
        changed = set((filled.unique() if filled.len() > 1024 else filled).to_list())
        changed.update(_holders(positions, sorted(mark_changed)))

        self._positions, self._cash, self._marks = positions, cash, new_marks
        self._seen, self._clock_ns = seen, clock
        return ApplyResult(
            fills=fresh.drop("multiplier"),
            ticks=decoded.ticks,
            rejects=decoded.rejects,
            duplicates=dups,
            changed_portfolios=sorted(changed),
        )

    def _horizon_ns(self) -> int | None:
        """Seen ids older than this (ns of event time) no longer count; ``None``: all do."""
        return dedupe.horizon_ns(self._clock_ns, self.dedupe_retention_ns)

    def _with_multiplier(self, fills: pl.DataFrame) -> pl.DataFrame:
        """Multiplier per fill: the position's (fixed at open), else the instrument's, else 1."""
        return run(
            fills.lazy()
            .join(
                self._positions.lazy().select(*accounting.KEYS, pl.col("multiplier").alias("m_pos")),
                on=accounting.KEYS, how="left", maintain_order="left",
            )
            .join(
                self._instruments.lazy().select(
                    "instrument_token", pl.col("multiplier").alias("m_ins")
                ),
                on="instrument_token", how="left", maintain_order="left",
            )
            .with_columns(pl.coalesce("m_pos", "m_ins", pl.lit(1.0)).alias("multiplier"))
            .drop("m_pos", "m_ins")
        )

    def _merge_cash(self, flows: pl.DataFrame, fills: pl.DataFrame) -> pl.DataFrame:
        """Cash after ``flows`` (per portfolio); ``fills`` name new portfolios' owners."""
        if flows.height == 0:
            return self._cash
        owners = fills.lazy().select("portfolio_id", "source", "strategy_id").unique(
            "portfolio_id", keep="first", maintain_order=True
        )
        joined = flows.lazy().join(owners, on="portfolio_id").join(
            self._cash.lazy().select("portfolio_id", "cash"), on="portfolio_id", how="left"
        ).select(
            *[c for c in CASH_SCHEMA if c != "cash"],
            (pl.col("cash").fill_null(self.starting_cash) + pl.col("cash_flow")).alias("cash"),
        )
        kept = self._cash.lazy().join(flows.lazy().select("portfolio_id"), on="portfolio_id",
                                      how="anti")
        return run(pl.concat([kept, joined]).sort("portfolio_id"))

    # ------------------------------------------------------------------ reads
    def positions(self, portfolio_ids: list[str] | None = None) -> pl.DataFrame:
        """Positions view (see ``views.positions_view``), optionally for some portfolios."""
        state = self._positions
        if portfolio_ids is not None:
            state = state.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        return views.positions_view(state, self._marks)

    def portfolios(
        self, portfolio_ids: list[str] | None = None, aggregates: bool = False
    ) -> pl.DataFrame:
        """Strategy portfolio totals; ``aggregates=True`` appends ``{source}_Overall`` rows."""
        cash = self._cash
        if portfolio_ids is not None and not aggregates:
            cash = cash.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        out = views.portfolios_view(cash, self.positions(cash["portfolio_id"].to_list()))
        if aggregates:
            out = pl.concat([out, views.overall_portfolios(out)])
            if portfolio_ids is not None:
                out = out.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        return out

    def portfolio_documents(self, portfolio_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Published JSON model for each id (strategy or ``{source}_Overall``) that exists."""
        overall = [p for p in portfolio_ids if p.endswith("_" + views.OVERALL)]
        plain = [p for p in portfolio_ids if p not in overall]
        docs = portfolio_documents(self.portfolios(plain), self.positions(plain))
        if overall:
            sources = [p.removesuffix("_" + views.OVERALL) for p in overall]
            cash = self._cash.filter(pl.col("source").is_in(sources))
            pos = self.positions(cash["portfolio_id"].to_list())
            totals = views.overall_portfolios(views.portfolios_view(cash, pos))
            docs.update(portfolio_documents(totals, views.overall_positions(pos, cash)))
        return docs

    def portfolio(self, portfolio_id: str) -> dict[str, Any]:
        """The published JSON model of one portfolio; ``KeyError`` if it has never traded."""
        docs = self.portfolio_documents([portfolio_id])
        if portfolio_id not in docs:
            raise KeyError(f"unknown portfolio {portfolio_id!r}; known: {self.portfolio_ids()}")
        return docs[portfolio_id]

    def portfolio_ids(self) -> list[str]:
        return self._cash.get_column("portfolio_id").to_list()

    def aum(self) -> dict[str, Any]:
        """``{"total": float, "by_source": {source: float}}``: sum of strategy equity."""
        return views.aum(self.portfolios())

    @property
    def clock_ns(self) -> int | None:
        """Newest event time applied so far (ns since epoch, UTC)."""
        return self._clock_ns

    # ------------------------------------------------------------------ state
    def snapshot(self) -> Snapshot:
        """The complete state, exact (frames are immutable, so nothing is copied)."""
        seen = self._seen.frame()
        return Snapshot(
            positions=self._positions, cash=self._cash, marks=self._marks,
            seen=seen, seen_index=(seen, self._seen),
            instruments=self._instruments,
            meta={
                "starting_cash": self.starting_cash,
                "dedupe_retention_ns": self.dedupe_retention_ns,
                "clock_ns": self._clock_ns,
            },
        )

    @classmethod
    def restore(cls, snapshot: Snapshot | str | Path) -> PortfolioEngine:
        """An engine continuing exactly from ``snapshot`` (a Snapshot or its directory)."""
        snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.read(snapshot)
        meta = snap.meta
        eng = cls(starting_cash=meta.get("starting_cash", DEFAULT_STARTING_CASH))
        eng.dedupe_retention_ns = meta.get("dedupe_retention_ns")
        eng._clock_ns = meta.get("clock_ns")
        eng._instruments = snap.instruments
        eng._positions = snap.positions.cast(pl.Schema(accounting.POSITION_STATE_SCHEMA)).sort(
            "instrument_token", maintain_order=True
        )
        eng._cash = snap.cash.cast(pl.Schema(CASH_SCHEMA))
        eng._marks = snap.marks.cast(pl.Schema(marks.MARK_STATE_SCHEMA))
        index = snap.seen_index
        eng._seen = index[1] if index is not None and index[0] is snap.seen else \
            dedupe.SeenIds.from_frame(snap.seen)
        return eng


def _max_ts(clock: int | None, *frames: pl.DataFrame) -> int | None:
    known = [] if clock is None else [clock]
    for frame in frames:
        newest = frame.get_column("ts").max() if frame.height else None
        if newest is not None:
            known.append(int(newest))  # type: ignore[arg-type]
    return max(known) if known else None


def _holders(positions: pl.DataFrame, tokens: list[int]) -> list[str]:
    """Portfolios with an open position in any of ``tokens`` (unique, in no order).

    ``positions`` is sorted by instrument_token, so this is a binary search per token plus
    the matching rows: cost proportional to the touched positions, not all positions.
    """
    if not tokens or positions.height == 0:
        return []
    col = positions.get_column("instrument_token").to_numpy()
    wanted = np.asarray(tokens, dtype=col.dtype)
    lo = np.searchsorted(col, wanted, side="left")
    hi = np.searchsorted(col, wanted, side="right")
    rows = rows_in_ranges(lo, hi)
    if not len(rows):
        return []
    touched = positions[pl.Series(rows)]
    open_ = touched.get_column("quantity") != 0
    return touched.get_column("portfolio_id").filter(open_).unique().to_list()
