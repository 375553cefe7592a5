"""Events the engine refuses after decode, as reject rows, and the position bound.

Decode judges each record alone (``pm_polars.events.rules``); some rules need the engine's
state: how far event time may jump (``timebound``), the dedupe window and conflicting
re-sends (``dedupe``), the bound on a position's size and the sign of prices (here). Each refused event
becomes a ``REJECT_SCHEMA`` row with its reason; ``raw`` is the JSON of the decoded event
(the daemon puts the Kafka record's own bytes back, by ``seq``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl

from pm_polars.events.schema import FILL_EVENT, REJECT_SCHEMA, TICK_EVENT, empty

# |position| in units (in atoms with ``quantity_decimals`` > 0): float64 holds every integer
# up to 2**53 exactly, int64 never wraps
MAX_POSITION = 2**53
MAX_TOTAL = 2**62  # units bought (or sold) over a position's life: int64 never wraps
_SLACK = 2**20  # above float64's rounding of sums near 2**62 (1024)
_KEYS = ["portfolio_id", "instrument_token"]
_PROVENANCE = ["topic", "partition", "offset"]
# the batch's usual "nothing refused": built once (a frame is immutable; building an empty
# frame costs a query per call, several per batch)
NO_REJECTS = empty(REJECT_SCHEMA)


def _ms(ts: int | None) -> int | Decimal | None:
    """ns -> epoch ms, exact (a fraction as a decimal)."""
    if ts is None:
        return None
    return ts // 10**6 if ts % 10**6 == 0 else Decimal(ts) / 10**6


def _units(atoms: int | None, scale: int) -> int | float | None:
    """A fill's quantity as the wire wrote it: atoms (``1/scale`` units) as a JSON number."""
    if atoms is None or scale == 1:
        return atoms
    exact = Decimal(atoms).scaleb(-(len(str(scale)) - 1))
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def wire_json(events: pl.DataFrame, scale: int = 1) -> pl.Series:
    """Each decoded fill or tick row written back as its wire JSON (``ts`` in epoch ms;
    ``scale``: atoms per unit of ``quantity``)."""
    out = []
    fill = "side" in events.columns
    for r in events.iter_rows(named=True):
        if fill:
            event: dict[str, Any] = {
                "event_type": FILL_EVENT, "source": r["source"], "fill_id": r["fill_id"],
                "ts": _ms(r["ts"]), "quantity": _units(r["quantity"], scale), "fill_price": r["fill_price"],
                "fee": r["fee"], "original_signal": {
                    "strategy_id": r["strategy_id"], "instrument_token": r["instrument_token"],
                    "signal_type": r["side"]}}
            if r.get("fee_currency") is not None:
                event["fee_currency"] = r["fee_currency"]
        else:
            event = {"event_type": TICK_EVENT, "instrument_token": r["instrument_token"],
                     "last_price": r["last_price"], "ts": _ms(r["ts"])}
            event |= {k: r[k] for k in ("bid", "ask") if r.get(k) is not None}
        out.append(json.dumps(event, default=str).encode())
    return pl.Series("raw", out, dtype=pl.Binary)


def rejects_of(events: pl.DataFrame, reason: pl.Expr, scale: int = 1) -> pl.DataFrame:
    """``REJECT_SCHEMA`` rows for ``events`` (fill or tick rows), each with ``reason``;
    ``raw`` is the event's wire JSON (the engine never saw the record's own bytes)."""
    if events.height == 0:
        return NO_REJECTS
    raw = wire_json(events, scale)
    return events.with_columns(raw, reason.cast(pl.String).alias("reason")).select(
        [pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items()]
    )


def merge_rejects(*frames: pl.DataFrame) -> pl.DataFrame:
    """Reject frames as one, in ``seq`` order."""
    parts = [f for f in frames if f.height]
    if not parts:
        return frames[0]
    return parts[0] if len(parts) == 1 else pl.concat(parts).sort("seq")


def position_bound(positions: pl.DataFrame, fills: pl.DataFrame, scale: int = 1
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(fills kept, rejects)``: a fill that would take its position beyond
    ``MAX_POSITION`` units either way, or its bought or sold total beyond ``MAX_TOTAL``
    (int64 sums that a long life of flips could wrap), is refused (later fills of the
    position apply without it, in arrival order). One check of the batch's total quantity
    when no position can get near a bound (every real batch). ``scale``: atoms per unit
    (the bounds are in atoms; the reason gives units)."""
    if fills.height == 0:
        return fills, NO_REJECTS
    total = float(fills.get_column("quantity").cast(pl.Float64).sum())
    held = traded = 0.0
    if positions.height:
        held = float(positions.get_column("quantity").abs().max() or 0)  # type: ignore[arg-type]
        traded = max(float(positions.get_column(c).max() or 0)  # type: ignore[arg-type]
                     for c in ("buy_quantity", "sell_quantity"))  # Series: no query
    # float64 sums: a margin well above their rounding (the walk below is exact)
    if held + total <= MAX_POSITION - _SLACK and traded + total <= MAX_TOTAL - _SLACK:
        return fills, NO_REJECTS
    # only the positions whose fills could pass a bound are walked fill by fill, exactly
    near = fills.group_by(_KEYS).agg(pl.col("quantity").cast(pl.Float64).sum().alias("_t"))
    start = positions.select(*_KEYS, "quantity", "buy_quantity", "sell_quantity")
    near = near.join(start, on=_KEYS, how="left").filter(
        (pl.col("quantity").abs().fill_null(0) + pl.col("_t") > MAX_POSITION - _SLACK)
        | (pl.max_horizontal("buy_quantity", "sell_quantity").fill_null(0) + pl.col("_t")
           > MAX_TOTAL - _SLACK))
    if near.height == 0:
        return fills, NO_REJECTS
    now: dict[tuple[str, int], tuple[int, int, int]] = {
        (pid, token): (q or 0, b or 0, s or 0)
        for pid, token, q, b, s in near.select(
            *_KEYS, "quantity", "buy_quantity", "sell_quantity").iter_rows()}
    suspects = fills.join(near.select(_KEYS), on=_KEYS, how="semi", maintain_order="left")
    gone: list[int] = []
    for seq, pid, token, signed in suspects.select("seq", *_KEYS, "signed_qty").iter_rows():
        q, bought, sold = now[(pid, token)]
        q += signed
        bought += max(signed, 0)
        sold += max(-signed, 0)
        if abs(q) > MAX_POSITION or bought > MAX_TOTAL or sold > MAX_TOTAL:
            gone.append(seq)
        else:
            now[(pid, token)] = (q, bought, sold)
    if not gone:
        return fills, NO_REJECTS
    refused = fills.filter(pl.col("seq").is_in(gone))
    fills = fills.filter(~pl.col("seq").is_in(gone))
    limits = [pl.lit(b if scale == 1 else f"{b / scale:.8g}") for b in (MAX_POSITION, MAX_TOTAL)]
    got = pl.col("quantity") if scale == 1 else pl.col("quantity") / float(scale)
    reason = pl.format(
        "quantity: the position of {} in {} would pass {} units (the exact-integer limit) "
        "or its bought/sold total {}, got {}", "portfolio_id", "instrument_token",
        *limits, got
    )
    return fills, rejects_of(refused, reason, scale)


_PRICES = {"fills": ("fill_price",), "ticks": ("last_price", "bid", "ask")}


def _all_positive(frame: pl.DataFrame, columns: tuple[str, ...]) -> bool:
    lows = [frame.get_column(c).min() for c in columns if c in frame.columns]
    return all(low is None or float(low) > 0 for low in lows)  # type: ignore[arg-type]


def price_sign(instruments: pl.DataFrame, fills: pl.DataFrame, ticks: pl.DataFrame,
               scale: int = 1) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``(fills kept, ticks kept, rejects)``: an event with a price <= 0 (``fill_price``;
    a tick's ``last_price``, ``bid`` or ``ask``) is refused unless its instrument has
    ``allow_negative_price`` (``engine.instruments``), with the decoder's reason
    (``fill_price: must be > 0, got -1.0``). The decoder refuses such prices itself unless
    some instrument allows them (``decode_*(..., positive_prices=False)``), so in the usual
    case this is one ``min`` per price column. ``scale``: atoms per unit of ``quantity``."""
    if _all_positive(fills, _PRICES["fills"]) and _all_positive(ticks, _PRICES["ticks"]):
        return fills, ticks, NO_REJECTS
    allow = "allow_negative_price"
    allowed = (instruments.select("instrument_token", pl.col(allow).alias("_allow"))
               if allow in instruments.columns
               else pl.DataFrame(schema={"instrument_token": pl.Int64, "_allow": pl.Boolean}))
    out, refused = [], []
    for name, frame in (("fills", fills), ("ticks", ticks)):
        columns = [c for c in _PRICES[name] if c in frame.columns]
        if _all_positive(frame, tuple(columns)):
            out.append(frame)
            continue
        reason = pl.coalesce([
            pl.when(pl.col(c) <= 0).then(
                pl.format(f"{c}: must be > 0, got {{}}", pl.col(c).cast(pl.String)
                          .str.to_lowercase()))
            for c in columns])
        judged = frame.join(allowed, on="instrument_token", how="left",
                            maintain_order="left").with_columns(
            pl.when(pl.col("_allow").fill_null(False)).then(None).otherwise(reason)
            .alias("_reason"))
        bad = judged.get_column("_reason").is_not_null()
        out.append(frame.filter(~bad))
        refused.append(rejects_of(judged.filter(bad).drop("_allow"), pl.col("_reason"),
                                  scale if name == "fills" else 1))
    return out[0], out[1], merge_rejects(NO_REJECTS, *refused)
