"""The validation rules, one table, and the split into fills / ticks / rejects.

Input: ``schema.RAW_SCHEMA`` rows (every input form is brought to them) plus ``seq``, the
provenance columns and ``kafka_ts_ms`` when known. ``RULES`` lists every rule in reason
order; each is ``(event type or None, condition that fails the record, reason)``. From that
one table derive both the whole-column check (``all_valid``: does any row fail any rule? one
pass, no per-row verdict for a clean batch) and the per-row first reason (``reason_expr``),
so the two can never disagree. Order:

reading problems (``parse_error``) -> ``event_type`` -> the fields of the record's event
type in ``schema.FIELDS`` order: the ``required`` rules come from the schema, the value
rules from ``VALUE_RULES`` -> ``ts`` (see ``timestamps``).

Value rules: strings non-empty (not blank); ``signal_type`` BUY/SELL in any ASCII letter
case (output upper case); ``quantity`` > 0; prices finite and > 0; ``fee`` finite, missing =
0.0 (negative = rebate); ``fill_id`` "" is treated as absent (no dedupe key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.schema import (
    EVENT_TYPE,
    EVENT_TYPES,
    FIELDS,
    FILL_EVENT,
    FILL_SCHEMA,
    PROVENANCE_SCHEMA,
    REJECT_SCHEMA,
    SIDES,
    SIGNAL,
    TICK_EVENT,
    TICK_SCHEMA,
    Field,
    empty,
)
from pm_polars.events.timestamps import normalize_ts


@dataclass(frozen=True)
class Rule:
    """Records of ``event`` (``None``: every record) where ``fails`` is true are rejected
    with ``reason`` (a String expression naming the field and quoting the value)."""

    event: str | None
    fails: pl.Expr
    reason: pl.Expr


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


def _non_blank(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    blank = pl.col(f.column).str.strip_chars().str.len_bytes() == 0
    return [(blank, _msg(f"{f.path}: must be a non-empty string"))]


def _side(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    c = pl.col(f.column)
    valid = c.str.to_uppercase().is_in(list(SIDES)) & c.str.contains("^[A-Za-z]+$")
    return [(~valid, pl.format(f"{f.path}: must be BUY or SELL, got {{}}", _shown(f.column)))]


def _positive(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    return [
        (pl.col(f.column) <= 0, pl.format(f"{f.path}: must be > 0, got {{}}", _shown(f.column)))
    ]


def _finite(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    c = pl.col(f.column)
    return [(~c.is_finite(), pl.format(f"{f.path}: must be finite, got {{}}", _shown(f.column)))]


def _price(f: Field) -> list[tuple[pl.Expr, pl.Expr]]:
    return _finite(f) + _positive(f)


# value rules per RAW column, checked after the field's ``required`` rule
VALUE_RULES: dict[str, Callable[[Field], list[tuple[pl.Expr, pl.Expr]]]] = {
    "source": _non_blank,
    "strategy_id": _non_blank,
    "signal_type": _side,
    "quantity": _positive,
    "fill_price": _price,
    "fee": _finite,
    "last_price": _price,
}


def _required(f: Field) -> tuple[pl.Expr, pl.Expr]:
    return pl.col(f.column).is_null(), _msg(f"{f.path}: is required (missing or null)")


def _field_rules(event: str) -> list[Rule]:
    rules: list[Rule] = []
    fields = FIELDS[event]
    for i, f in enumerate(fields):
        if f.kind == "ts":
            continue  # judged by ``timestamps``, last
        if f.in_signal and not any(g.in_signal for g in fields[:i]):
            missing = ~pl.col("sig_present").fill_null(False)
            rules.append(Rule(event, missing, _msg(f"{SIGNAL}: is required (missing or null)")))
        checks = [_required(f)] if f.required else []
        value_rules = VALUE_RULES.get(f.column)
        checks += [] if value_rules is None else value_rules(f)
        rules += [Rule(event, fails, reason) for fails, reason in checks]
    return rules


@cache
def rules() -> tuple[Rule, ...]:
    """Every rule, in reason order."""
    et = pl.col(EVENT_TYPE.column)
    known = f"event_type: must be '{FILL_EVENT}' or '{TICK_EVENT}', got {{}}"
    return (
        Rule(None, pl.col("parse_error").is_not_null(), pl.col("parse_error")),
        Rule(None, *_required(EVENT_TYPE)),
        Rule(None, ~et.is_in(list(EVENT_TYPES)), pl.format(known, _shown("event_type"))),
        *[rule for event in EVENT_TYPES for rule in _field_rules(event)],
        Rule(None, pl.col("ts_error").is_not_null(), pl.col("ts_error")),
    )


def _failing(rule: Rule) -> pl.Expr:
    cond = (
        rule.fails if rule.event is None else (pl.col(EVENT_TYPE.column) == rule.event) & rule.fails
    )
    return cond.fill_null(False)


@cache
def _any_failure() -> pl.Expr:
    return pl.any_horizontal([_failing(rule) for rule in rules()]).any()


@cache
def reason_expr() -> pl.Expr:
    """First failing rule per row as a String expression; null for a valid record."""
    return pl.coalesce([pl.when(_failing(rule)).then(rule.reason) for rule in rules()])


def all_valid(judged: pl.DataFrame) -> bool:
    """No row of ``judged`` fails any rule: one pass over whole columns."""
    return not judged.select(_any_failure()).item()


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


def split(
    rows: pl.DataFrame, raw_of: Callable[[pl.Series], pl.Series]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(fills, ticks, rejects) in ``seq`` order, conforming to the schema contracts.

    ``rows``: ``RAW_SCHEMA`` columns, ``seq``, and when known the provenance columns and
    ``kafka_ts_ms``; ``raw_of``: the records (Binary) of the rows a mask selects, for the
    rejects. A clean batch
    costs one whole-column check (``all_valid``); otherwise each row gets its first reason.
    """
    fallback = "kafka_ts_ms" if "kafka_ts_ms" in rows.columns else None
    judged = normalize_ts(
        rows, integer="ts_int", number="ts_num", text="ts_str", fallback_ms=fallback
    )
    present = [name for name in PROVENANCE_SCHEMA if name in rows.columns]
    event_type = judged.get_column(EVENT_TYPE.column)
    is_fill, is_tick = event_type == FILL_EVENT, event_type == TICK_EVENT
    if all_valid(judged):
        fills, ticks = _parts(judged, is_fill, is_tick, present)
        return *_outputs(fills, ticks, present), _empty(REJECT_SCHEMA)
    reason = judged.select(reason_expr().alias("reason")).to_series()
    failed = reason.is_not_null()
    valid = failed.not_()
    fills, ticks = _parts(judged, valid & is_fill, valid & is_tick, present)
    fill_out, tick_out = _outputs(fills, ticks, present)
    part = _rows(judged, failed, ["seq", *present])
    columns = dict(zip(part.columns, part.get_columns(), strict=True))
    columns |= {"raw": raw_of(failed).cast(pl.Binary), "reason": reason.filter(failed)}
    return fill_out, tick_out, _frame(columns, [], REJECT_SCHEMA)
