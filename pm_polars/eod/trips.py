"""Round trips: a position's life from flat (or a flip) back to flat (or the next flip).

A trip opens when a fill takes the position away from zero and closes when a fill brings it
back to zero or through it (a flip closes the old trip and opens a new one at the same fill).
Per trip: direction (``LONG``/``SHORT``), open and close time (ns UTC), number of fills,
peak absolute quantity, realized P&L (average cost, x multiplier, account currency), fees and
``net_pnl = realized_pnl - fees``. A flip fill counts in both trips; its realized P&L and fee
belong to the trip it closes.

A trip starts and ends flat, so under average cost its realized P&L is the sum of its cash
flows before fees (``-signed quantity x price x multiplier``; a flip's flow split into its
closing and opening parts): no per-fill average-cost replay is needed. Trips span days: the
open trip of each position is carried from one end of day to the next (``TRIP_CARRY_SCHEMA``,
kept in the end-of-day positions table), so a trip closed today includes what it realized and
paid on earlier days; ``trip_realized`` there is the open trip's realized P&L so far
(``trip_cash + quantity x average_price x multiplier``). Trips open before the first end of day
that was computed start from that day (their open time is then unknown, null).

Fractional quantities (``quantity_decimals`` d > 0): the state and fills hold atoms of
``10**-d`` units; trips are found on the atoms (exact zeros), cash flows are divided by
``10**d`` (``accounting.per_unit``), ``peak_quantity`` is ``Float64`` units and the carry's
``trip_peak`` stays in atoms (``run`` shows it in units in the positions table).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pm_polars.engine.accounting import KEYS, per_unit
from pm_polars.engine.views import units

TRIP_CARRY_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "instrument_token": pl.Int64(),
    "trip_open_ts": pl.Int64(),
    "trip_fills": pl.Int64(),
    "trip_peak": pl.Int64(),
    "trip_cash": pl.Float64(),  # the open trip's cash flows so far, before fees
    "trip_fees": pl.Float64(),
}

TRIP_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "instrument_token": pl.Int64(),
    "direction": pl.String(),
    "open_ts": pl.Int64(),
    "close_ts": pl.Int64(),
    "fills": pl.Int64(),
    "peak_quantity": pl.Int64(),
    "realized_pnl": pl.Float64(),
    "fees": pl.Float64(),
    "net_pnl": pl.Float64(),
}


def _contributions(prior: pl.DataFrame, fills: pl.DataFrame, scale: int) -> pl.DataFrame:
    """Per fill, what it adds to its trip; a flip adds a second row to the next trip.

    ``cash`` is the fill's cash flow before fees (``-signed quantity x price x m``); a flip's
    is split into the closing part (old trip) and the opening part (new trip).
    """
    d, p = pl.col("signed_qty"), pl.col("fill_price") * pl.col("multiplier")
    q, qp = pl.col("q"), pl.col("q_prev")
    base = (
        fills.join(prior.select(*KEYS, pl.col("quantity").alias("q0")), on=KEYS, how="left",
                   maintain_order="left")
        .with_columns((pl.col("q0").fill_null(0) + d.cum_sum().over(KEYS)).alias("q"))
        .with_columns((q - d).alias("q_prev"))
    )
    ends = (qp != 0) & ((q == 0) | (q.sign() != qp.sign()))
    flip = (qp != 0) & (q != 0) & (q.sign() != qp.sign())
    base = base.with_columns(
        ends.alias("ended"), flip.alias("flip"),
        (ends.cast(pl.Int64).cum_sum() - ends.cast(pl.Int64)).over(KEYS).alias("trip_no"),
    )
    own = base.select(
        *KEYS, "trip_no", "ended",
        per_unit(pl.when(pl.col("flip")).then(qp).otherwise(-d).cast(pl.Float64) * p, scale)
        .alias("cash"),
        pl.col("fee"), pl.lit(1, pl.Int64).alias("fills"),
        pl.when(qp == 0).then(pl.col("ts")).alias("open_ts"),
        pl.when(pl.col("ended")).then(pl.col("ts")).alias("close_ts"),
        pl.max_horizontal(qp.abs(), pl.when(pl.col("flip")).then(0).otherwise(q.abs()))
        .alias("peak"),
        pl.when(qp != 0).then(qp.sign()).otherwise(q.sign()).alias("dir"),
    )
    flips = base.filter(pl.col("flip")).select(
        *KEYS, (pl.col("trip_no") + 1).alias("trip_no"), pl.lit(False).alias("ended"),
        per_unit(-q.cast(pl.Float64) * p, scale).alias("cash"), pl.lit(0.0).alias("fee"),
        pl.lit(1, pl.Int64).alias("fills"), pl.col("ts").alias("open_ts"),
        pl.lit(None, pl.Int64).alias("close_ts"), q.abs().alias("peak"), q.sign().alias("dir"),
    )
    return pl.concat([own, flips], how="vertical_relaxed")


def day_trips(
    day: date, prior: pl.DataFrame, fills: pl.DataFrame, carry: pl.DataFrame, scale: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(trips closed on ``day``, open-trip carry at its end).

    ``prior`` is the engine position state before the day (``POSITION_STATE_SCHEMA``),
    ``fills`` the day's applied fills in arrival order with a ``multiplier`` column,
    ``carry`` the open-trip carry of the previous day (``TRIP_CARRY_SCHEMA``). A trip's
    realized P&L is the sum of its cash flows (it starts and ends flat); a carried trip
    without carry starts from the position's cost basis. ``scale``: atoms per unit of the
    quantities of ``prior``, ``fills`` and the carry's ``trip_peak``.
    """
    carry = carry.select(list(TRIP_CARRY_SCHEMA)).cast(pl.Schema(TRIP_CARRY_SCHEMA))
    schema = TRIP_SCHEMA if scale == 1 else {**TRIP_SCHEMA, "peak_quantity": pl.Float64()}
    if fills.height == 0:
        return pl.DataFrame(schema=schema), carry
    basis = prior.select(
        *KEYS, pl.col("quantity").alias("q0"),
        per_unit(-pl.col("quantity").cast(pl.Float64) * pl.col("average_price")
                 * pl.col("multiplier"), scale).alias("basis_cash"),
    )
    trips = (
        _contributions(prior, fills, scale)
        .group_by(*KEYS, "trip_no")
        .agg(
            pl.col("ended").any(), pl.col("cash").sum(), pl.col("fee").sum(),
            pl.col("fills").sum(), pl.col("open_ts").min(), pl.col("close_ts").max(),
            pl.col("peak").max(), pl.col("dir").first(),
        )
        .join(basis, on=KEYS, how="left")
    )
    carried = (pl.col("trip_no") == 0) & (pl.col("q0").fill_null(0) != 0)
    trips = trips.join(carry, on=KEYS, how="left").with_columns(
        pl.when(carried).then(pl.col("trip_open_ts")).otherwise(pl.col("open_ts"))
        .alias("open_ts"),
        pl.col("fills") + pl.when(carried).then(pl.col("trip_fills")).otherwise(0).fill_null(0),
        pl.max_horizontal("peak", pl.when(carried).then(pl.col("trip_peak"))),
        pl.col("cash")
        + pl.when(carried).then(pl.coalesce("trip_cash", "basis_cash")).otherwise(0.0),
        pl.col("fee") + pl.when(carried).then(pl.col("trip_fees")).otherwise(0.0).fill_null(0.0),
    )
    closed = trips.filter(pl.col("ended")).select(
        pl.lit(day, pl.Date).alias("date"), *KEYS,
        pl.when(pl.col("dir") > 0).then(pl.lit("LONG")).otherwise(pl.lit("SHORT"))
        .alias("direction"),
        "open_ts", "close_ts", "fills",
        (pl.col("peak") if scale == 1 else units(pl.col("peak"), scale)).alias("peak_quantity"),
        pl.col("cash").alias("realized_pnl"), pl.col("fee").alias("fees"),
        (pl.col("cash") - pl.col("fee")).alias("net_pnl"),
    ).cast(pl.Schema(schema)).sort(*KEYS, "close_ts")
    still_open = trips.filter(~pl.col("ended")).select(
        *KEYS, pl.col("open_ts").alias("trip_open_ts"), pl.col("fills").alias("trip_fills"),
        pl.col("peak").alias("trip_peak"), pl.col("cash").alias("trip_cash"),
        pl.col("fee").alias("trip_fees"),
    ).cast(pl.Schema(TRIP_CARRY_SCHEMA))
    untouched = carry.join(fills.select(KEYS).unique(), on=KEYS, how="anti")
    return closed, pl.concat([untouched, still_open]).sort(KEYS)
