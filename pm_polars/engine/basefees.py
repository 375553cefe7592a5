"""Fees paid in the base asset (``fee_currency = "base"``): a change of the held quantity.

A fill ``BUY q at p`` whose fee ``f`` is paid in the base asset (e.g. 0.001 BTC of a BTCUSDT
buy, as spot exchanges charge it) leaves ``q - f`` units held for the same ``q x p`` paid; a
``SELL q`` with a base fee ``f`` gives up ``q + f`` units for ``q x p``. The fee is neither
deducted from realized P&L nor counted in ``fees`` or cash: it is booked as a fill of the
held quantity change at the *effective price* ``q x p / (q -/+ f)``, so the cost basis keeps
what was paid and the fee surfaces as a higher average cost (a lower one for a rebate) when
the units are sold. ``f`` is in units of the instrument's quantity (``quantity_decimals``
places at most, else refused: it must be a whole number of atoms).

Inverse contracts settle in their base currency, so there a fee is money in it whatever
``fee_currency`` says (``engine.currencies``): only linear instruments are changed here.
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine import refusals

_ATOM_SLACK = 1e-6  # fee x scale within this of an integer is that integer (float64 input)


def split(fills: pl.DataFrame, inverse: pl.Series | None, scale: int,
          decimals: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(fills kept, rejects)``: base fees that are not a whole number of atoms, or that
    consume a buy's whole quantity, refused with a reason naming ``fee``."""
    base = _base(inverse)
    if not _any_base(fills):
        return fills, refusals.NO_REJECTS
    atoms = pl.col("fee") * float(scale)
    inexact = (atoms - atoms.round()).abs() > _ATOM_SLACK
    consumed = (pl.col("signed_qty") > 0) & (atoms.round() >= pl.col("quantity").cast(pl.Float64))
    unit = "units" if decimals == 0 else f"10^-{decimals} units"
    reason = (
        pl.when(base & inexact)
        .then(pl.format(
            "fee: a base-currency fee (fee_currency 'base') is a quantity of the asset and "
            f"must be a whole number of {unit} (quantity_decimals = {decimals}; raise it "
            "to book this fee), got {}", pl.col("fee").cast(pl.String)))
        .when(base & consumed)
        .then(pl.format("fee: a base-currency fee must be less than the quantity bought, "
                        "got {}", pl.col("fee").cast(pl.String)))
    )
    judged = fills.with_columns(reason.alias("_base_reason"))
    bad = judged.get_column("_base_reason").is_not_null()
    if not bad.any():
        return fills, refusals.NO_REJECTS
    return (judged.filter(~bad).drop("_base_reason"),
            refusals.rejects_of(judged.filter(bad), pl.col("_base_reason"), scale))


def booked(fills: pl.DataFrame, inverse: pl.Series | None, scale: int) -> pl.DataFrame:
    """Fills as the ledger books them: a base fee moved into the quantity (module
    docstring); every other fill unchanged."""
    if not _any_base(fills):
        return fills
    base = _base(inverse)
    fee_atoms = (pl.col("fee") * float(scale)).round().cast(pl.Int64)
    held = pl.col("signed_qty") - fee_atoms
    return (
        fills.with_columns(pl.when(base).then(held).otherwise(pl.col("signed_qty"))
                           .alias("_held"))
        .with_columns(
            pl.when(base).then(pl.col("fill_price") * pl.col("quantity").cast(pl.Float64)
                               / pl.col("_held").abs().cast(pl.Float64))
            .otherwise(pl.col("fill_price")).alias("fill_price"),
            pl.col("_held").abs().alias("quantity"),
            pl.col("_held").alias("signed_qty"),
            pl.when(base).then(0.0).otherwise(pl.col("fee")).alias("fee"),
        )
        .drop("_held")
    )


def _any_base(fills: pl.DataFrame) -> bool:
    return "fee_currency" in fills.columns and bool(
        (fills.get_column("fee_currency") == "base").any())


def _base(inverse: pl.Series | None) -> pl.Expr:
    """Rows whose fee is a base quantity: ``fee_currency`` base, a non-zero fee, linear."""
    base = (pl.col("fee_currency") == "base").fill_null(False) & (pl.col("fee") != 0)
    if inverse is not None and inverse.len():
        base = base & ~pl.col("instrument_token").is_in(inverse.implode())
    return base
