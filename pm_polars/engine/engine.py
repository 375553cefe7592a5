"""PortfolioEngine: the stateful shell around the pure step (``engine.step.apply``).

It holds one :class:`~pm_polars.engine.state.EngineState` and one
:class:`~pm_polars.engine.config.EngineConfig`; ``apply`` replaces the state with the
step's result, so a failing batch leaves the engine untouched. Reads (positions,
portfolios, documents, AUM) are views over the current state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from pm_polars.engine import currencies, fxviews, step, tradingday, views
from pm_polars.engine.config import (
    DEFAULT_ACCOUNT_CURRENCY,
    DEFAULT_STARTING_CASH,
    EngineConfig,
)
from pm_polars.engine.documents import portfolio_documents
from pm_polars.engine.instruments import allows_negative
from pm_polars.engine.snapshot import Snapshot
from pm_polars.engine.state import CASH_SCHEMA, EngineState
from pm_polars.events import DecodedBatch, decode_any
from pm_polars.types import ApplyResult

log = logging.getLogger(__name__)

__all__ = ["CASH_SCHEMA", "DEFAULT_STARTING_CASH", "ApplyResult", "PortfolioEngine"]


class PortfolioEngine:
    """Positions, P&L, cash and marks for many portfolios, updated in columnar batches.

    ``starting_cash`` (account currency) is credited to each portfolio when its first fill
    arrives. ``instruments`` gives contract multipliers (see ``load_instruments``).
    ``dedupe_retention`` (seconds of event time) bounds the memory of seen fill ids; ``None``
    (the default) keeps them forever; the daemon sets 24 h. ``day_roll_tz`` /
    ``day_roll_time`` (``"HH:MM"``) set the trading day (``engine.tradingday``).
    ``cost_basis``: ``"average"`` (default) or ``"fifo"`` (reducing fills realize against the
    oldest open lots; see :meth:`lots`). ``quantity_decimals``: 0 (default, integer
    quantities) to 8: a fill's ``quantity`` may then carry that many decimal places, held
    exactly as fixed point (``engine.fixedpoint``); views show units as ``Float64``.
    ``account_currency`` (default ``"INR"``): the currency of every portfolio total;
    instruments with ``quote_currency``/``inverse``/``fx_pair`` columns book in their own
    currency and are converted on read at the latest rate (``engine.currencies``,
    ``engine.fxviews``: positions then carry ``pnl_currency``, ``fx_rate``,
    ``missing_rate``; portfolios ``missing_rate``, with null totals when a rate is absent).
    ``mark``: ``"last"`` (default) or ``"bid_ask"`` (longs valued at the bid, shorts at the
    ask, fallback to the last price; ``engine.marks``).
    ``config`` (an :class:`EngineConfig`) replaces all but ``instruments``.
    """

    def __init__(
        self,
        starting_cash: float = DEFAULT_STARTING_CASH,
        instruments: pl.DataFrame | str | Path | None = None,
        dedupe_retention: float | None = None,
        *,
        day_roll_tz: str = tradingday.DAY_ROLL_TZ,
        day_roll_time: str = tradingday.DAY_ROLL_TIME,
        cost_basis: str = "average",
        quantity_decimals: int = 0,
        account_currency: str = DEFAULT_ACCOUNT_CURRENCY,
        mark: str = "last",
        config: EngineConfig | None = None,
    ) -> None:
        self.config = config or EngineConfig.of(starting_cash, dedupe_retention,
                                                day_roll_tz=day_roll_tz,
                                                day_roll_time=day_roll_time,
                                                cost_basis=cost_basis,
                                                quantity_decimals=quantity_decimals,
                                                account_currency=account_currency,
                                                mark=mark)
        self.state = EngineState.empty(instruments)

    @property
    def starting_cash(self) -> float:
        return self.config.starting_cash

    @property
    def dedupe_retention_ns(self) -> int | None:
        return self.config.dedupe_retention_ns

    # ------------------------------------------------------------------ writes
    def apply(self, batch: object) -> ApplyResult:
        """Apply one batch: raw JSON bytes, event dicts, a Polars frame or an Arrow table."""
        positive = not allows_negative(self.state.instruments)  # else the step judges signs
        return self.apply_decoded(
            decode_any(batch, quantity_decimals=self.config.quantity_decimals,
                       positive_prices=positive))

    def apply_decoded(self, decoded: DecodedBatch) -> ApplyResult:
        """Apply an already decoded batch."""
        self.state, result = step.apply(self.state, decoded, self.config)
        return result

    # ------------------------------------------------------------------ reads
    def positions(self, portfolio_ids: list[str] | None = None) -> pl.DataFrame:
        """Positions view (see ``views.positions_view``), optionally for some portfolios."""
        state = self.state.positions
        if portfolio_ids is not None:
            state = state.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        fx = self._fx()
        if fx is not None:
            return fxviews.positions_view(state, self.state.marks, fx, self.state.instruments,
                                          self.config.quantity_scale, self.config.mark)
        return views.positions_view(state, self.state.marks, self.config.quantity_scale,
                                    self.config.mark)

    def _fx(self) -> currencies.Currencies | None:
        """The book's currency facts, ``None`` when everything is linear in the account
        currency (today's views, bit for bit); remembered while the instruments frame is
        the same object (frames are immutable: a new table is a new object)."""
        table = self.state.instruments
        cached = self.__dict__.get("_fx_cache")
        if cached is None or cached[0] is not table:
            cached = (table, currencies.of(table, self.config.account_currency))
            self.__dict__["_fx_cache"] = cached
        return cached[1]

    def _portfolios_view(self, cash: pl.DataFrame, positions: pl.DataFrame) -> pl.DataFrame:
        fx = self._fx()
        if fx is None:
            return views.portfolios_view(cash, positions, self.trading_day)
        return fxviews.portfolios_view(cash, positions, fx.account, self.trading_day)

    def _overall(self, portfolios: pl.DataFrame) -> pl.DataFrame:
        if "missing_rate" in portfolios.columns:
            return fxviews.overall_portfolios(portfolios)
        return views.overall_portfolios(portfolios)

    def lots(self, portfolio_ids: list[str] | None = None) -> pl.DataFrame:
        """Open FIFO lots (``lots.LOT_SCHEMA``: signed ``quantity``, opening ``price`` per
        unit, opening fill's ``ts``/``fill_id``), oldest first per position; empty under
        average cost. With ``quantity_decimals`` > 0, ``quantity`` is ``Float64`` units."""
        out = self.state.lots
        scale = self.config.quantity_scale
        if scale != 1:
            out = out.with_columns(views.units(pl.col("quantity"), scale))
        fx = self._fx()
        if fx is not None and fx.inverse_tokens.len():  # line prices -1/p shown as prices
            inverse = pl.col("instrument_token").is_in(fx.inverse_tokens.implode())
            out = out.with_columns(currencies.line_price(pl.col("price"), inverse).alias("price"))
        if portfolio_ids is not None:
            out = out.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        return out.sort("portfolio_id", "instrument_token", "lot")

    def portfolios(
        self, portfolio_ids: list[str] | None = None, aggregates: bool = False
    ) -> pl.DataFrame:
        """Strategy portfolio totals; ``aggregates=True`` appends ``{source}_Overall`` rows."""
        cash = self.state.cash
        if portfolio_ids is not None and not aggregates:
            cash = cash.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        out = self._portfolios_view(cash, self.positions(cash["portfolio_id"].to_list()))
        if aggregates:
            out = pl.concat([out, self._overall(out)])
            if portfolio_ids is not None:
                out = out.filter(pl.col("portfolio_id").is_in(portfolio_ids))
        return out

    def portfolio_documents(self, portfolio_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Published JSON model for each id (strategy or ``{source}_Overall``) that exists."""
        overall = [p for p in portfolio_ids if p.endswith("_" + views.OVERALL)]
        plain = [p for p in portfolio_ids if p not in overall]
        docs = portfolio_documents(self.portfolios(plain), self.positions(plain))
        decimals = self.config.quantity_decimals
        if overall:
            sources = [p.removesuffix("_" + views.OVERALL) for p in overall]
            cash = self.state.cash.filter(pl.col("source").is_in(sources))
            pos = self.positions(cash["portfolio_id"].to_list())
            totals = self._overall(self._portfolios_view(cash, pos))
            nets = (fxviews.overall_positions if "inverse" in pos.columns
                    else views.overall_positions)
            docs.update(portfolio_documents(totals, nets(pos, cash, decimals)))
        return docs

    def portfolio(self, portfolio_id: str) -> dict[str, Any]:
        """The published JSON model of one portfolio; ``KeyError`` if it has never traded."""
        docs = self.portfolio_documents([portfolio_id])
        if portfolio_id not in docs:
            raise KeyError(f"unknown portfolio {portfolio_id!r}; known: {self.portfolio_ids()}")
        return docs[portfolio_id]

    def portfolio_ids(self) -> list[str]:
        return self.state.portfolio_ids()

    def aum(self) -> dict[str, Any]:
        """``{"total": float, "by_source": {source: float}}``: sum of strategy equity."""
        out = self.portfolios()
        return fxviews.aum(out) if "missing_rate" in out.columns else views.aum(out)

    @property
    def trading_day(self) -> str | None:
        """The book's trading day (ISO date), ``None`` before the first timed event."""
        return tradingday.iso(self.state.trading_day)

    @property
    def late_day_events(self) -> int:
        """Events stamped in an earlier trading day than the book's (booked as they came)."""
        return self.state.late_day_events

    @property
    def clock_ns(self) -> int | None:
        """Newest event time applied so far (ns since epoch, UTC)."""
        return self.state.clock_ns

    # ------------------------------------------------------------------ state
    def snapshot(self) -> Snapshot:
        """The complete state and config, exact (frames are immutable: nothing is copied)."""
        return Snapshot.of(self.state, self.config)

    @classmethod
    def restore(cls, snapshot: Snapshot | str | Path) -> PortfolioEngine:
        """An engine continuing exactly from ``snapshot`` (a Snapshot or its directory)."""
        snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.read(snapshot)
        return cls.of_state(snap.state(), snap.config)

    @classmethod
    def of_state(cls, state: EngineState, config: EngineConfig) -> PortfolioEngine:
        """An engine holding ``state`` (no copy, no re-indexing)."""
        eng = cls(config=config)
        eng.state = state
        return eng
