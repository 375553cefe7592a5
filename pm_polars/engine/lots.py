"""FIFO cost basis: open lots as a frame, reducing fills matched against them columnarly.

Conventions
-----------
* A *lot* is one opening fill's still-open remainder: ``quantity`` signed (the position's
  side), ``price`` per unit (the opening fill's price), ``ts`` (ns UTC) and ``fill_id`` of
  the opening fill, and ``lot``, its place in the position's queue (ascending = older; the
  numbers are increasing, not contiguous).
* A reducing fill realizes against the oldest open lots first:
  ``realized = sum(closed_k * (fill_price - lot_price_k)) * side * multiplier``.
* A fill that flips the position closes every lot, then opens one lot with the remainder.
* A position's ``average_price`` is the quantity-weighted average price of its open lots.

The columnar form
-----------------
A position's fills are cut into *episodes*: runs on one side of zero (a fill from flat or a
flip starts one; the lots carried in from the state belong to the position's first
episode). Inside an episode, every unit opened gets a coordinate on a line: the lots and
opening fills lie one after the other, in order, as intervals ``[O_start, O_end)`` of
cumulative opened quantity. FIFO closing is then just cumulative closed quantity on the same
line: a reducing fill closes the interval ``[C_start, C_end)``. With ``F(x)`` the cost of
the first ``x`` units opened (piecewise linear: ``cost_start_k + (x - O_start_k) *
price_k`` on lot ``k``), the fill's closed cost is ``F(C_end) - F(C_start)``; ``F`` at a
point is one backward as-of join on ``O_start``. What remains open after the batch is the
part of the last episode's intervals beyond its ``C_total``. Quantities are integers, so
the matching itself is exact; only the costs are floats, summed inside one episode.
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine.accounting import (
    KEYS,
    deltas_plan,
    fill_ledger,
    group_contiguously,
    per_unit,
)
from pm_polars.engine.config import COST_BASES
from pm_polars.engine.plans import run

LOT_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "instrument_token": pl.Int64(),
    "lot": pl.Int64(),
    "quantity": pl.Int64(),
    "price": pl.Float64(),
    "ts": pl.Int64(),
    "fill_id": pl.String(),
}
LOT_COLUMNS = list(LOT_SCHEMA)

_d = pl.col("signed_qty")
_q = pl.col("q")
_q_prev = pl.col("q_prev")
_EP = ["_gid", "_ep"]


def empty_lots() -> pl.DataFrame:
    return pl.DataFrame(schema=LOT_SCHEMA)


def _within(expr: pl.Expr, start: pl.Expr) -> pl.Expr:
    """Inclusive running sum of an integer ``expr`` restarting where ``start`` is true
    (rows of a group contiguous): a global cumsum minus its value before the group."""
    running = expr.cum_sum()
    return running - pl.when(start).then(running - expr).forward_fill()


def _starts(cols: list[str]) -> pl.Expr:
    same = pl.lit(True)
    for c in cols:
        same = same & (pl.col(c) == pl.col(c).shift())
    return ~same.fill_null(False)


def episode_lines(positions: pl.DataFrame, lots: pl.DataFrame, fills: pl.DataFrame
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two sides of the FIFO line (see the module docstring) as ``(rows, opens)``.

    ``rows``: the fills grouped by position (``_gid``, ``idx``) with ``q``/``q_prev``,
    ``closed_qty``, their opening (``_ep``) and closing (``_ep_close``) episode and
    ``_c_end``, units closed so far in the closing episode (``_c_first``: first row of it).
    ``opens``: carried lots and opening fills in queue order per episode (``_src`` 0/1,
    ``_row`` into ``lots``/``rows``, ``_i`` 1-based place in the episode) with their
    interval ``[_o_start, _o_end)``, ``price`` and ``_cost_start`` (cost of the units
    before them in the episode).
    """
    prior = positions.lazy().select(*KEYS, pl.col("quantity").alias("q0"))
    lean = fills.select(
        "seq", *KEYS, "quantity", "signed_qty", "fill_price", "fee", "multiplier", "ts",
        "fill_id",
    )
    start = _starts(KEYS)
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    closing = (_q_prev != 0) & (_d.sign() != _q_prev.sign())
    closed = pl.when(closing).then(pl.min_horizontal(_d.abs(), _q_prev.abs())).otherwise(0)
    opened = _d.abs() - pl.col("closed_qty")
    new_ep = (pl.col("_open") > 0) & (_q.sign() != _q_prev.sign())
    f = run(
        group_contiguously(lean)
        .join(prior, on=KEYS, how="left", maintain_order="left")
        .with_columns(
            pl.col("q0").fill_null(0),
            (row - pl.when(start).then(row).forward_fill()).alias("idx"),
            start.cum_sum().alias("_gid"),
            _within(_d, start).alias("_net"),
        )
        .with_columns((pl.col("q0") + pl.col("_net")).alias("q"))
        .with_columns((_q - _d).alias("q_prev"))
        .with_columns(closed.alias("closed_qty"))
        .with_columns(opened.alias("_open"))
        .with_columns(new_ep.cast(pl.Int64).alias("_new"))
        .with_columns(_within(pl.col("_new"), pl.col("idx") == 0).alias("_ep"))
        .with_columns((pl.col("_ep") - pl.col("_new")).alias("_ep_close"))
        .drop("_net")
    )
    gids = f.lazy().filter(pl.col("idx") == 0).select(*KEYS, "_gid", "q0")
    carried = (
        lots.lazy()
        .with_row_index("_row")
        .join(gids, on=KEYS, how="inner")
        .select(
            "_gid", pl.lit(0, pl.Int64).alias("_ep"), pl.lit(0, pl.Int8).alias("_src"),
            pl.col("lot").alias("_ord"), pl.col("quantity").abs().alias("_qty"), "price",
            "_row",
        )
        .sort("_gid", "_ord")
    )
    # fills come in (_gid, idx) order, so in (_gid, _ep) order too: a merge on
    # (_gid, source) puts each position's carried lots before its batch's opens
    from_fills = f.lazy().with_row_index("_row").filter(pl.col("_open") > 0).select(
        "_gid", "_ep", pl.lit(1, pl.Int8).alias("_src"), pl.col("idx").alias("_ord"),
        pl.col("_open").alias("_qty"), pl.col("fill_price").alias("price"), "_row",
    )
    merge_key = (pl.col("_gid").cast(pl.Int64) * 2 + pl.col("_src")).alias("_mk")
    ep_start = _starts(_EP)
    opens = run(
        carried.with_columns(merge_key)
        .merge_sorted(from_fills.with_columns(merge_key), key="_mk")
        .drop("_mk")
        .with_columns(_within(pl.col("_qty"), ep_start).alias("_o_end"),
                      (pl.col("_qty").cast(pl.Float64) * pl.col("price")).alias("_cost"),
                      (pl.int_range(pl.len(), dtype=pl.Int64)
                       - pl.when(ep_start).then(pl.int_range(pl.len(), dtype=pl.Int64))
                       .forward_fill() + 1).alias("_i"))
        .with_columns((pl.col("_o_end") - pl.col("_qty")).alias("_o_start"))
    )
    opens = run(_running_sum(opens.lazy(), "_cost", "_cost_start", opens)
                .with_columns(pl.col("_cost_start") - pl.col("_cost")))
    # C_end per row: units closed so far in the row's closing episode (rows are in
    # (_gid, _ep_close) order)
    close_start = _starts(["_gid", "_ep_close"])
    f = run(f.lazy().with_columns(_within(pl.col("closed_qty"), close_start).alias("_c_end"),
                                  close_start.alias("_c_first")))
    return f, opens


def fifo_ledger(
    positions: pl.DataFrame, lots: pl.DataFrame, fills: pl.DataFrame, scale: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """FIFO accounting of one batch.

    ``positions``/``lots``: the state before the batch; ``fills``: ``FILL_SCHEMA`` plus
    ``multiplier``. Returns ``(ledger, open_lots, averages)``: the ledger has the columns of
    ``accounting.fill_ledger`` (``realized`` matched FIFO; ``average_price`` is not per
    fill, see ``averages``), ``open_lots`` the lots (``LOT_SCHEMA``) of every position the
    batch touched after it, ``averages`` ``_gid`` -> ``average_price`` after the batch.
    """
    f, opens = episode_lines(positions, lots, fills)
    # F(C_end) by one as-of join; a fill's closed cost is F's increase since the previous
    # row of the episode (F(0) = 0 at its start)
    cost_at = pl.col("_cost_start") + (pl.col("_c_end") - pl.col("_o_start")).cast(
        pl.Float64) * pl.col("price")
    f_at = pl.col("_f_at")
    closed_cost = f_at - pl.when(pl.col("_c_first")).then(0.0).otherwise(f_at.shift())
    side = _q_prev.sign().cast(pl.Float64)
    ledger = run(
        f.lazy()
        .join_asof(
            opens.lazy().select(pl.col("_gid"), pl.col("_ep").alias("_ep_close"), "_o_start",
                                "_cost_start", "price"),
            left_on="_c_end", right_on="_o_start", by=["_gid", "_ep_close"],
            strategy="backward", check_sortedness=False,
        )
        .with_columns(cost_at.fill_null(0.0).alias("_f_at"))
        .with_columns(
            pl.lit(0.0).alias("average_price"),
            pl.when(pl.col("closed_qty") > 0)
            .then(per_unit(
                (pl.col("closed_qty").cast(pl.Float64) * pl.col("fill_price")
                 - closed_cost) * side * pl.col("multiplier"), scale)
            )
            .otherwise(0.0)
            .alias("realized"),
        )
        .drop("_f_at", "_o_start", "_cost_start", "price", "q0", "_open", "_new", "_ep",
              "_ep_close", "_c_end", "_c_first", "ts", "fill_id")
    )
    remaining, averages = _remaining(f, opens, lots)
    return ledger, remaining, averages


def _running_sum(plan: pl.LazyFrame, column: str, out: str, frame: pl.DataFrame
                 ) -> pl.LazyFrame:
    """Inclusive running sum of float ``column`` within episodes (``_i``: 1-based row
    number in the episode, rows contiguous), as ``out``: a Hillis-Steele scan of
    ``ceil(log2 n)`` shift-and-add passes (``n`` the longest episode). Each partial sum only
    adds rows of its own episode, so its rounding is relative to the episode's notional (a
    global cumsum minus the episode's start would be relative to the whole batch's)."""
    longest = int(frame.get_column("_i").max() or 0)  # type: ignore[arg-type]
    i, v = pl.col("_i"), pl.col(out)
    plan = plan.with_columns(pl.col(column).alias(out))
    step = 1
    while step < longest:
        plan = plan.with_columns(pl.when(i > step).then(v + v.shift(step)).otherwise(v)
                                 .alias(out))
        step *= 2
    return plan


def _remaining(f: pl.DataFrame, opens: pl.DataFrame, carried: pl.DataFrame
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The open lots of every touched position after the batch, and their averages (the
    opening fill's ``ts``/``fill_id`` are looked up for the few lots left open only)."""
    is_last = (pl.col("_gid") != pl.col("_gid").shift(-1)).fill_null(True)
    last = f.lazy().filter(is_last).select(
        "_gid", "portfolio_id", "instrument_token", pl.col("q").alias("_q_end"), "_ep",
        # units closed in the final episode: none if the last fill opened it
        pl.when(pl.col("_ep_close") == pl.col("_ep")).then(pl.col("_c_end")).otherwise(0)
        .alias("_c_total"),
    )
    rem = (pl.col("_o_end") - pl.max_horizontal("_o_start", "_c_total")).alias("_rem")
    newest = pl.when(pl.col("_src") == 0).then(pl.col("_ord")).forward_fill()
    newest_gid = pl.when(pl.col("_src") == 0).then(pl.col("_gid")).forward_fill()
    lots = run(
        opens.lazy()
        .join(last, on=_EP, how="inner")
        .filter(pl.col("_q_end") != 0)
        .with_columns(rem)
        .filter(pl.col("_rem") > 0)
        .with_columns(
            (pl.col("_rem") * pl.col("_q_end").sign()).alias("quantity"),
            # carried lots keep their number; new ones follow the position's newest (the
            # last carried one still open: lots come in queue order, carried first)
            pl.when(pl.col("_src") == 0).then(pl.col("_ord"))
            .otherwise(pl.col("_ord") + 1 + pl.when(newest_gid == pl.col("_gid"))
                       .then(newest).otherwise(-1))
            .alias("lot"),
        )
    )
    # the opening fill's ts and fill_id, by row (state lots or this batch's fills)
    carried_row, new_row = (pl.when(pl.col("_src") == s).then(pl.col("_row")) for s in (0, 1))
    lots = lots.with_columns(
        pl.coalesce(carried.get_column("ts").gather(lots.select(carried_row).to_series()),
                    f.get_column("ts").gather(lots.select(new_row).to_series())).alias("ts"),
        pl.coalesce(
            carried.get_column("fill_id").gather(lots.select(carried_row).to_series()),
            f.get_column("fill_id").gather(lots.select(new_row).to_series())).alias("fill_id"),
    )
    averages = lots.group_by("_gid").agg(
        ((pl.col("_rem").cast(pl.Float64) * pl.col("price")).sum()
         / pl.col("_rem").sum().cast(pl.Float64)).alias("average_price")
    )
    return lots.select(LOT_COLUMNS).cast(pl.Schema(LOT_SCHEMA)), averages


def merge_lots(lots: pl.DataFrame, positions: pl.DataFrame, touched: pl.DataFrame
               ) -> pl.DataFrame:
    """State lots after a batch: the lots of ``positions`` (the keys a batch touched, one
    row each) replaced by ``touched`` (their open lots after it). Lots of one position stay
    in queue order; positions in no particular order (``PortfolioEngine.lots`` sorts)."""
    kept = lots.lazy().join(positions.lazy().select(KEYS), on=KEYS, how="anti",
                            maintain_order="left")
    return run(pl.concat([kept, touched.lazy()]))


def with_fifo_average(deltas: pl.DataFrame | pl.LazyFrame, averages: pl.DataFrame
                      ) -> pl.DataFrame:
    """Position deltas with the FIFO average of the open lots (0 when flat)."""
    return run(
        deltas.lazy().drop("average_price")
        .join(averages.lazy(), on="_gid", how="left", maintain_order="left")
        .with_columns(pl.col("average_price").fill_null(0.0))
    )


def book(positions: pl.DataFrame, lots: pl.DataFrame, fills: pl.DataFrame, cost_basis: str,
         scale: int = 1) -> tuple[pl.DataFrame, pl.DataFrame | pl.LazyFrame, pl.DataFrame]:
    """``(ledger, position deltas, lots after)`` of a batch under ``cost_basis``;
    ``scale``: atoms per unit of the quantity columns (``accounting.per_unit``). Under
    average cost the deltas are a plan (``accounting.merge_positions`` collects it)."""
    if cost_basis == "fifo":
        ledger, touched, averages = fifo_ledger(positions, lots, fills, scale)
        deltas = with_fifo_average(deltas_plan(ledger, scale), averages)
        return ledger, deltas, merge_lots(lots, deltas, touched)
    if cost_basis != "average":
        raise ValueError(f"cost_basis must be one of {COST_BASES}, got {cost_basis!r}")
    ledger = fill_ledger(positions, fills, scale)
    return ledger, deltas_plan(ledger, scale), lots
