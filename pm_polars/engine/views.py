"""Read models computed from engine state: positions, portfolios, aggregates, AUM.

Pure functions from state frames to frames. Nothing derived is stored in the state: marks
change on every tick, so unrealized P&L, market value and equity are computed on read.

Money is in account currency (a book with other currencies or inverse contracts is read by
``engine.fxviews`` instead): ``unrealized_pnl = (mark - average_price) * quantity * m``,
``market_value = quantity * mark * m``, ``equity = cash + sum(market_value)``,
``net_pnl = realized + unrealized - fees``, ``total_pnl = realized + unrealized``.
The day figures (``trading_day``, ``m2m``, ``day_pnl``, ...) are ``engine.dayfigures``'.
``mark="bid_ask"``: ``unrealized_pnl`` and ``market_value`` use the position's side of the
quote instead of ``last_price`` (``marks.valuation``: bid for a long, ask for a short).

Fixed point (``quantity_decimals`` d > 0): the state's quantity columns are atoms of
``10**-d`` units; a view shows them as ``Float64`` units (``atoms / 10**d``, the nearest
double to the exact decimal) and computes its money from those units.
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine import dayfigures as dayf
from pm_polars.engine.marks import mark_expr, valuation

OVERALL = "Overall"

POSITION_COLUMNS = [
    "portfolio_id", "instrument_token", "quantity", "average_price", "last_price",
    "realized_pnl", "unrealized_pnl", "fees", "multiplier", "market_value",
    "buy_quantity", "sell_quantity", "buy_value", "sell_value",
    *dayf.POSITION_DAY_COLUMNS,
]

PORTFOLIO_COLUMNS = [
    "portfolio_id", "source", "strategy_id", "cash", "total_realized_pnl",
    "total_unrealized_pnl", "total_fees", "total_pnl", "net_pnl", "market_value",
    "equity", "gross_exposure", "net_exposure", "open_positions",
    *dayf.PORTFOLIO_DAY_COLUMNS,
]


QUANTITY_STATE = ["quantity", "buy_quantity", "sell_quantity", "overnight_quantity",
                  "day_buy_quantity", "day_sell_quantity"]


def units(atoms: pl.Expr, scale: int) -> pl.Expr:
    """Atoms (``Int64``, ``1/scale`` units) as ``Float64`` units: the double nearest the
    exact decimal (a division by a constant alone may be off by one ulp, so it is rounded
    to the atom's decimal places)."""
    return (atoms.cast(pl.Float64) / float(scale)).round(len(str(scale)) - 1)


def in_units(positions: pl.DataFrame, scale: int) -> pl.DataFrame:
    """Position state with its quantity columns (atoms) as ``Float64`` units; as is at
    ``scale`` 1."""
    if scale == 1:
        return positions
    return positions.with_columns(units(pl.col(QUANTITY_STATE), scale))


def positions_view(positions: pl.DataFrame, marks: pl.DataFrame,
                   scale: int = 1, mark: str = "last") -> pl.DataFrame:
    """One row per position ever opened (flat ones included, quantity 0); ``scale``: atoms
    per unit of the state's quantities (1: integer units, shown as ``Int64``); ``mark``:
    ``"last"`` or ``"bid_ask"`` (``EngineConfig.mark``)."""
    q = pl.col("quantity").cast(pl.Float64)
    quote = [pl.col("tick_bid").alias("_bid"), pl.col("tick_ask").alias("_ask")]
    price = valuation(mark, pl.col("quantity"), pl.col("last_price"), pl.col("_bid"),
                      pl.col("_ask"))
    return (
        in_units(positions, scale).join(
            marks.select("instrument_token", mark_expr.alias("last_price"),
                         pl.col("roll_price").alias("prev_close"),
                         *(quote if mark != "last" else [])),
            on="instrument_token",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.when(pl.col("quantity") != 0)
            .then((price - pl.col("average_price")) * q * pl.col("multiplier"))
            .otherwise(0.0)
            .alias("unrealized_pnl"),
            (q * price * pl.col("multiplier")).fill_null(0.0).alias("market_value"),
            *dayf.position_day_exprs(),
        )
        .with_columns(*_exact_day_quantity(scale))
        .select(POSITION_COLUMNS)
        .sort("portfolio_id", "instrument_token")
    )


def _exact_day_quantity(scale: int) -> list[pl.Expr]:
    """``day_quantity`` (a difference of units) rounded to the atom: the double nearest the
    exact decimal, as the state's atoms give it."""
    if scale == 1:
        return []
    return [pl.col("day_quantity").round(len(str(scale)) - 1)]


def portfolios_view(cash: pl.DataFrame, positions: pl.DataFrame,
                    trading_day: str | None = None) -> pl.DataFrame:
    """Portfolio totals from the cash table and a ``positions_view`` frame; ``trading_day``
    (ISO date) is the book's."""
    mv = pl.col("market_value")
    totals = positions.group_by("portfolio_id").agg(
        pl.col("realized_pnl").sum().alias("total_realized_pnl"),
        pl.col("unrealized_pnl").sum().alias("total_unrealized_pnl"),
        pl.col("fees").sum().alias("total_fees"),
        mv.sum().alias("market_value"),
        mv.abs().sum().alias("gross_exposure"),
        (pl.col("quantity") != 0).sum().cast(pl.Int64).alias("open_positions"),
        *dayf.portfolio_day_aggs(),
    )
    zero = ["total_realized_pnl", "total_unrealized_pnl", "total_fees", "market_value",
            "gross_exposure", *dayf.PORTFOLIO_DAY_SUMS]
    return (
        cash.join(totals, on="portfolio_id", how="left")
        .with_columns([pl.col(c).fill_null(0.0) for c in zero])
        .with_columns(pl.col("open_positions").fill_null(0))
        .with_columns(
            (pl.col("total_realized_pnl") + pl.col("total_unrealized_pnl")).alias("total_pnl"),
            (
                pl.col("total_realized_pnl") + pl.col("total_unrealized_pnl")
                - pl.col("total_fees")
            ).alias("net_pnl"),
            (pl.col("cash") + mv).alias("equity"),
            mv.alias("net_exposure"),
            *dayf.portfolio_day_exprs(trading_day),
        )
        .select(PORTFOLIO_COLUMNS)
        .sort("portfolio_id")
    )


def overall_positions(positions: pl.DataFrame, cash: pl.DataFrame,
                      decimals: int = 0) -> pl.DataFrame:
    """Per-source aggregate positions ``{source}_Overall``: net quantity per instrument.

    ``average_price`` of an aggregate is net cost / net quantity (0 when net flat); the money
    columns are sums over the source's strategies. ``decimals`` > 0: quantities are
    ``Float64`` units of at most that many decimals, and their sums are rounded to them
    (``0.1 + 0.2`` nets to ``0.3``, a flat aggregate to exactly 0).
    """
    q = pl.col("quantity")
    sums = ["quantity", "realized_pnl", "unrealized_pnl", "fees", "market_value",
            "buy_quantity", "sell_quantity", "buy_value", "sell_value", *OVERALL_DAY_SUMS]
    nets = (
        positions.join(cash.select("portfolio_id", "source"), on="portfolio_id", how="left")
        .with_columns((pl.col("average_price") * q.cast(pl.Float64)).alias("cost"))
        .group_by("source", "instrument_token")
        .agg(
            *[pl.col(c).sum() for c in sums],
            pl.col("cost").sum(),
            pl.col("last_price").first(),
            pl.col("multiplier").first(),
            pl.col("prev_close").first(),
            (pl.col("overnight_average_price")
             * pl.col("overnight_quantity").cast(pl.Float64)).sum().alias("_cost0"),
        )
    )
    if decimals:
        nets = nets.with_columns(pl.col(QUANTITY_VIEW).round(decimals))
    return (
        nets.with_columns(
            (pl.col("source") + "_" + OVERALL).alias("portfolio_id"),
            pl.when(q != 0).then(pl.col("cost") / q.cast(pl.Float64)).otherwise(0.0)
            .alias("average_price"),
            pl.when(pl.col("overnight_quantity") != 0)
            .then(pl.col("_cost0") / pl.col("overnight_quantity").cast(pl.Float64))
            .otherwise(0.0).alias("overnight_average_price"),
        )
        .select(POSITION_COLUMNS)
        .sort("portfolio_id", "instrument_token")
    )


QUANTITY_VIEW = ["quantity", "buy_quantity", "sell_quantity", "overnight_quantity",
                 "day_buy_quantity", "day_sell_quantity", "day_quantity"]
OVERALL_DAY_SUMS = [c for c in dayf.POSITION_DAY_COLUMNS
                    if c not in ("overnight_average_price", "prev_close")]
PORTFOLIO_SUMMED = [c for c in PORTFOLIO_COLUMNS
                    if c not in ("portfolio_id", "source", "strategy_id", "trading_day")]


def overall_portfolios(portfolios: pl.DataFrame) -> pl.DataFrame:
    """Per-source aggregate portfolio rows ``{source}_Overall`` (sums of strategy rows;
    ``trading_day`` the book's)."""
    sums = PORTFOLIO_SUMMED
    return (
        portfolios.group_by("source")
        .agg(*[pl.col(c).sum() for c in sums], pl.col("trading_day").max())
        .with_columns(
            (pl.col("source") + "_" + OVERALL).alias("portfolio_id"),
            pl.lit(OVERALL).alias("strategy_id"),
        )
        .select(PORTFOLIO_COLUMNS)
        .sort("portfolio_id")
    )


def aum(portfolios: pl.DataFrame) -> dict[str, object]:
    """Assets under management: sum of strategy portfolios' equity, total and per source,
    and the day's ``m2m`` and ``day_net_pnl`` summed over them (account currency)."""
    by_source = portfolios.group_by("source").agg(pl.col("equity").sum()).sort("source")
    return {
        "total": float(portfolios.get_column("equity").sum() or 0.0),
        "by_source": dict(zip(by_source["source"].to_list(), by_source["equity"].to_list(),
                              strict=True)),
        **{c: float(portfolios.get_column(c).sum() or 0.0) for c in AUM_DAY_SUMS},
    }


AUM_DAY_SUMS = ["m2m", "day_net_pnl"]
