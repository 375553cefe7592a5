"""Today's figures: the day roll and the live day/M2M figures, as pure functions over frames.

Definitions (Kite conventions, the same as ``eod.roll``; money in account currency, already
x ``multiplier`` m; prices per unit; quantities signed; ``L`` the current mark, which at the
roll is the day's close):

* the roll (``roll``), before the first event of a later trading day: every position's
  ``overnight_quantity`` q0 := ``quantity``, ``overnight_average_price`` :=
  ``average_price``, the day counters (``day_buy_quantity``, ``day_sell_quantity``,
  ``day_buy_value``, ``day_sell_value``, ``day_realized_pnl``, ``day_fees``) := 0, and every
  instrument's ``roll_price`` := its mark, which is every position's ``prev_close`` PC
  (null when the instrument had no mark at the roll; before the first roll q0 = 0 and PC
  is null);
* ``day_quantity = day_buy_quantity - day_sell_quantity``;
* ``day_pnl = (day_sell_value - day_buy_value) + day_quantity x L x m`` (today's trades
  alone, nothing carried);
* attribution: ``day_carried_pnl = q0 x (L - PC) x m`` (0 when q0 = 0: the carried
  position's move since the previous close) and ``day_trading_pnl = (day_sell_value -
  day_buy_value) + (quantity - q0) x L x m`` (today's trades at the current mark);
* ``m2m = day_carried_pnl + day_trading_pnl`` (computed as that sum, so the attribution adds
  up exactly) = ``(day_sell_value - day_buy_value) + quantity x L x m - q0 x PC x m``: the
  change of ``realized_pnl + unrealized_pnl`` over the day, so consecutive days' m2m add
  up to the lifetime change. Gross of fees;
* ``day_net_pnl = m2m - day_fees`` (portfolios): the day's change of ``net_pnl``.

Portfolio day figures are sums over its positions. Day and net figures describe the same
position twice: never add ``day_pnl`` to ``m2m``.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from pm_polars.engine.accounting import CARRIED, DAY_COUNTERS
from pm_polars.engine.marks import mark_expr
from pm_polars.engine.state import EngineState

POSITION_DAY_COLUMNS = [
    "overnight_quantity", "overnight_average_price", "prev_close",
    "day_buy_quantity", "day_sell_quantity", "day_buy_value", "day_sell_value",
    "day_quantity", "day_pnl", "day_realized_pnl", "day_fees",
    "day_carried_pnl", "day_trading_pnl", "m2m",
]
PORTFOLIO_DAY_SUMS = ["day_pnl", "m2m", "day_realized_pnl", "day_fees", "day_carried_pnl",
                      "day_trading_pnl"]
PORTFOLIO_DAY_COLUMNS = ["trading_day", *PORTFOLIO_DAY_SUMS, "day_net_pnl"]


def roll(state: EngineState, day: int, ahead: pl.DataFrame | None = None) -> EngineState:
    """``state`` rolled to trading ``day`` (see the module docstring).

    ``ahead``: marks of a state already in ``day`` (``state.merge``); its ``roll_price``
    wins where it has one, as the price at the roll that state saw.
    """
    price = mark_expr
    marks = state.marks
    if ahead is not None:
        marks = marks.join(ahead.select("instrument_token", pl.col("roll_price").alias("_ahead")),
                           on="instrument_token", how="left", maintain_order="left")
        price = pl.coalesce("_ahead", mark_expr)
    marks = marks.with_columns(price.alias("roll_price")).select(state.marks.columns)
    positions = state.positions.with_columns(
        *[pl.col(c.removeprefix("overnight_")).alias(c) for c in CARRIED],
        *[pl.lit(0, state.positions.schema[c]).alias(c) for c in DAY_COUNTERS],
    )
    return replace(state, positions=positions, marks=marks, trading_day=day)


def position_day_exprs() -> list[pl.Expr]:
    """The day columns of a positions view (needs ``last_price`` and ``prev_close``)."""
    m, mark = pl.col("multiplier"), pl.col("last_price")
    q0 = pl.col("overnight_quantity")
    flow = pl.col("day_sell_value") - pl.col("day_buy_value")
    day_q = pl.col("day_buy_quantity") - pl.col("day_sell_quantity")
    carried = (pl.when(q0 != 0)
               .then(q0.cast(pl.Float64) * (mark - pl.col("prev_close")) * m)
               .otherwise(0.0))
    trading = flow + (pl.col("quantity") - q0).cast(pl.Float64) * mark * m
    return [
        day_q.alias("day_quantity"),
        (flow + day_q.cast(pl.Float64) * mark * m).alias("day_pnl"),
        carried.alias("day_carried_pnl"),
        trading.alias("day_trading_pnl"),
        (carried + trading).alias("m2m"),
    ]


def portfolio_day_aggs() -> list[pl.Expr]:
    """Per-portfolio sums of the positions' day figures (nulls count 0)."""
    return [pl.col(c).fill_null(0.0).sum().alias(c) for c in PORTFOLIO_DAY_SUMS]


def portfolio_day_exprs(trading_day: str | None) -> list[pl.Expr]:
    """The day columns of a portfolios view after the sums (filled with 0)."""
    return [pl.lit(trading_day, pl.String).alias("trading_day"),
            (pl.col("m2m") - pl.col("day_fees")).alias("day_net_pnl")]
