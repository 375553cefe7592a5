"""Shortcut for a clean batch: from the pyarrow read straight to the fill and tick frames.

The general path turns a read into a full ``RAW_SCHEMA`` frame (``rawschema.table_to_raw``),
normalises ``ts`` and lets ``validate.split`` judge it. For a small clean batch that is
mostly fixed cost (each Polars/Arrow call costs microseconds whatever the batch size), so
when the batch provably is clean its outputs are built directly from the read: only the
columns the outputs need, filtered per event type, with no intermediate frame. "Provably
clean" is the condition under which ``split`` takes its own shortcut, judged by the same
functions (``quickcheck.fills_valid``/``ticks_valid``, ``validate.fill_frame``), so the
frames are the same:

* every message was read by pyarrow in one go with the common types (``read_fast``);
* every integer field holds exact integers (no row for the Python decoder to re-read);
* every ``ts`` is a non-negative integer of one unit that fits int64 nanoseconds;
* every event is an ``order_fill`` or a ``market_tick``, and all of them are surely valid.

Anything else returns ``None`` and the batch takes the general path.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.quickcheck import fills_valid, ticks_valid
from pm_polars.events.rawschema import _EXACT_FLOAT_INT, _series
from pm_polars.events.schema import FILL_EVENT, FILL_SCHEMA, REJECT_SCHEMA, TICK_EVENT, TICK_SCHEMA
from pm_polars.events.timestamps import _common_unit
from pm_polars.events.validate import FILL_INPUTS, TICK_INPUTS, _empty, _frame, fill_frame

_INTEGERS = ("quantity", "instrument_token", "sig_token")  # read as float64
_PLAIN = ("source", "fill_id", "fill_price", "fee", "last_price")
_SIGNAL = ("strategy_id", "signal_type")


def _exact_ints(columns: list[pa.ChunkedArray]) -> list[pa.ChunkedArray] | None:
    """Integer fields read as float64 -> int64, all in one min/max and one cast; ``None``
    unless every value is an exact integer below 2**53 (as ``rawschema._exact_ints``
    proves it, for all the columns at once)."""
    chunks = [chunk for column in columns for chunk in column.chunks]
    values = pa.chunked_array(chunks, pa.float64())
    bounds = pc.min_max(values)  # NaN is skipped; the safe cast refuses it
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and not (-_EXACT_FLOAT_INT < low and high < _EXACT_FLOAT_INT):
        return None
    try:
        ints = pc.cast(values, pa.int64())  # raises on a fraction, NaN or inf
    except pa.ArrowInvalid:
        return None
    out, start = [], 0
    for column in columns:  # zero-copy slices of the one cast
        out.append(ints.slice(start, len(column)))
        start += len(column)
    return out


def split_clean(
    table: pa.Table, seq_start: int, provenance: list[pl.Series]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None:
    """``(fills, ticks, rejects)`` (no rejects) of a batch read whole and in order with the
    common types (``arrow_schema(TS_INT, False)`` layout), or ``None`` when it is not
    provably clean. ``provenance``: the batch's known ``topic``/``partition``/``offset``
    columns, in that order."""
    n = table.num_rows
    sig = table.column("original_signal")
    ints = _exact_ints(
        [
            table.column("quantity"),
            table.column("instrument_token"),
            pc.struct_field(sig, "instrument_token"),
        ]
    )
    if ints is None:
        return None
    ts = _series("ts", table.column("ts"))
    mult = _common_unit(ts)
    if mult is None or ts.null_count():
        return None
    event_type = _series("event_type", table.column("event_type"))
    is_fill, is_tick = event_type == FILL_EVENT, event_type == TICK_EVENT
    fills, ticks = int(is_fill.sum()), int(is_tick.sum())
    if fills + ticks != n:
        return None
    columns = {name: _series(name, values) for name, values in zip(_INTEGERS, ints, strict=True)}
    columns |= {name: _series(name, table.column(name)) for name in _PLAIN}
    columns |= {name: _series(name, pc.struct_field(sig, name)) for name in _SIGNAL}
    columns["sig_present"] = _series("sig_present", pc.is_valid(sig))
    columns["ts"] = ts * mult
    columns["seq"] = pl.int_range(seq_start, seq_start + n, dtype=pl.Int64, eager=True)
    columns |= {s.name: s for s in provenance}
    present = [s.name for s in provenance]
    fill_cols = _rows(columns, is_fill, fills, [*FILL_INPUTS, *present])
    tick_cols = _rows(columns, is_tick, ticks, [*TICK_INPUTS, *present])
    if (fills and not fills_valid(fill_cols.__getitem__)) or (
        ticks and not ticks_valid(tick_cols.__getitem__)
    ):
        return None
    fill_out, tick_out = _empty(FILL_SCHEMA), _empty(TICK_SCHEMA)
    if fills:
        fill_out = fill_frame(fill_cols.__getitem__, [fill_cols[name] for name in present])
    if ticks:
        tick_out = _frame(tick_cols, [], TICK_SCHEMA)
    return fill_out, tick_out, _empty(REJECT_SCHEMA)


def _rows(
    columns: dict[str, pl.Series], mask: pl.Series, count: int, names: list[str]
) -> dict[str, pl.Series]:
    """Columns ``names`` of the ``count`` rows where ``mask`` is true."""
    if count == len(mask):
        return {name: columns[name] for name in names}
    return {name: columns[name].filter(mask) for name in names} if count else {}
