"""Instrument reference data: the contract multiplier per instrument token.

Accepts a Kite-style instruments table (CSV, Parquet or a Polars frame) with
``instrument_token``, ``tradingsymbol`` and either ``multiplier`` or ``lot_size``.
``multiplier`` wins when both are present. The multiplier scales every money figure of a
position: P&L, values and cash flows are ``quantity * price * multiplier``. If your fills
report quantities in units (Kite's convention, e.g. 75 for one NIFTY lot), the right
multiplier is 1: pass a ``multiplier`` column rather than relying on ``lot_size``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

INSTRUMENT_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "tradingsymbol": pl.String(),
    "multiplier": pl.Float64(),
}


class InstrumentError(ValueError):
    """The instruments table cannot be used; the message names the column and the fix."""


MAX_MULTIPLIER = 1e6  # keeps a fill's notional (<= 1e24 x multiplier) far from overflow


def load_instruments(source: pl.DataFrame | str | Path | None) -> pl.DataFrame:
    """Normalise an instruments table to ``INSTRUMENT_SCHEMA`` (one row per token)."""
    if source is None:
        return pl.DataFrame(schema=INSTRUMENT_SCHEMA)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise InstrumentError(f"instruments file {path} does not exist")
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    else:
        frame = source
    if "instrument_token" not in frame.columns:
        raise InstrumentError(
            "instruments table needs an 'instrument_token' column; "
            f"got columns {frame.columns}"
        )
    if "multiplier" in frame.columns:
        mult = pl.col("multiplier")
    elif "lot_size" in frame.columns:
        mult = pl.col("lot_size")
    else:
        raise InstrumentError(
            "instruments table needs a 'multiplier' (or 'lot_size') column; "
            f"got columns {frame.columns}"
        )
    symbol = pl.col("tradingsymbol") if "tradingsymbol" in frame.columns else pl.lit(None)
    out = frame.select(
        pl.col("instrument_token").cast(pl.Int64),
        symbol.cast(pl.String).alias("tradingsymbol"),
        mult.cast(pl.Float64).alias("multiplier"),
    ).unique("instrument_token", keep="last", maintain_order=True)
    bad = out.filter(
        pl.col("multiplier").is_null() | ~pl.col("multiplier").is_finite()
        | (pl.col("multiplier") <= 0) | (pl.col("multiplier") > MAX_MULTIPLIER)
    )
    if bad.height:
        raise InstrumentError(
            f"instruments table has {bad.height} rows with a missing, non-finite, "
            f"non-positive or above {MAX_MULTIPLIER:g} multiplier (first token "
            f"{bad['instrument_token'][0]}, got {bad['multiplier'][0]}); fix the "
            "multiplier/lot_size column"
        )
    return out
