"""Columnar validation: judge every decoded row at once and split fills / ticks / rejects.

Input: ``RAW_SCHEMA`` rows (see ``rawschema``) plus ``seq``, ``raw`` (the record's bytes),
``kafka_ts_ms`` and the provenance columns. ``reason_expr`` yields the *first* failing rule of
the record's event type (``null`` = valid), in this order:

decode problems (``parse_error``) -> ``event_type`` -> fills: ``source``, ``original_signal``
(``strategy_id``, ``instrument_token``, ``signal_type``), ``quantity``, ``fill_price``, ``fee``;
ticks: ``instrument_token``, ``last_price`` -> ``ts``.

Rules: strings non-empty (not blank); ``signal_type`` BUY/SELL in any ASCII letter case
(output upper case); ``quantity`` > 0; prices finite and > 0; ``fee`` finite, missing = 0.0 (negative =
rebate); ``fill_id`` "" is treated as absent (no dedupe key). ``ts`` see ``timestamps``.

Cost: Polars 2.1 plans one large expression in superlinear time and a select costs tens of
microseconds however small the frame, so the common cases avoid both: ``quickcheck`` proves a
clean batch valid column by column (or rows valid one by one), ``reason_expr`` runs only on
the rows it could not prove, and the output frames are built from Series operations.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.quickcheck import all_valid, surely_valid
from pm_polars.events.schema import (
    FILL_EVENT,
    FILL_SCHEMA,
    PROVENANCE_SCHEMA,
    REJECT_SCHEMA,
    SIDES,
    TICK_EVENT,
    TICK_SCHEMA,
    empty,
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


@cache
def _rules() -> list[_Rule]:
    """Every rule, in reason order: (condition that fails the record, its reason)."""
    et = pl.col("event_type")
    is_fill, is_tick = et == FILL_EVENT, et == TICK_EVENT
    return [
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


@cache
def reason_expr() -> pl.Expr:
    """First failing rule per row as a String expression; null for a valid record."""
    # each rule is null unless it fails; the first non-null one is the reason
    return pl.coalesce([pl.when(cond.fill_null(False)).then(msg) for cond, msg in _rules()])


_FILL_COLUMNS = ("seq", "source", "strategy_id", "quantity", "fill_price", "ts")


def fill_frame(get: Callable[[str], pl.Series], provenance: list[pl.Series]) -> pl.DataFrame:
    """``FILL_SCHEMA`` frame of valid fill rows; ``get`` gives their input columns by name
    (``FILL_INPUTS``)."""
    signal_type, quantity = get("signal_type"), get("quantity")
    buy = signal_type == "BUY"
    if (buy | (signal_type == "SELL")).all():  # already upper case (never null here)
        side = signal_type
    else:
        side = pl.Series("side", pc.utf8_upper(signal_type.to_arrow()))  # BUY or SELL
        buy = side == "BUY"
    fee, fill_id = get("fee"), get("fill_id")
    if fee.null_count():
        fee = fee.fill_null(0.0)
    if (fill_id == "").any():  # no usable dedupe key
        fill_id = fill_id.zip_with(fill_id != "", pl.Series([None], dtype=pl.String))
    columns = {name: get(name) for name in _FILL_COLUMNS} | {
        "portfolio_id": get("source") + "_" + get("strategy_id"),
        "instrument_token": get("sig_token"),
        "side": side,
        "signed_qty": quantity.zip_with(buy, quantity * -1),  # (Series negation is a query)
        "fee": fee,
        "fill_id": fill_id,
    }
    return _frame(columns, provenance, FILL_SCHEMA)


_ARROW_NULLS = {"topic": pa.large_string(), "partition": pa.int32(), "offset": pa.int64()}
_EMPTY = {id(schema): empty(schema) for schema in (FILL_SCHEMA, TICK_SCHEMA, REJECT_SCHEMA)}


def _frame(
    columns: dict[str, pl.Series], provenance: list[pl.Series], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """``schema``'s columns in order, from ``columns`` and ``provenance`` (missing
    provenance: null), each renamed and cast to its type (a no-op when it has it)."""
    height = len(columns["seq"])
    columns = {**columns, **{s.name: s for s in provenance}}  # the caller's dict untouched
    out = []
    for name, dtype in schema.items():
        column = columns.get(name)
        if column is None:
            column = pl.Series(name, pa.nulls(height, _ARROW_NULLS[name]))
        column = column if column.dtype == dtype else column.cast(dtype)
        out.append(column if column.name == name else column.alias(name))
    return pl.DataFrame(out)


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return _EMPTY[id(schema)].clone()


def _rows(judged: pl.DataFrame, mask: pl.Series, names: list[str]) -> pl.DataFrame:
    """Columns ``names`` of the rows where ``mask`` is true."""
    columns = [judged.get_column(name) for name in names]
    if mask.sum() != len(mask):
        columns = [column.filter(mask) for column in columns]
    return pl.DataFrame(columns)


def _judge(judged: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """``failed`` per row and the reasons of the failed rows (in row order)."""
    failed = surely_valid(judged).not_()
    if not failed.any():
        return failed, pl.Series("reason", [], dtype=pl.String)
    unsure = failed.arg_true()
    reason = judged[unsure].select(reason_expr().alias("reason")).to_series()
    valid_after_all = reason.is_null()
    if valid_after_all.any():
        failed = failed.scatter(unsure.filter(valid_after_all), False)
    return failed, reason.filter(valid_after_all.not_())


FILL_INPUTS = [*_FILL_COLUMNS, "signal_type", "fee", "fill_id", "sig_token", "sig_present"]
TICK_INPUTS = ["seq", "instrument_token", "last_price", "ts"]


def _parts(
    judged: pl.DataFrame, fill_rows: pl.Series, tick_rows: pl.Series, present: list[str]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The fill rows and the tick rows (with the columns their outputs need), or None."""
    fills = ticks = None
    if fill_rows.any():
        fills = _rows(judged, fill_rows, [*FILL_INPUTS, *present])
    if tick_rows.any():
        ticks = _rows(judged, tick_rows, [*TICK_INPUTS, *present])
    return fills, ticks


def _outputs(
    fills: pl.DataFrame | None, ticks: pl.DataFrame | None, present: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    fill_out, tick_out = _empty(FILL_SCHEMA), _empty(TICK_SCHEMA)
    if fills is not None:
        fill_out = fill_frame(fills.get_column, [fills.get_column(name) for name in present])
    if ticks is not None:
        columns = dict(zip(ticks.columns, ticks.get_columns(), strict=True))
        tick_out = _frame(columns, [], TICK_SCHEMA)
    return fill_out, tick_out


def split(rows: pl.DataFrame, raw: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(fills, ticks, rejects) in ``seq`` order, conforming to the schema contracts.

    ``rows``: ``RAW_SCHEMA`` columns, ``seq``, and when known the provenance columns and
    ``kafka_ts_ms``; ``raw``: each row's message bytes (kept for the rejects).

    A clean batch (every fill and every tick surely valid, checked column by column) costs
    no per-row judgement; otherwise rows are judged one by one (``_judge``).
    """
    fallback = "kafka_ts_ms" if "kafka_ts_ms" in rows.columns else None
    judged = normalize_ts(
        rows, integer="ts_int", number="ts_num", text="ts_str", fallback_ms=fallback
    )
    present = [name for name in PROVENANCE_SCHEMA if name in rows.columns]
    event_type = judged.get_column("event_type")
    is_fill, is_tick = event_type == FILL_EVENT, event_type == TICK_EVENT
    if (is_fill | is_tick).sum() == judged.height and all(
        judged.get_column(name).null_count() == judged.height
        for name in ("parse_error", "ts_error")
    ):
        fills, ticks = _parts(judged, is_fill, is_tick, present)
        if all_valid(fills, ticks):
            return *_outputs(fills, ticks, present), _empty(REJECT_SCHEMA)
    failed, reason = _judge(judged)
    valid = failed.not_()
    fills, ticks = _parts(judged, valid & is_fill, valid & is_tick, present)
    fill_out, tick_out = _outputs(fills, ticks, present)
    if reason.is_empty():
        return fill_out, tick_out, _empty(REJECT_SCHEMA)
    part = _rows(judged, failed, ["seq", *present])
    columns = dict(zip(part.columns, part.get_columns(), strict=True))
    columns |= {"raw": raw.filter(failed), "reason": reason}
    return fill_out, tick_out, _frame(columns, [], REJECT_SCHEMA)
