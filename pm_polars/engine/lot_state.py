"""FIFO lots as stored state: the Redis codec's rows, and the cost-basis guard on reload.

The daemon keeps each position's open lots in that position's state row (``daemon.checkpoint
.codec``): :func:`lot_rows` gives them per position for writing, :func:`lots_of_rows` reads
them back as a ``LOT_SCHEMA`` frame. A stored state is only reloaded under the method that
booked it (:func:`check_cost_basis`).
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine.accounting import KEYS
from pm_polars.engine.lots import LOT_COLUMNS, LOT_SCHEMA, empty_lots

LOT_FIELDS = ["lot", "quantity", "price", "ts", "fill_id"]
_LOT_ROW = pl.Struct({c: LOT_SCHEMA[c] for c in LOT_FIELDS})


def lot_rows(lots: pl.DataFrame, portfolio_ids: set[str]
             ) -> dict[tuple[str, int], list[dict[str, object]]]:
    """Open lots of these portfolios as ``{(portfolio_id, token): [{lot, quantity, price,
    ts, fill_id}, ...]}`` (oldest first), for the state rows of the Redis codec."""
    if lots.height == 0 or not portfolio_ids:
        return {}
    out: dict[tuple[str, int], list[dict[str, object]]] = {}
    wanted = lots.filter(pl.col("portfolio_id").is_in(sorted(portfolio_ids)))
    for row in wanted.sort(*KEYS, "lot").iter_rows(named=True):
        key = (row.pop("portfolio_id"), row.pop("instrument_token"))
        out.setdefault(key, []).append(row)
    return out


def lots_of_rows(rows: pl.Series) -> pl.DataFrame:
    """``LOT_SCHEMA`` frame from JSON position rows carrying a ``lots`` list (as
    :func:`lot_rows` gives it); rows without one hold no lots."""
    if rows.len() == 0:
        return empty_lots()
    dtype = pl.Struct({"portfolio_id": pl.String(), "instrument_token": pl.Int64(),
                       "lots": pl.List(_LOT_ROW)})
    decoded = rows.str.json_decode(dtype).struct.unnest()
    return (
        decoded.filter(pl.col("lots").list.len() > 0)
        .explode("lots")
        .select(*KEYS, pl.col("lots").struct.unnest())
        .select(LOT_COLUMNS)
        .cast(pl.Schema(LOT_SCHEMA))
    )


class CostBasisMismatch(ValueError):
    """Stored state was booked under another cost basis than the one configured."""


def check_cost_basis(positions: pl.DataFrame, lots: pl.DataFrame, cost_basis: str,
                     where: str) -> None:
    """Raise :class:`CostBasisMismatch` unless the state fits ``cost_basis``: under average
    cost it holds no lots; under FIFO every open position's quantity is its lots' sum."""
    fix = ("restart with the --cost-basis the state was built with, or replay the fills "
           "into a fresh key prefix to rebook them")
    if cost_basis == "average":
        if lots.height:
            raise CostBasisMismatch(
                f"{where} holds FIFO lots ({lots.height}) but --cost-basis is average; {fix}")
        return
    sums = lots.group_by(KEYS).agg(pl.col("quantity").sum().alias("_lots"))
    bad = (
        positions.filter(pl.col("quantity") != 0)
        .join(sums, on=KEYS, how="left")
        .filter(pl.col("_lots").fill_null(0) != pl.col("quantity"))
    )
    if bad.height:
        first = bad.row(0, named=True)
        raise CostBasisMismatch(
            f"{where} has {bad.height} open positions without matching FIFO lots (first "
            f"{first['portfolio_id']}|{first['instrument_token']}): it was booked at "
            f"average cost but --cost-basis is fifo; {fix}")
