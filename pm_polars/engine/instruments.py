"""Instrument reference data: the contract multiplier per instrument token.

Accepts a Kite-style instruments table (CSV, Parquet or a Polars frame) with
``instrument_token``, ``tradingsymbol`` and either ``multiplier`` or ``lot_size``.
``multiplier`` wins when both are present. The multiplier scales every money figure of a
position: P&L, values and cash flows are ``quantity * price * multiplier``. If your fills
report quantities in units (Kite's convention, e.g. 75 for one NIFTY lot), the right
multiplier is 1: pass a ``multiplier`` column rather than relying on ``lot_size``.

Currencies (optional columns, ``CURRENCY_SCHEMA``; a table without any of them is exactly
the three columns above, as always):

* ``quote_currency``: the currency of the instrument's prices and of a linear position's
  P&L, cash flows and fees (null: the engine's ``account_currency``);
* ``base_currency``: the traded asset (``BTC`` of ``BTCUSD``); the settlement currency of an
  inverse contract;
* ``inverse`` (bool, default false): P&L ``= qty x multiplier x (1/open - 1/close)`` in
  ``base_currency`` (required then), ``market_value = qty x multiplier / mark``;
* ``fx_pair`` (``"USDINR"`` or ``"USD/INR"``): the instrument is an FX rate; its ticks'
  ``last_price`` converts one unit of the first currency into the second.

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


CURRENCY_SCHEMA: dict[str, pl.DataType] = {
    "quote_currency": pl.String(),
    "base_currency": pl.String(),
    "inverse": pl.Boolean(),
    "fx_pair": pl.String(),
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
    currency = [c for c in CURRENCY_SCHEMA if c in frame.columns]
    extra = [] if not currency else [
        (pl.col(c) if c in frame.columns else pl.lit(False if c == "inverse" else None))
        .cast(t).alias(c) for c, t in CURRENCY_SCHEMA.items()]
    out = frame.select(
        pl.col("instrument_token").cast(pl.Int64),
        symbol.cast(pl.String).alias("tradingsymbol"),
        mult.cast(pl.Float64).alias("multiplier"),
        *extra,
        _allow_negative(frame).alias(ALLOW_NEGATIVE),
    ).unique("instrument_token", keep="last", maintain_order=True)
    if currency:
        out = _check_currencies(out.with_columns(pl.col("inverse").fill_null(False)))
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


_CODE = "[A-Z]{3}"


def _check_currencies(out: pl.DataFrame) -> pl.DataFrame:
    """Currency columns checked (codes of three capitals, an inverse row has its base
    currency, a pair is two codes); ``fx_pair`` normalised to ``"USDINR"``."""
    out = out.with_columns(pl.col("fx_pair").str.replace("/", "", literal=True))
    checks = [
        ("quote_currency", pl.col("quote_currency").is_not_null()
         & ~pl.col("quote_currency").str.contains(f"^{_CODE}$"),
         "a three-letter currency code in capitals (e.g. USD) or empty"),
        ("base_currency", pl.col("base_currency").is_not_null()
         & ~pl.col("base_currency").str.contains(f"^{_CODE}$"),
         "a three-letter currency code in capitals (e.g. BTC) or empty"),
        ("base_currency", pl.col("inverse") & pl.col("base_currency").is_null(),
         "required for an inverse contract (its settlement currency, e.g. BTC)"),
        ("fx_pair", pl.col("fx_pair").is_not_null()
         & ~pl.col("fx_pair").str.contains(f"^{_CODE}{_CODE}$"),
         "two currency codes, e.g. USDINR or USD/INR (the rate converts the first into "
         "the second)"),
    ]
    for column, bad, valid in checks:
        rows = out.filter(bad)
        if rows.height:
            raise InstrumentError(
                f"instruments table has {rows.height} rows with a bad {column} (first token "
                f"{rows['instrument_token'][0]}, got {rows[column][0]!r}); valid: {valid}")
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
