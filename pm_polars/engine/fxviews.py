"""Read models of a book with several currencies or inverse contracts (``engine.currencies``).

The same frames as ``views`` plus:

* positions: ``pnl_currency`` (the currency of the row's money columns), ``inverse``,
  ``fx_rate`` (one unit of ``pnl_currency`` in the account currency, latest rate; null
  when there is none) and ``missing_rate``. Inverse rows show prices again
  (``average_price`` is the harmonic average entry price ``1 / mean(1/price)``),
  ``market_value = qty x m / mark`` and ``*_value`` the base-currency value of the fills;
* portfolios (and their ``{source}_Overall`` rows, AUM): every money total in the account
  currency, each position's money x its ``fx_rate``; ``cash`` is the account currency's cash
  plus each other position's cash (``currencies``) converted; ``equity = cash + sum(market
  value of linear positions) + sum(unrealized P&L of inverse ones)`` (an inverse contract is
  margined: its face value is exposure, not an asset); ``missing_rate`` true, and every money
  total null, when one of its positions has no rate.
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine import dayfigures as dayf
from pm_polars.engine import views
from pm_polars.engine.currencies import Currencies, line_price
from pm_polars.engine.marks import mark_expr, valuation
from pm_polars.engine.plans import run

FX_POSITION_COLUMNS = ["pnl_currency", "inverse", "fx_rate", "missing_rate"]
_VALUES = ["buy_value", "sell_value", "day_buy_value", "day_sell_value"]
_AVERAGES = ["average_price", "overnight_average_price"]
PORTFOLIO_MONEY = [c for c in views.PORTFOLIO_SUMMED if c != "open_positions"]


def positions_view(positions: pl.DataFrame, marks: pl.DataFrame, fx: Currencies,
                   instruments: pl.DataFrame, scale: int = 1, mark: str = "last"
                   ) -> pl.DataFrame:
    """``views.positions_view`` with the currency columns (see the module docstring);
    ``mark``: ``EngineConfig.mark`` (``"bid_ask"``: a long's unrealized P&L and market value
    at the bid, a short's at the ask, on the line price of that side for an inverse row).

    The per-instrument facts (mark, close, currency, rate, line prices) are one small frame
    joined once; the rest is one lazy chain, collected once."""
    q = pl.col("quantity").cast(pl.Float64)
    inv = pl.col("inverse")
    line = pl.col("_line")
    quote = [pl.col("tick_bid").alias("_bid"), pl.col("tick_ask").alias("_ask")]
    per_token = (
        marks.lazy()
        .select("instrument_token", mark_expr.alias("_mark"), pl.col("roll_price").alias("_prev"),
                *(quote if mark != "last" else []))
        .join(fx.tokens.lazy(), on="instrument_token", how="left", maintain_order="left")
        .with_columns(pl.col("pnl_currency").fill_null(fx.account), inv.fill_null(False))
        .join(fx.rates_of(instruments, marks).lazy(), on="pnl_currency", how="left",
              maintain_order="left")
        .with_columns(line_price(pl.col("_mark"), inv).alias("last_price"),
                      line_price(pl.col("_prev"), inv).alias("prev_close"),
                      *([line_price(pl.col(c), inv).alias(c) for c in ("_bid", "_ask")]
                        if mark != "last" else []))
    )
    price = valuation(mark, pl.col("quantity"), pl.col("last_price"), pl.col("_bid"),
                      pl.col("_ask"))
    frame = (
        views.in_units(positions, scale).lazy()
        .join(per_token, on="instrument_token", how="left", maintain_order="left")
        .with_columns(inv.fill_null(False), pl.col("pnl_currency").fill_null(fx.account))
        .with_columns(
            pl.when(pl.col("quantity") != 0)
            .then((price - pl.col("average_price")) * q * pl.col("multiplier"))
            .otherwise(0.0)
            .alias("unrealized_pnl"),
            (q * price * pl.col("multiplier")).fill_null(0.0).alias("_line"),
            *dayf.position_day_exprs(),
        )
    )
    if scale != 1:
        frame = frame.with_columns(pl.col("day_quantity").round(len(str(scale)) - 1))
    shown = [pl.when(inv & (pl.col(c) != 0)).then(-1.0 / pl.col(c)).otherwise(pl.col(c))
             .alias(c) for c in _AVERAGES]
    return run(
        frame.with_columns(
            *shown,
            *[pl.when(inv).then(-pl.col(c)).otherwise(pl.col(c)).alias(c) for c in _VALUES],
            pl.when(inv).then(-line).otherwise(line).alias("market_value"),
            pl.col("_mark").alias("last_price"),
            pl.col("_prev").alias("prev_close"),
            pl.col("fx_rate").is_null().alias("missing_rate"),
        )
        .select(*views.POSITION_COLUMNS, *FX_POSITION_COLUMNS)
        .sort("portfolio_id", "instrument_token")
    )


def portfolios_view(cash: pl.DataFrame, positions: pl.DataFrame, account: str,
                    trading_day: str | None = None) -> pl.DataFrame:
    """Portfolio totals in the account currency from an fx positions view."""
    r, inv = pl.col("fx_rate"), pl.col("inverse")
    fees = pl.col("fees")
    mv = pl.col("market_value") * r
    elsewhere = inv | (pl.col("pnl_currency") != account)
    own_cash = pl.when(inv).then(pl.col("realized_pnl") - fees).otherwise(
        pl.col("sell_value") - pl.col("buy_value") - fees)
    value = pl.when(inv).then(pl.col("unrealized_pnl")).otherwise(pl.col("market_value"))
    totals = positions.group_by("portfolio_id").agg(
        (pl.col("realized_pnl") * r).sum().alias("total_realized_pnl"),
        (pl.col("unrealized_pnl") * r).sum().alias("total_unrealized_pnl"),
        (fees * r).sum().alias("total_fees"),
        mv.sum().alias("market_value"),
        mv.abs().sum().alias("gross_exposure"),
        (pl.col("quantity") != 0).sum().cast(pl.Int64).alias("open_positions"),
        *[(pl.col(c).fill_null(0.0) * r).sum().alias(c) for c in dayf.PORTFOLIO_DAY_SUMS],
        pl.when(elsewhere).then(own_cash * r).otherwise(0.0).sum().alias("_cash"),
        (value * r).sum().alias("_value"),
        pl.col("missing_rate").any().alias("missing_rate"),
    )
    zero = ["total_realized_pnl", "total_unrealized_pnl", "total_fees", "market_value",
            "gross_exposure", "_cash", "_value", *dayf.PORTFOLIO_DAY_SUMS]
    out = (
        cash.join(totals, on="portfolio_id", how="left")
        .with_columns([pl.col(c).fill_null(0.0) for c in zero])
        .with_columns(pl.col("open_positions").fill_null(0),
                      pl.col("missing_rate").fill_null(False))
        .with_columns(
            (pl.col("total_realized_pnl") + pl.col("total_unrealized_pnl")).alias("total_pnl"),
            (pl.col("total_realized_pnl") + pl.col("total_unrealized_pnl")
             - pl.col("total_fees")).alias("net_pnl"),
            (pl.col("cash") + pl.col("_cash")).alias("cash"),
            pl.col("market_value").alias("net_exposure"),
            *dayf.portfolio_day_exprs(trading_day),
        )
        .with_columns((pl.col("cash") + pl.col("_value")).alias("equity"))
        .select(*views.PORTFOLIO_COLUMNS, "missing_rate")
        .sort("portfolio_id")
    )
    return _null_if_missing(out)


def _null_if_missing(frame: pl.DataFrame) -> pl.DataFrame:
    """Every money total null where ``missing_rate`` (a sum without a rate is unknown)."""
    if not frame.get_column("missing_rate").any():
        return frame
    ok = ~pl.col("missing_rate")
    return frame.with_columns(
        [pl.when(ok).then(pl.col(c)).otherwise(None).alias(c) for c in PORTFOLIO_MONEY])


def overall_portfolios(portfolios: pl.DataFrame) -> pl.DataFrame:
    """``views.overall_portfolios`` with ``missing_rate`` (any strategy's)."""
    if not portfolios.get_column("missing_rate").any():  # every rate known: plain sums
        return views.overall_portfolios(portfolios).with_columns(
            pl.lit(False).alias("missing_rate"))
    missing = portfolios.group_by("source").agg(pl.col("missing_rate").any())
    out = views.overall_portfolios(portfolios.with_columns(
        [pl.col(c).fill_null(0.0) for c in PORTFOLIO_MONEY]))
    ids = missing.select((pl.col("source") + "_" + views.OVERALL).alias("portfolio_id"),
                         "missing_rate")
    return _null_if_missing(out.join(ids, on="portfolio_id", how="left"))


def overall_positions(positions: pl.DataFrame, cash: pl.DataFrame,
                      decimals: int = 0) -> pl.DataFrame:
    """``views.overall_positions`` with the currency columns; an inverse aggregate's
    ``average_price`` is the harmonic one (net quantity / sum of quantity / price)."""
    inv = pl.col("inverse")
    line = positions.with_columns(
        pl.when(inv & (pl.col(c) != 0)).then(-1.0 / pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in _AVERAGES)
    out = views.overall_positions(line, cash, decimals)
    facts = positions.select("instrument_token", *FX_POSITION_COLUMNS).unique(
        "instrument_token", keep="first")
    return (
        out.join(facts, on="instrument_token", how="left", maintain_order="left")
        .with_columns(
            pl.when(inv & (pl.col(c) != 0)).then(-1.0 / pl.col(c)).otherwise(pl.col(c))
            .alias(c) for c in _AVERAGES)
        .select(*views.POSITION_COLUMNS, *FX_POSITION_COLUMNS)
        .sort("portfolio_id", "instrument_token")
    )


def aum(portfolios: pl.DataFrame) -> dict[str, object]:
    """``views.aum``; the total (and a source's figure) ``None`` when a rate is missing."""
    out = views.aum(portfolios.with_columns(
        [pl.col(c).fill_null(0.0) for c in PORTFOLIO_MONEY]))
    missing = portfolios.filter(pl.col("missing_rate"))
    if missing.height:
        out["total"] = None
        for c in views.AUM_DAY_SUMS:
            out[c] = None
        by_source = dict(out["by_source"])  # type: ignore[call-overload]
        for source in missing.get_column("source").unique().to_list():
            by_source[source] = None
        out["by_source"] = by_source
    return out
