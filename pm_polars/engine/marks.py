"""Mark prices per instrument, as pure functions over Polars frames.

The mark of an instrument is its latest tick by event time ``ts`` (ns, UTC). An older tick
arriving late never overwrites a newer one; on equal ``ts`` the later arrival wins. A tick
without ``ts`` counts as "now": it gets the newest ``ts`` seen so far for the instrument, so
it wins over everything before it. Before any tick, the mark is the latest fill price of the
instrument by the same rule (any portfolio).

State frame (``MARK_STATE_SCHEMA``), one row per instrument ever seen::

    instrument_token, tick_price, tick_ts, fill_price, fill_ts, roll_price, tick_bid, tick_ask

``mark = coalesce(tick_price, fill_price)``; prices per unit. ``roll_price`` is the mark at
the last trading-day roll (``engine.dayfigures.roll``), every position's ``prev_close``.
``tick_bid``/``tick_ask`` are the winning tick's quote (null where it carried none): one
tick wins for its last price, bid and ask together (they are one quote; a later tick without
a bid clears the older bid).

Bid/ask marking (``EngineConfig.mark = "bid_ask"``, :func:`valuation`): a long position is
valued at ``tick_bid``, a short at ``tick_ask`` (what closing it would get or cost), each
falling back to the mark when that side is missing; a flat position at the mark. It moves
``unrealized_pnl`` and ``market_value`` (so equity and exposure); ``last_price``, the day
figures and ``prev_close`` stay on the last price, the one settlement price per instrument.
"""

from __future__ import annotations

import polars as pl

from pm_polars.engine.plans import run

MARK_STATE_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "tick_price": pl.Float64(),
    "tick_ts": pl.Int64(),
    "fill_price": pl.Float64(),
    "fill_ts": pl.Int64(),
    "roll_price": pl.Float64(),  # the mark at the last day roll (``prev_close``); null before
    "tick_bid": pl.Float64(),  # the winning tick's bid, per unit; null if it had none
    "tick_ask": pl.Float64(),  # the winning tick's ask, per unit; null if it had none
}
QUOTE = ("bid", "ask")  # tick columns carried with the winning tick's price

mark_expr = pl.coalesce("tick_price", "fill_price")


def valuation(mode: str, quantity: pl.Expr, mark: pl.Expr, bid: pl.Expr,
              ask: pl.Expr) -> pl.Expr:
    """The per-unit price a position of signed ``quantity`` is valued at: ``mark`` in mode
    ``"last"``; in ``"bid_ask"`` the bid for a long, the ask for a short, ``mark`` when that
    side is null or the position is flat."""
    if mode == "last":
        return mark
    return (pl.when(quantity > 0).then(pl.coalesce(bid, mark))
            .when(quantity < 0).then(pl.coalesce(ask, mark))
            .otherwise(mark))


def valuation_of(mode: str, quantity: float, mark: float | None, bid: float | None,
                 ask: float | None) -> float | None:
    """:func:`valuation` for one position (the publish path renders rows in Python)."""
    if mode == "last" or quantity == 0:
        return mark
    side = bid if quantity > 0 else ask
    return mark if side is None else side


class MarkMismatch(ValueError):
    """Stored state was published under another ``mark`` than the one configured."""


def check_mark(stored: str | None, configured: str, where: str) -> None:
    """Raise :class:`MarkMismatch` unless ``stored`` (the mark a state was published under;
    ``None``: written before the setting existed, i.e. ``"last"``) is ``configured``: its
    published documents and Overall contributions were valued under it."""
    was = stored or "last"
    if was != configured:
        raise MarkMismatch(
            f"{where} was published with --mark {was} but --mark is {configured}; restart "
            f"with --mark {was}, or replay the fills into a fresh key prefix to republish")


def latest_by_ts(
    events: pl.DataFrame, price: str, prior_ts: pl.DataFrame | pl.LazyFrame,
    extra: tuple[str, ...] = (),
) -> pl.DataFrame:
    """The winning event per instrument within one batch.

    ``events`` has ``instrument_token``, ``seq``, ``ts`` and the ``price`` column;
    ``prior_ts`` has ``instrument_token`` and ``prior_ts`` (the state's ts, may be null); only
    read when an event has no ``ts`` (a LazyFrame costs nothing otherwise).
    Returns ``instrument_token, price, eff_ts`` where ``eff_ts`` is the winner's effective
    time: its own ``ts``, or for a ts-less event the newest ``ts`` seen before it; then the
    winner's ``extra`` columns (the same row's: a tick's ``bid``/``ask``).
    """
    return run(_latest_plan(events, price, prior_ts, extra))


def _latest_plan(
    events: pl.DataFrame, price: str, prior_ts: pl.DataFrame | pl.LazyFrame,
    extra: tuple[str, ...] = (),
) -> pl.LazyFrame:
    """:func:`latest_by_ts` as a plan (the fast path not collected: ``merge_marks`` joins
    it into its own plan)."""
    cols = [price, *extra]
    ts = pl.col("ts")
    if events.get_column("ts").null_count() == 0:
        # Fast path: every event has a time, so the winner is the last arrival among the
        # rows with the greatest ts (rows are in arrival order; reverse + arg_max = last max).
        return events.lazy().group_by("instrument_token", maintain_order=True).agg(
            pl.col(price).reverse().get(ts.reverse().arg_max()),
            ts.max().alias("eff_ts"),
            *[pl.col(c).reverse().get(ts.reverse().arg_max()) for c in extra],
        )
    return (
        events.select("instrument_token", "seq", "ts", *cols)
        .sort("seq")
        .join(prior_ts.collect() if isinstance(prior_ts, pl.LazyFrame) else prior_ts,
              on="instrument_token", how="left", maintain_order="left")
        .with_columns(
            # "the newest ts seen so far": in this batch before it, or in the state
            pl.coalesce(ts, pl.max_horizontal(
                ts.cum_max().forward_fill().over("instrument_token"), "prior_ts"))
            .alias("eff_ts")
        )
        .sort(["instrument_token", "eff_ts", "seq"], nulls_last=False)
        .group_by("instrument_token", maintain_order=True)
        .agg(pl.col(price).last(), pl.col("eff_ts").last(), *[pl.col(c).last() for c in extra])
    ).lazy()


def merge_marks(
    marks: pl.DataFrame, events: pl.DataFrame, price: str, kind: str
) -> tuple[pl.DataFrame, pl.Series]:
    """Fold a batch of ticks (``kind="tick"``) or fills (``kind="fill"``) into ``marks``.

    ``price`` names the event column holding the per-unit price (``last_price`` for ticks,
    ``fill_price`` for fills). Returns the new mark state (rows of instruments seen before
    keep their order, new instruments follow) and the instrument tokens whose stored
    ``{kind}_price`` changed.
    """
    price_col, ts_col = f"{kind}_price", f"{kind}_ts"
    if events.height == 0:
        return marks, pl.Series("instrument_token", [], pl.Int64)
    prior = marks.lazy().select("instrument_token", pl.col(ts_col).alias("prior_ts"))
    quote = tuple(c for c in QUOTE if kind == "tick" and c in events.columns)
    if quote and all(events.get_column(c).null_count() == events.height
                     and marks.get_column(f"tick_{c}").null_count() == marks.height
                     for c in quote):
        quote = ()  # no quote anywhere (a feed without bid/ask): nothing to carry
    best = _latest_plan(events, price, prior, quote).rename(
        {price: "_price", **{c: f"_{c}" for c in quote}})
    new, eff = pl.col("_price"), pl.col("eff_ts")
    old_price, old_ts = pl.col(price_col), pl.col(ts_col)
    wins = new.is_not_null() & (
        old_price.is_null() | old_ts.is_null() | eff.is_null() | (eff >= old_ts)
    )
    # a quote side changed: null and a number differ, two nulls do not
    moved = [pl.col(f"_{c}").ne_missing(pl.col(f"tick_{c}")) for c in quote]
    merged = run(
        marks.lazy()
        .join(best, on="instrument_token", how="full", coalesce=True,
              maintain_order="left")
        .with_columns(wins.alias("_wins"))
        .with_columns(
            (pl.col("_wins") & pl.any_horizontal(old_price.is_null(), old_price != new,
                                                 *moved)).alias("_changed"),
            pl.when("_wins").then(new).otherwise(old_price).alias(price_col),
            pl.when("_wins").then(pl.coalesce(eff, old_ts)).otherwise(old_ts).alias(ts_col),
            *[pl.when("_wins").then(pl.col(f"_{c}")).otherwise(pl.col(f"tick_{c}"))
              .alias(f"tick_{c}") for c in quote],
        )
    )
    changed = merged.get_column("instrument_token").filter(merged.get_column("_changed"))
    return merged[list(MARK_STATE_SCHEMA)], changed  # column selection: no query
