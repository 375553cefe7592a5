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

Value rules: strings non-empty (not blank); ``source`` of ``SOURCE_CHARS``; ``strategy_id``
not ``Overall`` nor ending ``_Overall``; instrument tokens > 0; ``signal_type`` BUY/SELL in any ASCII letter
case (output upper case); ``quantity`` 1 to ``MAX_QUANTITY``; prices finite, > 0 and at most ``MAX_PRICE``;
``fee`` finite and within ``MAX_FEE`` either way, missing = 0.0 (negative = rebate); ``fee_currency`` absent or ``quote``/``base``; ``fill_id`` "" is treated as absent (no dedupe key).
A tick's optional ``bid``/``ask`` obey the price rules when present (a crossed quote,
``bid > ask``, is accepted: a real, if rare, market state).

Non-positive prices (``positive_prices``, every function takes it, default True): with
True a price <= 0 is refused here, as ever. With False (some instrument has
``allow_negative_price``; the decoder cannot see instruments) the "> 0" rules are left out
and the engine step judges the sign per instrument (``engine.refusals.price_sign``, same
reason text); prices are then bounded by ``MAX_PRICE`` either way.

Fractional quantities (``quantity_decimals = d``, every function takes it, default 0): with
0 a quantity with a fraction is refused as "must be an integer" (as ever; the readers keep
it as ``quantity_num`` and the reason an integer read gives it, ``quantity_error``). With
``d > 0`` the quantity is judged as exact decimal text (``quantity_text``): at most ``d``
decimal places (more is refused, the reason names the limit), > 0, at most
``max_quantity(d)`` units; valid fills carry it as ``Int64`` atoms of ``10**-d`` units.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterator
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

_FEW = 64  # distinct values this few are checked in Python (``Check.value_ok``)


@dataclass(frozen=True)
class Check:
    """One kind of rule, in its two forms: ``fails`` per row (true = the record fails;
    null counts as passing), and ``all_pass`` over a whole column (true only if no row
    fails: it may be stricter than ``fails``, never looser, since a batch it does not pass
    is judged row by row)."""

    fails: Callable[[pl.Expr], pl.Expr]
    all_pass: Callable[[pl.Series], bool]
    # the check of one (non-null) string in Python, never looser than ``fails``: given, the
    # column's distinct values are judged, by it when they are few (Polars' fixed cost per
    # call exceeds a few Python comparisons), else by ``all_pass``
    value_ok: Callable[[str], bool] | None = None

    def passes(self, values: pl.Series) -> bool:
        """``all_pass`` of ``values`` (already distinct when ``value_ok`` is given)."""
        if self.value_ok is not None and len(values) <= _FEW:
            ok = self.value_ok
            return all(v is None or ok(v) for v in values.to_list())
        return self.all_pass(values)


def _all_non_blank(values: pl.Series) -> bool:
    """Arrow's whitespace holds every Unicode White_Space character (what ``\\s`` in the
    row form matches) and a few more: stricter, as ``all_pass`` may be."""
    arrow = values.to_arrow()
    shortest = pc.min(pc.binary_length(arrow)).as_py()
    return (shortest is None or shortest > 0) and not pc.any(pc.utf8_is_space(arrow)).as_py()


def _spellings(word: str) -> list[str]:
    """Every ASCII letter-case spelling of ``word`` (``"BUY"`` -> ``BUY``, ``BUy``, ...)."""
    spelled = [""]
    for ch in word:
        spelled = [s + c for s in spelled for c in (ch.lower(), ch.upper())]
    return spelled


def _one_of(values: list[str], common: tuple[str, ...] = ()) -> Check:
    """In ``values``; ``common``: the usual ones, compared first (cheaper than a hash set)."""

    def all_pass(s: pl.Series) -> bool:
        if common and functools.reduce(operator.or_, [s == v for v in common]).all():
            return True
        return bool(s.is_in(values).all())

    return Check(lambda c: ~c.is_in(values), all_pass)


def _low(s: pl.Series) -> float | None:
    low = s.min()
    return None if low is None else float(low)  # type: ignore[arg-type]


REQUIRED = Check(lambda c: c.is_null(), lambda s: s.null_count() == 0)
ABSENT = Check(lambda c: c.is_not_null(), lambda s: s.null_count() == len(s))
TRUE = Check(lambda c: ~c, lambda s: s.null_count() == 0 and bool(s.all()))
# Python's whitespace (``str.isspace``) holds every Unicode White_Space character (what
# ``\s`` matches in the row form) and U+001C-U+001F: stricter, as ``value_ok`` may be.
NON_BLANK = Check(lambda c: c.str.contains(r"^\s*$"), _all_non_blank,
                  lambda v: bool(v) and not v.isspace())
SIDE = _one_of([s for side in SIDES for s in _spellings(side)], SIDES)
KNOWN_EVENT = _one_of(list(EVENT_TYPES), EVENT_TYPES)
FEE_CURRENCY = _one_of(["quote", "base"])
POSITIVE = Check(lambda c: c <= 0, lambda s: (low := _low(s)) is None or low > 0)
# Bounds that keep every money figure finite and exact to the paisa in float64: a fill's
# notional is at most MAX_QUANTITY * MAX_PRICE * multiplier (1e24 x multiplier).
MAX_QUANTITY = 10**12  # units per fill
MAX_PRICE = 1e12  # per unit, account currency
MAX_FEE = 1e12  # per fill, either sign
MAX_QUANTITY_DECIMALS = 8  # decimal places of a fractional quantity, at most
QUANTITY_TEXT = "quantity_text"  # the quantity as exact decimal text (``quantity_decimals`` > 0)


def max_quantity(decimals: int) -> int:
    """Units per fill at ``decimals`` places: ``MAX_QUANTITY``, or fewer so that a fill is
    at most 10**13 atoms (a batch's running sums of 10**5 such fills stay in int64)."""
    return min(MAX_QUANTITY, 10 ** (13 - decimals)) if decimals else MAX_QUANTITY


def _at_most(bound: float) -> Check:
    def all_pass(s: pl.Series) -> bool:  # |x| <= bound for all: by min and max, no copy
        low = _low(s)
        if low is None:
            return True
        high = float(s.max())  # type: ignore[arg-type]
        return not (math.isnan(low) or math.isnan(high)) and max(-low, high) <= bound

    return Check(lambda c: c.abs() > bound, all_pass)

FINITE = Check(lambda c: ~c.is_finite(), lambda s: math.isfinite(s.sum()))
# identity: ``portfolio_id = f"{source}_{strategy_id}"`` is unambiguous because a source
# never holds ``_`` (the first ``_`` ends it); aggregate rows own ``{source}_Overall``.
SOURCE_PATTERN = r"^[A-Za-z0-9.-]{1,64}$"
SOURCE_CHARS = "1-64 characters of A-Z a-z 0-9 . - (no '_': it ends the source in portfolio_id)"
OVERALL = "Overall"
_SOURCE_RE = re.compile(SOURCE_PATTERN.removeprefix("^").removesuffix("$"))


SOURCE_NAME = Check(  # fullmatch: exactly the row form's ^...$ (no newline before $)
    lambda c: ~c.str.contains(SOURCE_PATTERN),
    lambda s: bool(s.str.contains(SOURCE_PATTERN).all()),
    lambda v: _SOURCE_RE.fullmatch(v) is not None,
)
RESERVED = Check(
    lambda c: (c == OVERALL) | c.str.ends_with("_" + OVERALL),
    lambda s: not ((s == OVERALL) | s.str.ends_with("_" + OVERALL)).any(),
    lambda v: v != OVERALL and not v.endswith("_" + OVERALL),
)


@dataclass(frozen=True)
class Rule:
    """Records of ``event`` (``None``: every record) whose ``column`` fails ``check`` are
    rejected with ``reason`` (a String expression naming the field and quoting the value)."""

    event: str | None
    column: str
    check: Check
    reason: pl.Expr

    def failing(self) -> pl.Expr:
        """True where this rule rejects the row (never null)."""
        fails = self.check.fails(pl.col(self.column))
        if self.event is not None:
            fails = (pl.col(EVENT_TYPE.column) == self.event) & fails
        return fails.fill_null(False)


def _msg(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)


def _shown(col: str) -> pl.Expr:
    """A value as it appears in a reason: numbers as text (``nan``, ``inf``), strings quoted."""
    c = pl.col(col)
    if col in PRICE_COLUMNS or col == "fee":
        return c.cast(pl.String).str.to_lowercase()
    if col in ("quantity", "sig_token", "instrument_token", QUANTITY_TEXT):
        return c.cast(pl.String)
    return pl.format("'{}'", c.str.slice(0, 80))


def _got(f: Field, text: str) -> pl.Expr:
    return pl.format(f"{f.path}: {text}, got {{}}", _shown(f.column))


PRICE_COLUMNS = ("fill_price", "last_price", "bid", "ask")  # per unit; > 0 unless allowed


def _price_rules(f: Field) -> list[tuple[Check, pl.Expr]]:
    return [
        (FINITE, _got(f, "must be finite")),
        (POSITIVE, _got(f, "must be > 0")),
        (_at_most(MAX_PRICE), _got(f, f"must be at most {MAX_PRICE:g} per unit")),
    ]


# value rules per RAW column, after the field's ``required`` rule: (check, reason)
VALUE_RULES: dict[str, Callable[[Field], list[tuple[Check, pl.Expr]]]] = {
    "source": lambda f: [
        (NON_BLANK, _msg(f"{f.path}: must be a non-empty string")),
        (SOURCE_NAME, _got(f, f"must be {SOURCE_CHARS}")),
    ],
    "strategy_id": lambda f: [
        (NON_BLANK, _msg(f"{f.path}: must be a non-empty string")),
        (RESERVED, _got(f, f"'{OVERALL}' and names ending '_{OVERALL}' are reserved for the "
                           "aggregate rows")),
    ],
    "sig_token": lambda f: [(POSITIVE, _got(f, "must be a positive integer"))],
    "instrument_token": lambda f: [(POSITIVE, _got(f, "must be a positive integer"))],
    "signal_type": lambda f: [(SIDE, _got(f, "must be BUY or SELL"))],
    "quantity": lambda f: [
        (POSITIVE, _got(f, "must be > 0")),
        (_at_most(MAX_QUANTITY), _got(f, f"must be at most {MAX_QUANTITY} units")),
    ],
    **dict.fromkeys(PRICE_COLUMNS, _price_rules),
    "fee": lambda f: [
        (FINITE, _got(f, "must be finite")),
        (_at_most(MAX_FEE), _got(f, f"must be between -{MAX_FEE:g} and {MAX_FEE:g}")),
    ],
    "fee_currency": lambda f: [(FEE_CURRENCY, _got(f, "must be 'quote' or 'base'"))],
}


def _required(f: Field) -> tuple[Check, pl.Expr]:
    return REQUIRED, _msg(f"{f.path}: is required (missing or null)")


def _as_units(check: Check) -> Check:
    """``check`` over decimal text, by its float64 value (exact enough for > 0 and bounds)."""
    return Check(lambda c: check.fails(c.cast(pl.Float64)),
                 lambda s: check.all_pass(s.cast(pl.Float64)))


def _places(decimals: int) -> Check:
    pattern = rf"\.[0-9]{{{decimals + 1},}}$"
    return Check(lambda c: c.str.contains(pattern),
                 lambda s: not s.str.contains(pattern).any())


def _fraction_rules(f: Field, decimals: int) -> list[tuple[Check, pl.Expr]]:
    """The quantity's rules over ``quantity_text`` with ``decimals`` > 0 places allowed."""
    bound = max_quantity(decimals)

    def got(text: str) -> pl.Expr:
        return pl.format(f"{f.path}: {text}, got {{}}", pl.col(QUANTITY_TEXT))

    return [
        _required(f),
        (_places(decimals), got(f"at most {decimals} decimal places (quantity_decimals = "
                                f"{decimals}; at most {MAX_QUANTITY_DECIMALS} supported)")),
        (_as_units(POSITIVE), got("must be > 0")),
        (_as_units(_at_most(bound)), got(f"must be at most {bound} units")),
    ]


def _field_rules(event: str, decimals: int = 0, positive_prices: bool = True) -> list[Rule]:
    out: list[Rule] = []
    fields = FIELDS[event]
    for i, f in enumerate(fields):
        if f.kind == "ts":
            continue  # judged by ``timestamps``, last
        if f.in_signal and not any(g.in_signal for g in fields[:i]):
            missing = _msg(f"{SIGNAL}: is required (missing or null)")
            out.append(Rule(event, "sig_present", TRUE, missing))
        if f.column == "quantity" and decimals:
            out += [Rule(event, QUANTITY_TEXT, check, reason)
                    for check, reason in _fraction_rules(f, decimals)]
            continue
        checks = [_required(f)] if f.required else []
        value_rules = VALUE_RULES.get(f.column)
        checks += [] if value_rules is None else value_rules(f)
        if not positive_prices and f.column in PRICE_COLUMNS:  # the engine judges the sign
            checks = [(c, r) for c, r in checks if c is not POSITIVE]
        out += [Rule(event, f.column, check, reason) for check, reason in checks]
    return out


@cache
def rules(decimals: int = 0, positive_prices: bool = True) -> tuple[Rule, ...]:
    """Every rule, in reason order (``decimals``: ``quantity_decimals``; ``positive_prices``
    False: no "> 0" rule on prices, see the module docstring)."""
    known = f"event_type: must be '{FILL_EVENT}' or '{TICK_EVENT}', got {{}}"
    return (
        Rule(None, "parse_error", ABSENT, pl.col("parse_error")),
        Rule(None, EVENT_TYPE.column, *_required(EVENT_TYPE)),
        Rule(None, EVENT_TYPE.column, KNOWN_EVENT, pl.format(known, _shown("event_type"))),
        *[rule for event in EVENT_TYPES
          for rule in _field_rules(event, decimals, positive_prices)],
        Rule(None, "ts_error", ABSENT, pl.col("ts_error")),
    )


@cache
def reason_expr(decimals: int = 0, positive_prices: bool = True) -> pl.Expr:
    """First failing rule per row as a String expression; null for a valid record."""
    return pl.coalesce([pl.when(rule.failing()).then(rule.reason)
                        for rule in rules(decimals, positive_prices)])


def all_valid(judged: pl.DataFrame | None, parts: dict[str | None, pl.DataFrame | None],
              decimals: int = 0, positive_prices: bool = True) -> bool:
    """No row fails any rule, by whole-column checks (``Check.all_pass``): the rules of
    every record on ``judged`` (``None``: known to pass), each event type's on its rows in
    ``parts``."""
    return next(_doubtful(judged, parts, decimals, positive_prices), None) is None


def _doubtful(judged: pl.DataFrame | None, parts: dict[str | None, pl.DataFrame | None],
              decimals: int = 0, positive_prices: bool = True) -> Iterator[Rule]:
    """The rules whose whole-column check does not pass (as ``all_valid``), in order: only
    these can fail a row (``all_pass`` is never looser than ``fails``)."""
    distinct: dict[tuple[int, str], pl.Series] = {}
    for rule in rules(decimals, positive_prices):
        frame = judged if rule.event is None else parts.get(rule.event)
        if frame is None:
            continue
        values = frame.get_column(rule.column)
        if rule.check.value_ok is not None:  # a few names repeated: each checked once
            key = (id(frame), rule.column)
            values = distinct[key] if key in distinct else distinct.setdefault(
                key, values.unique())
        if not rule.check.passes(values):
            yield rule


_FILL_COLUMNS = ("seq", "source", "strategy_id", "quantity", "fill_price", "ts")


def atoms(text: pl.Series, decimals: int) -> pl.Series:
    """Valid quantities as exact decimal text (at most ``decimals`` places) -> ``Int64``
    atoms of ``10**-decimals`` units, by integer arithmetic on the digits."""
    parts = text.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64)
    frac = parts.struct.field("field_1").fill_null("").str.pad_end(decimals, "0")
    out: pl.Series = whole * 10**decimals + frac.cast(pl.Int64)
    return out.alias("quantity")


def fill_frame(get: Callable[[str], pl.Series], provenance: list[pl.Series],
               decimals: int = 0) -> pl.DataFrame:
    """``FILL_SCHEMA`` frame of valid fill rows; ``get`` gives their input columns by name
    (``fill_inputs``); ``decimals`` > 0: ``quantity`` in atoms (``atoms``)."""
    signal_type, quantity = get("signal_type"), get("quantity")
    if decimals:
        if get("quantity_num").null_count() == len(quantity):  # integers only
            quantity = quantity * 10**decimals
        else:
            quantity = atoms(get(QUANTITY_TEXT), decimals)
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
    columns = {name: get(name) for name in _FILL_COLUMNS} | {"quantity": quantity} | {
        "portfolio_id": get("source") + "_" + get("strategy_id"),
        "instrument_token": get("sig_token"),
        "side": side,
        "signed_qty": quantity.zip_with(buy, quantity * -1),  # (Series negation is a query)
        "fee": fee,
        "fill_id": fill_id,
    }
    out = _frame(columns, provenance, FILL_SCHEMA)
    fee_currency = get("fee_currency")  # optional (``schema.FILL_OPTIONAL``): only if sent
    if fee_currency.null_count() < len(fee_currency):
        out = out.with_columns(fee_currency.cast(pl.String).alias("fee_currency"))
    return out


_ARROW_NULLS = {"topic": pa.string_view(), "partition": pa.int32(), "offset": pa.int64()}


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


FILL_INPUTS = [*_FILL_COLUMNS, "signal_type", "fee", "fill_id", "sig_token", "sig_present",
               "fee_currency"]


def fill_inputs(decimals: int) -> list[str]:
    """The columns ``fill_frame`` reads at ``decimals``."""
    return [*FILL_INPUTS, "quantity_num", QUANTITY_TEXT] if decimals else FILL_INPUTS


TICK_INPUTS = ["seq", "instrument_token", "last_price", "ts", "bid", "ask"]


def _parts(
    judged: pl.DataFrame, fill_rows: pl.Series, tick_rows: pl.Series, present: list[str],
    decimals: int = 0,
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The fill rows and the tick rows (with the columns their outputs need), or None."""
    fills = ticks = None
    if fill_rows.any():
        fills = _rows(judged, fill_rows, [*fill_inputs(decimals), *present])
    if tick_rows.any():
        ticks = _rows(judged, tick_rows, [*TICK_INPUTS, *present])
    return fills, ticks


def _outputs(
    fills: pl.DataFrame | None, ticks: pl.DataFrame | None, present: list[str],
    decimals: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    fill_out, tick_out = _empty(FILL_SCHEMA), _empty(TICK_SCHEMA)
    if fills is not None:
        fill_out = fill_frame(fills.get_column, [fills.get_column(name) for name in present],
                              decimals)
    if ticks is not None:
        columns = dict(zip(ticks.columns, ticks.get_columns(), strict=True))
        tick_out = _frame(columns, [], TICK_SCHEMA)
    return fill_out, tick_out


@cache
def failing_expr(decimals: int = 0, positive_prices: bool = True) -> pl.Expr:
    """Per row: does any rule fail it? (``reason_expr`` is not null exactly there.)"""
    return pl.any_horizontal([rule.failing() for rule in rules(decimals, positive_prices)]).alias("failed")


def _reasons(judged: pl.DataFrame, decimals: int = 0,
             doubtful: list[Rule] | None = None,
             positive_prices: bool = True) -> tuple[pl.Series, pl.Series]:
    """``failed`` per row and the reasons of the failed rows (in row order): which rows
    fail over the whole batch (booleans; ``doubtful``: the only rules that can fail a row,
    default all), their reasons (formatted text, every rule in order) on those alone."""
    if doubtful is None:
        failed = judged.select(failing_expr(decimals, positive_prices)).to_series()
    else:
        failed = judged.select(pl.any_horizontal([r.failing() for r in doubtful])).to_series()
    reason = judged.filter(failed).select(reason_expr(decimals, positive_prices).alias("reason")).to_series()
    if reason.null_count():  # a failing rule without a reason text: judge by the reasons
        reason = judged.select(reason_expr(decimals, positive_prices).alias("reason")).to_series()
        failed = reason.is_not_null()
        reason = reason.filter(failed)
    return failed, reason


Parts = tuple[pl.DataFrame | None, pl.DataFrame | None]


def _judge(judged: pl.DataFrame, present: list[str], decimals: int = 0,
           positive_prices: bool = True) -> tuple[pl.Series | None, pl.Series, Parts]:
    """``(failed, reasons of the failed rows, parts)``; ``failed`` is ``None`` when no row
    fails, and then ``parts`` are the fill and tick rows (``_parts``).

    The rules every record obeys (``event is None``) are checked column-wise first; the
    rows they flag are surely rejects, and if the other rows pass their event type's rules
    column-wise, reasons are made for the flagged rows alone (a few poison records in a
    large batch cost a select over those few)."""
    event_type = judged.get_column(EVENT_TYPE.column)
    general = [rule for rule in rules(decimals, positive_prices) if rule.event is None]
    if all(rule.check.all_pass(judged.get_column(rule.column)) for rule in general):
        flagged = None
        rest = judged
    else:
        flagged = judged.select(pl.any_horizontal([r.failing() for r in general])).to_series()
        rest = judged.filter(~flagged)
        event_type = rest.get_column(EVENT_TYPE.column)
    parts = _parts(rest, event_type == FILL_EVENT, event_type == TICK_EVENT, present, decimals)
    doubtful = list(_doubtful(None, {FILL_EVENT: parts[0], TICK_EVENT: parts[1]}, decimals,
                              positive_prices))
    if not doubtful:
        if flagged is None:
            return None, pl.Series("reason", [], dtype=pl.String), parts
        reason = judged.filter(flagged).select(
            reason_expr(decimals, positive_prices).alias("reason")).to_series()
        return flagged, reason, parts
    # the rows failing a general rule (``flagged``) or a rule doubtful on its event's rows
    return *_reasons(judged, decimals, doubtful + general, positive_prices), parts


def with_quantities(rows: pl.DataFrame, decimals: int) -> pl.DataFrame:
    """``rows`` ready for ``rules(decimals)``: with 0 a fractional quantity is the reading
    problem an integer read makes it (``quantity_error``, as it always was); with more,
    ``quantity_text`` is the quantity as exact decimal text."""
    if decimals:
        text = pl.coalesce(pl.col("quantity_num"), pl.col("quantity").cast(pl.String))
        return rows.with_columns(text.alias(QUANTITY_TEXT))
    if rows.get_column("quantity_error").null_count() == rows.height:
        return rows
    return rows.with_columns(pl.coalesce("quantity_error", "parse_error").alias("parse_error"))


def split(
    rows: pl.DataFrame, raw_of: Callable[[pl.Series], pl.Series], quantity_decimals: int = 0,
    positive_prices: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(fills, ticks, rejects) in ``seq`` order, conforming to the schema contracts.

    ``rows``: ``RAW_SCHEMA`` columns, ``seq``, and when known the provenance columns and
    ``kafka_ts_ms``; ``raw_of``: the records (Binary) of the rows a mask selects, for the
    rejects. A clean batch costs whole-column checks (``all_valid``) and no per-row
    verdict; otherwise the failing rows get their first reason (``_judge``).
    """
    d = quantity_decimals
    rows = with_quantities(rows, d)
    fallback = "kafka_ts_ms" if "kafka_ts_ms" in rows.columns else None
    judged = normalize_ts(
        rows, integer="ts_int", number="ts_num", text="ts_str", fallback_ms=fallback
    )
    present = [name for name in PROVENANCE_SCHEMA if name in rows.columns]
    failed, reason, parts = _judge(judged, present, d, positive_prices)
    if failed is None:
        return *_outputs(*parts, present, d), _empty(REJECT_SCHEMA)
    event_type = judged.get_column(EVENT_TYPE.column)
    is_fill, is_tick = event_type == FILL_EVENT, event_type == TICK_EVENT
    valid = failed.not_()
    fills, ticks = _parts(judged, valid & is_fill, valid & is_tick, present, d)
    fill_out, tick_out = _outputs(fills, ticks, present, d)
    part = _rows(judged, failed, ["seq", *present])
    columns = dict(zip(part.columns, part.get_columns(), strict=True))
    columns |= {"raw": raw_of(failed).cast(pl.Binary), "reason": reason}
    return fill_out, tick_out, _frame(columns, [], REJECT_SCHEMA)

