"""Polars tables of read portfolios/positions, for notebooks.

Columns and order are those of the engine's views (``PortfolioEngine.portfolios()`` and
``PortfolioEngine.positions()``), so a frame read from Redis can be compared with, or
concatenated to, one computed in process. Fields outside the known set (``extra``) are
left out, keeping the schema fixed. Units as in :mod:`pm_polars.client.models`.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from pm_polars.client.models import (
    PORTFOLIO_FIELDS,
    PORTFOLIO_KINDS,
    POSITION_FIELDS,
    POSITION_KINDS,
    Portfolio,
    Position,
)

_DTYPES: dict[str, pl.DataType] = {"int": pl.Int64(), "float": pl.Float64(), "str": pl.String(),
                                  "str | None": pl.String(), "float | None": pl.Float64(),
                                  "int | float": pl.Int64()}
QUANTITY_FIELDS = [n for n, k in POSITION_KINDS.items() if k == "int | float"]

PORTFOLIO_SCHEMA: dict[str, pl.DataType] = {n: _DTYPES[k] for n, k in PORTFOLIO_KINDS.items()}
POSITION_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(), **{n: _DTYPES[k] for n, k in POSITION_KINDS.items()}
}


def portfolios_frame(portfolios: Iterable[Portfolio]) -> pl.DataFrame:
    """One row per portfolio, sorted by ``portfolio_id`` (money in account currency)."""
    rows = [tuple(getattr(p, n) for n in PORTFOLIO_FIELDS) for p in portfolios]
    frame = pl.DataFrame(rows, schema=PORTFOLIO_SCHEMA, orient="row")
    return frame.sort("portfolio_id")


def positions_frame(positions: Iterable[Position]) -> pl.DataFrame:
    """One row per position (flat ones included), sorted by portfolio and token.

    Quantity columns are ``Int64`` for integer feeds and ``Float64`` units as soon as one
    read quantity is fractional (as ``PortfolioEngine.positions()`` with
    ``quantity_decimals`` > 0)."""
    names = ("portfolio_id", *POSITION_FIELDS)
    rows = [tuple(getattr(p, n) for n in names) for p in positions]
    schema = POSITION_SCHEMA
    at = [names.index(n) for n in QUANTITY_FIELDS]
    if any(type(r[i]) is float for r in rows for i in at):
        schema = {**POSITION_SCHEMA, **dict.fromkeys(QUANTITY_FIELDS, pl.Float64())}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.sort("portfolio_id", "instrument_token")


def all_positions(portfolios: Iterable[Portfolio]) -> list[Position]:
    """The positions of every portfolio, flattened."""
    return [pos for p in portfolios for pos in p.positions.values()]
