"""Typed response models of the API (they document the JSON in OpenAPI, ``/docs``).

The routes answer with the published JSON text itself (no re-encoding, every field kept), so
these models describe the documents rather than build them; ``extra="allow"`` says that
writers may add fields (the live day P&L adds ``m2m``, ``day_pnl``, ``trading_day``). A
published ``null`` is a missing or non-finite number. Money in account currency, prices per
unit, quantities signed, ``ts`` ns since the Unix epoch (UTC).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PositionDoc(_Open):
    """One position of a portfolio document (flat ones included); quantities are JSON
    integers when integral (always for integer feeds), else decimal units (``0.015``, a
    daemon run with ``--quantity-decimals``)."""

    instrument_token: int
    quantity: int | float
    average_price: float | None
    last_price: float | None
    realized_pnl: float | None
    unrealized_pnl: float | None
    fees: float | None
    multiplier: float | None
    market_value: float | None
    buy_quantity: int | float
    sell_quantity: int | float
    buy_value: float | None
    sell_value: float | None


class PortfolioDoc(_Open):
    """``portfolio:{id}``: a strategy portfolio or a ``{source}_Overall`` aggregate."""

    portfolio_id: str
    source: str
    strategy_id: str
    cash: float | None
    total_realized_pnl: float | None
    total_unrealized_pnl: float | None
    total_fees: float | None
    total_pnl: float | None
    net_pnl: float | None
    market_value: float | None
    equity: float | None
    gross_exposure: float | None
    net_exposure: float | None
    open_positions: int
    positions: dict[str, PositionDoc]


class AumDoc(_Open):
    """``aum``: sums of strategy equity, in total and per source."""

    total: float | None
    by_source: dict[str, float | None]


class PriceDoc(_Open):
    """One entry of ``prices``: the latest tick of an instrument."""

    last_price: float | None
    ts: int | None


class ErrorBody(BaseModel):
    """Every error answer: ``error`` a short code, ``detail`` what happened and what to do."""

    error: str
    detail: str


class Health(BaseModel):
    """``/healthz``: ``status`` ok when the read model can be read."""

    status: str
    source: str
    detail: str = ""
