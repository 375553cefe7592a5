"""Cheap, conservative validity checks: true only where every rule of ``validate`` surely
holds for the record's event type.

``all_valid`` checks whole columns of the fills and of the ticks at once (minimum, sum,
null count: a clean batch needs no per-row verdict); ``surely_valid`` checks row by row.
A row they leave out is judged rule by rule (``validate.reason_expr``), so they may be
stricter than the rules, never looser. They use Arrow kernels and Polars aggregates, one
call per check and no query planning, so they cost little on a batch of 200 records as
well as on one of 50,000.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.schema import FILL_EVENT, SIDES, TICK_EVENT


def spellings(word: str) -> list[str]:
    """Every ASCII letter-case spelling of ``word`` (``"BUY"`` -> ``BUY``, ``BUy``, ...)."""
    spelled = [""]
    for ch in word:
        spelled = [s + c for s in spelled for c in (ch.lower(), ch.upper())]
    return spelled


_SIDE_SPELLINGS = pa.array([s for side in SIDES for s in spellings(side)], pa.large_string())


def _non_blank(values: pa.Array) -> pa.Array:
    """Not empty and not all whitespace. Arrow's whitespace holds every Unicode White_Space
    character (what the rule's ``strip_chars`` removes) and a few more, so a string passing
    here surely passes the rule."""
    return pc.and_(pc.greater(pc.binary_length(values), 0), pc.invert(pc.utf8_is_space(values)))


def _all_non_blank(*columns: pl.Series) -> bool:
    """Every value of the (String) ``columns`` non-blank, checked together in one pass."""
    arrow = pa.chunked_array([column.to_arrow() for column in columns])
    shortest = pc.min(pc.binary_length(arrow)).as_py()
    return shortest is not None and shortest > 0 and not pc.any(pc.utf8_is_space(arrow)).as_py()


def _all_sides(values: pl.Series) -> bool:
    """Every value (none null) a spelling of BUY or SELL: the usual upper case by two
    comparisons, any other spelling by a set lookup (costlier: it hashes the set)."""
    if ((values == "BUY") | (values == "SELL")).all():
        return True
    return bool(pc.all(pc.is_in(values.to_arrow(), value_set=_SIDE_SPELLINGS)).as_py())


def _all_positive_finite(values: pl.Series) -> bool:
    """Every value > 0 and finite (a NaN or an infinity makes the sum non-finite)."""
    low, total = values.min(), values.sum()
    return isinstance(low, float) and low > 0 and math.isfinite(total)


def _all_positive_int(values: pl.Series) -> bool:
    low = values.min()
    return isinstance(low, int) and low > 0


def fills_valid(get: Callable[[str], pl.Series]) -> bool:
    """Every fill row surely valid; ``get`` gives their columns by ``RAW_SCHEMA`` name."""
    required = ("source", "strategy_id", "sig_present", "sig_token", "signal_type", "quantity")
    if any(get(name).null_count() for name in (*required, "fill_price")):
        return False
    return bool(
        get("sig_present").all()
        and _all_positive_int(get("quantity"))
        and _all_positive_finite(get("fill_price"))
        and math.isfinite(get("fee").sum())  # nulls (no fee) are skipped
        and _all_sides(get("signal_type"))
        and _all_non_blank(get("source"), get("strategy_id"))
    )


def ticks_valid(get: Callable[[str], pl.Series]) -> bool:
    """Every tick row surely valid; ``get`` gives their columns by ``RAW_SCHEMA`` name."""
    return (
        get("instrument_token").null_count() == 0
        and get("last_price").null_count() == 0
        and _all_positive_finite(get("last_price"))
    )


def all_valid(fills: pl.DataFrame | None, ticks: pl.DataFrame | None) -> bool:
    """Every row of ``fills`` (all ``order_fill`` rows) and of ``ticks`` (all
    ``market_tick``) surely valid, ``parse_error``/``ts_error`` aside (the caller checks
    they are all null)."""
    return (fills is None or fills_valid(fills.get_column)) and (
        ticks is None or ticks_valid(ticks.get_column)
    )


def _positive_finite(values: pa.Array) -> pa.Array:
    return pc.and_(pc.greater(values, 0), pc.is_finite(values))


def _all(checks: list[pa.Array]) -> pa.Array:
    """True where every check is true; false where one is false or null."""
    return pc.fill_null(functools.reduce(pc.and_, checks), False)


def surely_valid(rows: pl.DataFrame) -> pl.Series:
    """Per row of ``rows`` (``RAW_SCHEMA`` plus ``ts_error``): surely valid? Never null."""

    def col(name: str) -> pa.Array:
        return rows[name].to_arrow()

    event_type = col("event_type")
    fill = _all(
        [
            pc.equal(event_type, FILL_EVENT),
            _non_blank(col("source")),
            col("sig_present"),
            _non_blank(col("strategy_id")),
            pc.is_valid(col("sig_token")),
            pc.is_in(col("signal_type"), value_set=_SIDE_SPELLINGS),
            pc.greater(col("quantity"), 0),
            _positive_finite(col("fill_price")),
            pc.is_finite(pc.fill_null(col("fee"), 0.0)),  # missing fee = 0.0
        ]
    )
    tick = _all(
        [
            pc.equal(event_type, TICK_EVENT),
            pc.is_valid(col("instrument_token")),
            _positive_finite(col("last_price")),
        ]
    )
    valid = pc.or_(fill, tick)
    for name in ("parse_error", "ts_error"):
        if rows[name].null_count() != rows.height:
            valid = pc.and_(valid, pc.is_null(col(name)))
    return pl.Series("valid", valid)
