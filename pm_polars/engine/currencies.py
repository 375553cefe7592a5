"""Currencies: which instruments book in which currency, and the rates that convert them.

Conventions
-----------
* Every position books in its *pnl currency*: an inverse contract's ``base_currency`` (its
  settlement currency, e.g. BTC for BitMEX XBTUSD), else the instrument's
  ``quote_currency``, else the account currency. ``realized_pnl``, ``fees``, the
  ``*_value`` columns and the day money columns of a position are in it; so is its cash.
* A rate converts one unit of a currency ``C`` into the account currency ``A``: the latest
  mark of an FX instrument whose ``fx_pair`` is ``CA`` (its ``last_price``), else ``1 /``
  the mark of ``AC``; ``A`` itself is 1. No other route (no crosses): a currency without
  one has no rate, and every total it enters is null (``missing_rate``), never 1.0.
* Inverse contracts book on the *line price* ``y = -1 / price`` (``line_price``): with it,
  the linear formulas hold unchanged (average cost and FIFO alike), e.g. realized
  ``closed x (y_close - y_open) x side x m = closed x side x m x (1/open - 1/close)``. The
  state keeps ``y`` (``average_price``, lot prices, ``*_value`` are in line units); views
  show prices again (``fxviews``).
* Cash: the state's ``cash`` column holds the account currency's (starting cash plus the
  flows of linear account-currency positions, as always); the cash of every other
  position is read from its own columns on read (``fxviews``): linear ``sell_value -
  buy_value - fees`` (its quote-currency flows), inverse ``realized_pnl - fees`` (settled
  into the wallet in its base currency, no notional changes hands).

A table of instruments with no currency column, or whose instruments are all linear in the
account currency, has no currency work at all (:func:`of` is ``None``): today's path, bit
for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pm_polars.engine.marks import mark_expr

TOKEN_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "pnl_currency": pl.String(),
    "inverse": pl.Boolean(),
}


@dataclass(frozen=True)
class Currencies:
    """The currency facts one read or one batch needs: ``tokens`` (``TOKEN_SCHEMA``, the
    instruments that are not linear in the account currency), ``account`` (the code)."""

    account: str
    tokens: pl.DataFrame
    _rates: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = field(
        default_factory=dict, compare=False, repr=False)

    def rates_of(self, instruments: pl.DataFrame, marks: pl.DataFrame) -> pl.DataFrame:
        """:func:`rates`, remembered for the last ``marks`` frame (the same object: no tick
        since)."""
        last = self._rates.get(0)
        if last is None or last[0] is not marks:
            last = (marks, rates(instruments, marks, self.account))
            self._rates[0] = last
        return last[1]

    @property
    def inverse_tokens(self) -> pl.Series:
        return self.tokens.filter(pl.col("inverse")).get_column("instrument_token")

    @property
    def foreign_tokens(self) -> pl.Series:
        """Tokens whose cash is not the account currency's column (all of ``tokens``)."""
        return self.tokens.get_column("instrument_token")


def of(instruments: pl.DataFrame, account: str) -> Currencies | None:
    """The instruments that book elsewhere than linear in ``account``; ``None`` if none."""
    if "inverse" not in instruments.columns:
        return None
    tokens = instruments.select(
        "instrument_token",
        pl.when(pl.col("inverse")).then(pl.col("base_currency"))
        .otherwise(pl.coalesce("quote_currency", pl.lit(account))).alias("pnl_currency"),
        pl.col("inverse"),
    ).filter(pl.col("inverse") | (pl.col("pnl_currency") != account))
    return Currencies(account, tokens) if tokens.height else None


def line_price(price: pl.Expr, inverse: pl.Expr) -> pl.Expr:
    """The price an inverse contract books on, ``-1/price`` (see the module docstring)."""
    return pl.when(inverse).then(-1.0 / price).otherwise(price)


def rates(instruments: pl.DataFrame, marks: pl.DataFrame, account: str) -> pl.DataFrame:
    """``pnl_currency, fx_rate``: one unit of each currency with a rate, in ``account``
    (``account`` itself 1.0; a direct pair wins over the reverse one, the first instrument
    over a later one). A book has a handful of FX instruments: they are read as Python
    values (two small queries), not by a chain of frame operations (~0.3 ms each)."""
    found: dict[str, float] = {account: 1.0}
    if "fx_pair" in instruments.columns:
        pairs = instruments.filter(pl.col("fx_pair").is_not_null())
        tokens = pairs.get_column("instrument_token").to_list()
        quoted = marks.filter(pl.col("instrument_token").is_in(tokens)).select(
            "instrument_token", mark_expr.alias("_rate"))
        rate = {t: r for t, r in quoted.iter_rows() if r is not None}
        legs = [(p[:3], p[3:6], rate.get(t))
                for t, p in zip(tokens, pairs.get_column("fx_pair").to_list(), strict=True)]
        for base, quote, r in legs:  # direct pairs first: CA prices C in A
            if r is not None and quote == account:
                found.setdefault(base, r)
        for base, quote, r in legs:  # then the reverse ones: AC gives C at 1/rate
            if r is not None and base == account:
                found.setdefault(quote, 1.0 / r)
    return pl.DataFrame({"pnl_currency": list(found), "fx_rate": list(found.values())},
                        schema={"pnl_currency": pl.String, "fx_rate": pl.Float64})


def rate_tokens(instruments: pl.DataFrame, account: str) -> pl.Series:
    """Tokens of the FX instruments that price a currency into ``account`` (either way)."""
    if "fx_pair" not in instruments.columns:
        return pl.Series("instrument_token", [], pl.Int64)
    pair = pl.col("fx_pair")
    return instruments.filter(
        pair.str.slice(0, 3).eq(account) | pair.str.slice(3, 3).eq(account)
    ).get_column("instrument_token")
