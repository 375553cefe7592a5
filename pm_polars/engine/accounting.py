"""Average-cost position accounting as pure functions over Polars frames.

Conventions
-----------
* ``quantity`` is signed: long > 0, short < 0, in units (shares, contracts).
* ``average_price`` is the average open price per unit; 0 when flat.
* money (``realized_pnl``, ``fees``, ``*_value``, cash flows) is in the position's pnl
  currency (the account currency unless the instruments table says otherwise, see
  ``engine.currencies``; an inverse contract books on its line price ``-1/price``) and
  already multiplied by the instrument ``multiplier``.
* fixed point: with ``quantity_decimals = d`` the integer quantity columns hold atoms of
  ``10**-d`` units and ``scale = 10**d``; money is computed on atoms and divided by ``scale``
  once, last (:func:`per_unit`); ``average_price`` (cost / quantity) needs no scale.

The columnar form
-----------------
Average cost is path dependent, but the signed *cost basis* ``C = average_price * quantity``
follows an affine recurrence per fill: ``C_i = alpha_i * C_{i-1} + beta_i`` with

=========================  ==================  ==================
fill kind                  alpha               beta
=========================  ==================  ==================
open from flat             0                   price * d
add (same direction)       1                   price * d
partial close (reduce)     q_i / q_{i-1}       0
close to flat              0                   0
flip through zero          0                   price * q_i
=========================  ==================  ==================

where ``d`` is the signed fill quantity and ``q_i`` the quantity after the fill. Affine maps
compose associatively, ``(a2, b2) o (a1, b1) = (a1 * a2, a2 * b1 + b2)``, so all prefix
compositions of a position's fills are computed with a Hillis-Steele scan: ``ceil(log2 n)``
whole-frame passes of shift-and-combine, ``n`` the longest run of fills of one position in the
batch. Unlike the closed form ``C_i = P_i * (C_0 + sum beta_j / P_j)`` (``P`` a cumulative
product), the scan never divides by a product, so long reduce/add cycles whose product
underflows to 0 stay exact: a vanishing product only means the old lots were closed out.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pm_polars.engine.plans import run
from pm_polars.engine.ranges import rows_in_ranges

KEYS = ["portfolio_id", "instrument_token"]

POSITION_STATE_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "instrument_token": pl.Int64(),
    "quantity": pl.Int64(),
    "average_price": pl.Float64(),
    "realized_pnl": pl.Float64(),
    "fees": pl.Float64(),
    "buy_quantity": pl.Int64(),
    "sell_quantity": pl.Int64(),
    "buy_value": pl.Float64(),
    "sell_value": pl.Float64(),
    "multiplier": pl.Float64(),
    # the trading day (``engine.dayfigures``): the position carried in at the last roll and
    # the day's counters since (reset by the roll)
    "overnight_quantity": pl.Int64(),
    "overnight_average_price": pl.Float64(),
    "day_buy_quantity": pl.Int64(),
    "day_sell_quantity": pl.Int64(),
    "day_buy_value": pl.Float64(),
    "day_sell_value": pl.Float64(),
    "day_realized_pnl": pl.Float64(),
    "day_fees": pl.Float64(),
}
CUMULATIVE = ["realized_pnl", "fees", "buy_quantity", "sell_quantity", "buy_value",
              "sell_value"]
DAY_COUNTERS = {f"day_{c}": c for c in CUMULATIVE}  # day column -> the delta it adds
CARRIED = ["overnight_quantity", "overnight_average_price"]

_d = pl.col("signed_qty")


def per_unit(money: pl.Expr, scale: int) -> pl.Expr:
    """``money`` computed on atoms (quantity x price x multiplier) in money: ``/ scale``,
    the one rounding; the identity at ``scale`` 1 (integer units, today's figures)."""
    return money if scale == 1 else money / float(scale)
_q = pl.col("q")
_q_prev = pl.col("q_prev")


def _affine_coefficients() -> list[pl.Expr]:
    """alpha/beta of each fill's map on the cost basis (see module docstring)."""
    p = pl.col("fill_price")
    opens = _q_prev == 0
    adds = _q_prev.sign() == _d.sign()
    flat = _q == 0
    flips = _q.sign() == -_q_prev.sign()
    alpha = (
        pl.when(opens | flat | flips)
        .then(pl.lit(0.0))
        .when(adds)
        .then(pl.lit(1.0))
        .otherwise(_q.cast(pl.Float64) / _q_prev.cast(pl.Float64))
    )
    beta = (
        pl.when(opens | adds)
        .then(p * _d)
        .when(flips)
        .then(p * _q)
        .otherwise(pl.lit(0.0))
    )
    return [alpha.alias("alpha"), beta.alias("beta")]


def prefix_compose(frame: pl.LazyFrame, max_run: int) -> pl.LazyFrame:
    """Inclusive prefix composition of affine maps ``(alpha, beta)`` within runs.

    ``frame`` must be sorted so that each position's rows are contiguous and carry ``idx``,
    the 0-based row number inside the position. Returns ``frame`` with ``alpha``/``beta``
    replaced by the composed map of rows ``0..idx`` of the same position.
    """
    idx = pl.col("idx")
    a, b = pl.col("alpha"), pl.col("beta")
    step = 1
    while step < max_run:
        has_prev = idx >= step
        frame = frame.with_columns(
            pl.when(has_prev).then(a * a.shift(step)).otherwise(a).alias("alpha"),
            pl.when(has_prev).then(a * b.shift(step) + b).otherwise(b).alias("beta"),
        )
        step *= 2
    return frame


# Up to this many fills, sort on the key itself (one sort); above, on its hash (see below).
_EXACT_SORT_ROWS = 4096
_SAME_KEY = (pl.col("portfolio_id") == pl.col("portfolio_id").shift()) & (
    pl.col("instrument_token") == pl.col("instrument_token").shift()
)


def group_contiguously(fills: pl.DataFrame) -> pl.LazyFrame:
    """Sort fills so each position's rows are contiguous and in arrival order.

    On large batches, sorting on a 64-bit hash of the key is about twice as fast as sorting
    on the string key. A hash collision would interleave two positions; it is detected and
    the exact sort used. Small batches sort on the key (no hash, no check).
    """
    if fills.height <= _EXACT_SORT_ROWS:
        return fills.lazy().sort([*KEYS, "seq"])
    h = pl.col("_h")
    f = fills.with_columns(pl.struct(KEYS).hash().alias("_h")).sort(["_h", "seq"])
    if f.select(((h == h.shift()) & ~_SAME_KEY).any()).item():
        return fills.lazy().sort([*KEYS, "seq"])
    return f.lazy().drop("_h")


def fill_ledger(positions: pl.DataFrame, fills: pl.DataFrame, scale: int = 1) -> pl.DataFrame:
    """Per-fill accounting: one row per fill with the position after it.

    ``fills`` follows ``FILL_SCHEMA`` plus a ``multiplier`` column; ``positions`` follows
    ``POSITION_STATE_SCHEMA`` (the state before the batch). Output: the fills' key, seq,
    quantity, price, fee and multiplier columns plus ``_gid`` (position number), ``q``
    (quantity after the fill), ``average_price`` (after), ``closed_qty`` (units closed, >= 0)
    and ``realized`` (gross price P&L of this fill x multiplier). Rows come out grouped by
    position (key or hash order), then in arrival order. ``scale``: atoms per unit.
    """
    prior = positions.lazy().select(
        *KEYS,
        pl.col("quantity").alias("q0"),
        pl.col("average_price").alias("a0"),
    )
    lean = ["seq", *KEYS, "quantity", "signed_qty", "fill_price", "fee", "multiplier"]
    start = ~_SAME_KEY.fill_null(False)
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    running = _d.cum_sum()
    net = running - pl.when(start).then(running - _d).forward_fill()
    grouped = (fills.lazy().select(lean).sort([*KEYS, "seq"])
               if fills.height <= _EXACT_SORT_ROWS else group_contiguously(fills.select(lean)))
    plan = (
        grouped
        .join(prior, on=KEYS, how="left", maintain_order="left")
        .with_columns(
            pl.col("q0").fill_null(0),
            pl.col("a0").fill_null(0.0),
            (row - pl.when(start).then(row).forward_fill()).alias("idx"),
            start.cum_sum().alias("_gid"),
            net.alias("_net"),
        )
        .with_columns((pl.col("q0") + pl.col("_net")).alias("q"))
        .with_columns((_q - _d).alias("q_prev"))
        .with_columns(_affine_coefficients())
        .drop("_net")
    )
    f = run(plan)
    max_run = int(f.get_column("idx").max() or 0) + 1 if f.height else 0  # type: ignore[arg-type]
    c0 = pl.col("a0") * pl.col("q0")
    cost_prev = pl.when(pl.col("idx") == 0).then(c0).otherwise(pl.col("cost").shift(1))
    avg_prev = (
        pl.when(_q_prev != 0).then(cost_prev / _q_prev.cast(pl.Float64)).otherwise(pl.lit(0.0))
    )
    closing = (_q_prev != 0) & (_d.sign() != _q_prev.sign())
    closed = pl.when(closing).then(pl.min_horizontal(_d.abs(), _q_prev.abs())).otherwise(0)
    return run(
        prefix_compose(f.lazy(), max_run)
        .with_columns((pl.col("alpha") * c0 + pl.col("beta")).alias("cost"))
        .with_columns(
            pl.when(_q != 0)
            .then(pl.col("cost") / _q.cast(pl.Float64))
            .otherwise(pl.lit(0.0))
            .alias("average_price"),
            closed.alias("closed_qty"),
            per_unit(closed * (pl.col("fill_price") - avg_prev) * _q_prev.sign()
                     * pl.col("multiplier"), scale).alias("realized"),
        )
        .drop("alpha", "beta", "cost", "q0", "a0")
    )


def position_deltas(ledger: pl.DataFrame, scale: int = 1) -> pl.DataFrame:
    """Collapse a fill ledger to one row per position: final quantity/average and sums."""
    return run(deltas_plan(ledger, scale))


def deltas_plan(ledger: pl.DataFrame, scale: int = 1) -> pl.LazyFrame:
    """:func:`position_deltas` as a plan (``merge_positions`` collects it in its own)."""
    notional = per_unit(
        pl.col("quantity").cast(pl.Float64) * pl.col("fill_price") * pl.col("multiplier"), scale)
    buy = pl.col("signed_qty") > 0
    return ledger.lazy().group_by("_gid", maintain_order=True).agg(
        *[pl.col(k).first() for k in KEYS],
        pl.col("q").last().alias("quantity"),
        pl.col("average_price").last(),
        pl.col("realized").sum().alias("realized_pnl"),
        pl.col("fee").sum().alias("fees"),
        pl.col("quantity").filter(buy).sum().alias("buy_quantity"),
        pl.col("quantity").filter(~buy).sum().alias("sell_quantity"),
        notional.filter(buy).sum().alias("buy_value"),
        notional.filter(~buy).sum().alias("sell_value"),
        pl.col("multiplier").first(),
    )


def touched(positions: pl.DataFrame, fills: pl.DataFrame
            ) -> tuple[pl.DataFrame, np.ndarray | None]:
    """``(rows, row numbers)``: the positions some of ``fills`` trade (their state before
    the batch) and where they are in ``positions``; for a book no larger than the batch,
    the whole book and ``None`` (finding the rows would cost more than it saves).

    ``positions`` is sorted by instrument_token (``merge_positions``), so the candidates
    are a binary search per traded instrument; only they are matched on the whole key. The
    batch's joins against the state (multiplier, prior quantity, old counters) then read
    these rows, not the whole book.
    """
    if positions.height == 0 or fills.height == 0:
        return positions.head(0), np.empty(0, np.int64)
    if positions.height <= fills.height:  # a small book: joining all of it costs no more
        return positions, None
    col = positions.get_column("instrument_token").to_numpy()
    tokens = np.unique(fills.get_column("instrument_token").to_numpy())
    rows = rows_in_ranges(np.searchsorted(col, tokens, side="left"),
                          np.searchsorted(col, tokens, side="right"))
    if len(rows) == 0:
        return positions.head(0), rows
    if len(rows) < positions.height:
        candidates = positions[pl.Series(rows)]
    else:
        candidates = positions
    found = run(
        candidates.lazy().with_columns(pl.Series("_row", rows))
        .join(fills.lazy().select(KEYS).unique(), on=KEYS, how="semi", maintain_order="left")
    )
    return found.drop("_row"), found.get_column("_row").to_numpy()


def merge_positions(positions: pl.DataFrame, deltas: pl.DataFrame | pl.LazyFrame,
                    prior: tuple[pl.DataFrame, np.ndarray | None] | None = None
                    ) -> pl.DataFrame:
    """New position state: untouched rows kept, touched rows replaced by state + deltas.

    Quantity and average come from the deltas (they already start from the prior state);
    cumulative sums (realized, fees, buy/sell quantities and values) add up, and so do the
    day's counters (a batch applied by ``step`` lies within one trading day); the carried
    position stays (0 for a position new today). The result is sorted by
    ``instrument_token`` so ticks can find their positions by binary search.

    ``prior``: :func:`touched` of the batch's fills (the rows the deltas replace), so the
    book is only copied, not joined; ``None`` (or no row numbers): found by joins on the
    whole book.
    """
    cumulative = CUMULATIVE
    old = [*cumulative, *DAY_COUNTERS, *CARRIED]
    token = pl.col("instrument_token").set_sorted()
    before = positions if prior is None else prior[0]
    updated = run(
        deltas.lazy()
        .join(
            before.lazy().select(*KEYS, *[pl.col(c).alias(f"{c}_old") for c in old],
                                 pl.lit(True).alias("_found")),
            on=KEYS,
            how="left",
            maintain_order="left",
        )
        .with_columns(
            *[(pl.col(c) + pl.col(f"{c}_old").fill_null(0)).alias(c) for c in cumulative],
            *[(pl.col(f"{d}_old").fill_null(0) + pl.col(c)).alias(d)
              for d, c in DAY_COUNTERS.items()],
            *[pl.col(f"{c}_old").fill_null(0).alias(c) for c in CARRIED],
        )
        .select(*POSITION_STATE_SCHEMA, "_found")
        .cast(pl.Schema(POSITION_STATE_SCHEMA))
        .sort("instrument_token", maintain_order=True)
        .with_columns(token)
    )
    found = updated.height - updated.get_column("_found").null_count()  # rows replaced
    updated = updated[list(POSITION_STATE_SCHEMA)]  # column selection: no query
    rows = None if prior is None else prior[1]
    if found == positions.height:  # every position replaced (keys are unique): no copy
        return updated
    if rows is None:
        kept = positions.lazy().join(updated.lazy().select(*KEYS), on=KEYS, how="anti",
                                     maintain_order="left")  # the deltas' keys
    elif len(rows) == 0:
        kept = positions.lazy()
    elif len(rows) == positions.height:
        return updated
    else:
        keep = np.ones(positions.height, dtype=bool)
        keep[rows] = False
        kept = positions.lazy().filter(pl.lit(pl.Series(keep)))
    untouched = run(kept.with_columns(token))
    return untouched.merge_sorted(updated, key="instrument_token")


def cash_flows(ledger: pl.DataFrame, scale: int = 1,
               elsewhere: pl.Series | None = None) -> pl.DataFrame:
    """Cash change per portfolio: BUY -q*p*m - fee, SELL +q*p*m - fee (account currency).

    ``elsewhere``: tokens booked in another currency or inverse (``engine.currencies``):
    their flows are 0 here (their cash is read from their positions)."""
    flow = per_unit(-pl.col("signed_qty") * pl.col("fill_price") * pl.col("multiplier"),
                    scale) - pl.col("fee")
    if elsewhere is not None:
        flow = pl.when(pl.col("instrument_token").is_in(elsewhere.implode())).then(
            0.0).otherwise(flow)
    return ledger.group_by("portfolio_id", maintain_order=True).agg(flow.sum().alias("cash_flow"))
