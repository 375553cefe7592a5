"""Which lots each reducing fill closed under FIFO: the realized-lots report (tax lots).

One row per (reducing fill, lot it closed from): the closing fill (``close_seq``,
``close_fill_id``, ``close_ts``, ``close_price``), the lot's opening fill (``open_fill_id``,
``open_ts``, ``open_price``), ``side`` of the closed lot (``LONG``/``SHORT``), ``quantity``
(units closed from that lot, > 0), ``multiplier`` and ``realized_pnl`` =
``quantity * (close_price - open_price) * sign * multiplier`` (the position's pnl currency:
the account currency unless its instrument is quoted in another; inverse contracts are
refused). The rows
of one fill sum to its FIFO realized P&L; rows come per position in fill order, then lot
order. With fractional quantities (``quantity_decimals`` d > 0) ``quantity`` is ``Float64``
units (the state's atoms / 10^d) and ``realized_pnl`` is computed on the atoms, divided
by 10^d last (``accounting.per_unit``), as the engine books it.

Columnar, from the same line as ``engine.lots`` (``episode_lines``): a fill closing
``[C_start, C_end)`` of its episode touches the lots from the one holding unit ``C_start``
to the one holding unit ``C_end - 1`` (two as-of joins); that index range is exploded and
each overlap ``min(C_end, O_end) - max(C_start, O_start)`` is the units closed from the lot.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pm_polars.engine.accounting import KEYS, per_unit
from pm_polars.engine.lots import episode_lines
from pm_polars.engine.plans import run
from pm_polars.engine.state import EngineState
from pm_polars.engine.views import units

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.String(),
    "instrument_token": pl.Int64(),
    "close_seq": pl.Int64(),
    "close_fill_id": pl.String(),
    "close_ts": pl.Int64(),
    "close_price": pl.Float64(),
    "open_fill_id": pl.String(),
    "open_ts": pl.Int64(),
    "open_price": pl.Float64(),
    "side": pl.String(),
    "quantity": pl.Int64(),
    "multiplier": pl.Float64(),
    "realized_pnl": pl.Float64(),
}


def lot_matches(state: EngineState, fills: pl.DataFrame, scale: int = 1) -> pl.DataFrame:
    """``MATCH_SCHEMA`` rows of the lots ``fills`` close when applied FIFO to ``state``.

    ``fills``: fresh (already deduplicated) fills of ``FILL_SCHEMA``, in ``seq`` order;
    multipliers as the engine books them (the position's, else the instrument's, else 1).
    ``scale``: atoms per unit of the quantities (``EngineConfig.quantity_scale``; > 1:
    ``quantity`` comes out as ``Float64`` units). ``state`` is not changed.
    """
    from pm_polars.engine.step import with_multiplier  # step imports engine.lots

    schema = MATCH_SCHEMA if scale == 1 else {**MATCH_SCHEMA, "quantity": pl.Float64()}
    if fills.height == 0:
        return pl.DataFrame(schema=schema)
    if "inverse" in state.instruments.columns:
        inverse = state.instruments.filter(pl.col("inverse")).get_column("instrument_token")
        if fills.get_column("instrument_token").is_in(inverse.implode()).any():
            raise ValueError(
                "instruments: the realized-lots report does not support inverse contracts "
                "yet (their P&L is qty x multiplier x (1/open - 1/close)); leave them out "
                "of the fills, or read eng.positions()' realized_pnl")
    rows, opens = episode_lines(state.positions, state.lots,
                                with_multiplier(state, fills))
    closes = rows.lazy().filter(pl.col("closed_qty") > 0).with_columns(
        (pl.col("_c_end") - pl.col("closed_qty")).alias("_c_start"),
        (pl.col("_c_end") - 1).alias("_c_last"),
    )
    right = opens.lazy().select("_gid", pl.col("_ep").alias("_ep_close"), "_o_start", "_i")

    def lot_holding(plan: pl.LazyFrame, unit: str, name: str) -> pl.LazyFrame:
        """``name``: the episode place of the lot holding unit number ``unit``."""
        return plan.join_asof(right.rename({"_i": name}), left_on=unit, right_on="_o_start",
                              by=["_gid", "_ep_close"], strategy="backward",
                              check_sortedness=False).drop("_o_start")

    spans = lot_holding(lot_holding(closes, "_c_start", "_i_first"), "_c_last", "_i_last")
    lot = opens.lazy().select(
        "_gid", pl.col("_ep").alias("_ep_close"), "_i", "_src", "_row", "_o_start", "_o_end",
        pl.col("price").alias("open_price"),
    )
    overlap = (pl.min_horizontal("_c_end", "_o_end")
               - pl.max_horizontal("_c_start", "_o_start"))
    side = pl.col("q_prev").sign()
    matched = run(
        spans.with_columns(pl.int_ranges("_i_first", pl.col("_i_last") + 1).alias("_i"))
        .explode("_i")
        .join(lot, on=["_gid", "_ep_close", "_i"], how="left", maintain_order="left")
        .with_columns(overlap.alias("quantity"))
        .with_columns(
            per_unit(pl.col("quantity").cast(pl.Float64)
                     * (pl.col("fill_price") - pl.col("open_price"))
                     * side.cast(pl.Float64) * pl.col("multiplier"), scale)
            .alias("realized_pnl"),
            pl.when(side > 0).then(pl.lit("LONG")).otherwise(pl.lit("SHORT")).alias("side"),
        )
    )
    # the opening fill of each lot: a lot from the state, or a fill of this batch
    carried_row, new_row = (pl.when(pl.col("_src") == s).then(pl.col("_row")) for s in (0, 1))
    picks = matched.select(carried_row.alias("c"), new_row.alias("n"))
    opened = {
        name: pl.coalesce(state.lots.get_column(name).gather(picks.get_column("c")),
                          rows.get_column(name).gather(picks.get_column("n")))
        for name in ("ts", "fill_id")
    }
    return matched.select(
        *KEYS, pl.col("seq").alias("close_seq"), pl.col("fill_id").alias("close_fill_id"),
        pl.col("ts").alias("close_ts"), pl.col("fill_price").alias("close_price"),
        opened["fill_id"].alias("open_fill_id"), opened["ts"].alias("open_ts"),
        "open_price", "side",
        pl.col("quantity") if scale == 1 else units(pl.col("quantity"), scale),
        "multiplier", "realized_pnl",
    ).cast(pl.Schema(schema))


def realized_lots(events: object, instruments: pl.DataFrame | str | Path | None = None,
                  quantity_decimals: int = 0) -> pl.DataFrame:
    """The FIFO realized-lots report of a whole fill history, from flat books.

    ``events``: anything ``PortfolioEngine.apply`` takes (JSON messages, event dicts, a
    decoded frame), e.g. a day's or a year's fills from the archive; duplicates (same
    ``source``/``fill_id``) count once and invalid records are skipped, as in the engine.
    ``quantity_decimals``: as the engine's (fractional quantities; ``quantity`` in units).
    """
    from pm_polars.engine.instruments import allows_negative
    from pm_polars.engine.refusals import price_sign
    from pm_polars.events import decode_any

    state = EngineState.empty(instruments)
    decoded = decode_any(events, quantity_decimals=quantity_decimals,
                         positive_prices=not allows_negative(state.instruments))
    fills, _, _ = price_sign(state.instruments, decoded.fills, decoded.ticks,  # as the engine
                             10**quantity_decimals)
    fresh, _, _ = state.seen.split(fills, None)
    return lot_matches(state, fresh.sort("seq"), 10**quantity_decimals)
