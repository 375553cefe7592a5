"""Columnar validation: judge every decoded row at once and split fills / ticks / rejects.

Input: ``RAW_SCHEMA`` rows (see ``rawschema``) plus ``seq``, ``raw`` (the record's bytes),
``kafka_ts_ms`` and the provenance columns. One expression over all rows yields ``reason``,
the *first* failing rule of the record's event type (``null`` = valid), in this order:

decode problems (``parse_error``) -> ``event_type`` -> fills: ``source``, ``original_signal``
(``strategy_id``, ``instrument_token``, ``signal_type``), ``quantity``, ``fill_price``, ``fee``;
ticks: ``instrument_token``, ``last_price`` -> ``ts``.

Rules: strings non-empty (not blank); ``signal_type`` BUY/SELL in any ASCII letter case
(output upper case); ``quantity`` > 0; prices finite and > 0; ``fee`` finite, missing = 0.0 (negative =
rebate); ``fill_id`` "" is treated as absent (no dedupe key). ``ts`` see ``timestamps``.
"""

from __future__ import annotations

import polars as pl

from pm_polars.events.schema import (
    FILL_EVENT,
    FILL_SCHEMA,
    REJECT_SCHEMA,
    SIDES,
    TICK_EVENT,
    TICK_SCHEMA,
    conform,
)
from pm_polars.events.timestamps import normalize_ts

_Rule = tuple[pl.Expr, pl.Expr]


def _msg(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)


def _shown(col: str) -> pl.Expr:
    """A value as it appears in a reason: numbers as text (``nan``, ``inf``), strings quoted."""
    c = pl.col(col)
    if col in ("fill_price", "fee", "last_price"):
        return c.cast(pl.String).str.to_lowercase()
    if col == "quantity":
        return c.cast(pl.String)
    return pl.format("'{}'", c.str.slice(0, 80))


def _required(col: str, name: str) -> _Rule:
    return pl.col(col).is_null(), _msg(f"{name}: is required (missing or null)")


def _non_blank(col: str, name: str) -> list[_Rule]:
    blank = pl.col(col).str.strip_chars().str.len_bytes() == 0
    return [_required(col, name), (blank, _msg(f"{name}: must be a non-empty string"))]


def _price(col: str) -> list[_Rule]:
    c = pl.col(col)
    return [
        _required(col, col),
        (~c.is_finite(), pl.format(f"{col}: must be finite, got {{}}", _shown(col))),
        (c <= 0, pl.format(f"{col}: must be > 0, got {{}}", _shown(col))),
    ]


def _fill_rules() -> list[_Rule]:
    side = pl.col("signal_type").str.to_uppercase()
    return [
        *_non_blank("source", "source"),
        (
            ~pl.col("sig_present").fill_null(False),
            _msg("original_signal: is required (missing or null)"),
        ),
        *_non_blank("strategy_id", "original_signal.strategy_id"),
        _required("sig_token", "original_signal.instrument_token"),
        _required("signal_type", "original_signal.signal_type"),
        (
            ~(side.is_in(list(SIDES)) & pl.col("signal_type").str.contains("^[A-Za-z]+$")),
            pl.format(
                "original_signal.signal_type: must be BUY or SELL, got {}", _shown("signal_type")
            ),
        ),
        _required("quantity", "quantity"),
        (pl.col("quantity") <= 0, pl.format("quantity: must be > 0, got {}", _shown("quantity"))),
        *_price("fill_price"),
        (~pl.col("fee").is_finite(), pl.format("fee: must be finite, got {}", _shown("fee"))),
    ]


def _tick_rules() -> list[_Rule]:
    return [_required("instrument_token", "instrument_token"), *_price("last_price")]


def reason_expr() -> pl.Expr:
    """First failing rule per row as a String expression; null for a valid record."""
    et = pl.col("event_type")
    is_fill, is_tick = et == FILL_EVENT, et == TICK_EVENT
    rules: list[_Rule] = [
        (pl.col("parse_error").is_not_null(), pl.col("parse_error")),
        _required("event_type", "event_type"),
        (
            ~et.is_in([FILL_EVENT, TICK_EVENT]),
            pl.format(
                f"event_type: must be '{FILL_EVENT}' or '{TICK_EVENT}', got {{}}",
                _shown("event_type"),
            ),
        ),
        *[(is_fill & cond, msg) for cond, msg in _fill_rules()],
        *[(is_tick & cond, msg) for cond, msg in _tick_rules()],
        (pl.col("ts_error").is_not_null(), pl.col("ts_error")),
    ]
    # each rule is null unless it fails; the first non-null one is the reason
    return pl.coalesce([pl.when(cond.fill_null(False)).then(msg) for cond, msg in rules])


def split(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(fills, ticks, rejects) in ``seq`` order, conforming to the schema contracts."""
    judged = normalize_ts(
        rows, integer="ts_int", number="ts_num", text="ts_str", fallback_ms="kafka_ts_ms"
    )
    judged = judged.with_columns(reason_expr().alias("reason"))
    valid = pl.col("reason").is_null()
    side = pl.col("signal_type").str.to_uppercase()
    fills = judged.filter(valid & (pl.col("event_type") == FILL_EVENT)).with_columns(
        pl.concat_str([pl.col("source"), pl.lit("_"), pl.col("strategy_id")]).alias("portfolio_id"),
        pl.col("sig_token").alias("instrument_token"),
        side.alias("side"),
        pl.when(side == "BUY")
        .then(pl.col("quantity"))
        .otherwise(-pl.col("quantity"))
        .alias("signed_qty"),
        pl.col("fee").fill_null(0.0),
        pl.when(pl.col("fill_id") != "").then(pl.col("fill_id")).alias("fill_id"),
    )
    ticks = judged.filter(valid & (pl.col("event_type") == TICK_EVENT))
    rejects = judged.filter(~valid)
    return conform(fills, FILL_SCHEMA), conform(ticks, TICK_SCHEMA), conform(rejects, REJECT_SCHEMA)
