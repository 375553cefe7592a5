"""Instrument reference data: the contract multiplier per instrument token.

Accepts a Kite-style instruments table (CSV, Parquet or a Polars frame) with
``instrument_token``, ``tradingsymbol`` and either ``multiplier`` or ``lot_size``.
``multiplier`` wins when both are present. The multiplier scales every money figure of a
position: P&L, values and cash flows are ``quantity * price * multiplier``. If your fills
report quantities in units (Kite's convention, e.g. 75 for one NIFTY lot), the right
multiplier is 1: pass a ``multiplier`` column rather than relying on ``lot_size``.

``allow_negative_price`` (optional bool, default false): whether the instrument's prices
(``fill_price``, ``last_price``, ``bid``, ``ask``) may be zero or negative, as some futures
and spreads settle (NYMEX WTI May 2020 settled at -37.63 USD/bbl on 20 April 2020). Without
it such prices are refused (``engine.refusals.price_sign``).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

INSTRUMENT_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "tradingsymbol": pl.String(),
    "multiplier": pl.Float64(),
    "allow_negative_price": pl.Boolean(),  # prices <= 0 accepted for this instrument
}
ALLOW_NEGATIVE = "allow_negative_price"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


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
        _allow_negative(frame).alias(ALLOW_NEGATIVE),
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


def _allow_negative(frame: pl.DataFrame) -> pl.Expr:
    """The ``allow_negative_price`` column as Boolean (absent or empty: false); text
    ``true/false/1/0/yes/no`` (any case) as a CSV holds it, else ``InstrumentError``."""
    if ALLOW_NEGATIVE not in frame.columns:
        return pl.lit(False, pl.Boolean)
    col = frame.get_column(ALLOW_NEGATIVE)
    if col.dtype == pl.Boolean:
        return pl.col(ALLOW_NEGATIVE).fill_null(False)
    text = col.cast(pl.String).str.strip_chars().str.to_lowercase().fill_null("")
    bad = col.filter(~text.is_in([*_TRUE, *_FALSE]))
    if bad.len():
        raise InstrumentError(
            f"instruments table column {ALLOW_NEGATIVE!r} must be true or false, got "
            f"{bad[0]!r}; fix the column (absent or empty means false)")
    return pl.lit(text.is_in(list(_TRUE)))


def allows_negative(instruments: pl.DataFrame) -> bool:
    """Whether any instrument accepts prices <= 0 (the decoder then leaves the sign to the
    engine step: ``decode_*(..., positive_prices=False)``)."""
    if ALLOW_NEGATIVE not in instruments.columns or instruments.height == 0:
        return False
    return bool(instruments.get_column(ALLOW_NEGATIVE).any())
