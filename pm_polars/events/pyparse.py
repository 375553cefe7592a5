"""Reference decoder: one message -> one ``RAW_SCHEMA`` row, in plain Python.

Used for the records the columnar fast path cannot take (or that made a pyarrow read fail),
so it runs on a small minority of records; it is also the definition of what a message
*means*: the fast path must give the same row for every record it accepts.

JSON rules: strict RFC 8259 as Python's ``json`` reads it, plus the ``NaN`` / ``Infinity`` /
``-Infinity`` literals (they decode, then fail the finiteness rules). Only the fields of the
record's own event type are type-checked; everything else is ignored, whatever it holds.
A key repeated among the record's own fields is a reject (which value would be meant is
ambiguous); repeats elsewhere are ignored. Value rules (``> 0``, BUY/SELL, ...) are *not*
checked here but in ``validate``.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from pm_polars.events.rawschema import FILL_KEYS, RAW_SCHEMA, SIGNAL_KEYS, TICK_KEYS
from pm_polars.events.schema import FILL_EVENT, TICK_EVENT

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Number(str):
    """Text of a JSON number with a fraction or exponent (kept exact, converted on use)."""

    __slots__ = ()


class _Object(dict[str, Any]):
    """A JSON object that remembers which of its keys appeared more than once."""

    __slots__ = ("dups",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.dups: set[str] = set()
        for key, value in pairs:
            if key in self:
                self.dups.add(key)
            self[key] = value


class Reject(Exception):
    """A record is invalid; ``str(exc)`` is the human-readable reason."""


def kind(value: Any) -> str:
    """JSON type name of a decoded value, as used in reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _Number | int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _text(value: Any, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject(f"{path}: invalid string (lone surrogate \\u escape)") from None
    return str(value)


def get_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    """A string field (null/absent -> None); ``path`` names it in reasons."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, _Number) or not isinstance(value, str):
        raise Reject(f"{path}: expected a string, got {kind(value)}")
    return _text(value, path)


def get_int(obj: dict[str, Any], key: str, path: str) -> int | None:
    """Integers, or numbers with an integral value (``75.0``, ``1e3``) in int64 range."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _Number | int | float):
        raise Reject(f"{path}: expected a number, got {kind(value)}")
    if isinstance(value, float):  # NaN / Infinity literals
        raise Reject(f"{path}: must be an integer, got {value}")
    if isinstance(value, _Number):
        exact = Decimal(value)
        if exact and exact.adjusted() > 25:
            raise Reject(f"{path}: out of range for a 64-bit integer")
        if exact != exact.to_integral_value():
            raise Reject(f"{path}: must be an integer, got {value}")
        value = int(exact)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise Reject(f"{path}: out of range for a 64-bit integer")
    return int(value)


def get_float(obj: dict[str, Any], key: str, path: str) -> float | None:
    """A number field as float64 (correctly rounded; beyond float range -> +-inf)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _Number | int | float):
        raise Reject(f"{path}: expected a number, got {kind(value)}")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    return float(value)


def put_ts(obj: dict[str, Any], row: dict[str, Any]) -> None:
    """``ts`` -> ``ts_int`` (int64), ``ts_num`` (other numbers, exact decimal text) or
    ``ts_str``; null stays null."""
    value = obj.get("ts")
    if value is None:
        return
    if isinstance(value, _Number):
        exact = Decimal(value)
        if exact and exact.adjusted() > 40:
            raise Reject(f"ts: out of range for int64 nanoseconds since epoch, got {value}")
        # below 1e-20 every unit truncates to 0 ns; avoid expanding huge negative exponents
        row["ts_num"] = "0" if exact.adjusted() < -20 else format(exact, "f")
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Reject(f"ts: expected an epoch number or an ISO-8601 string, got {kind(value)}")
    elif isinstance(value, float):
        raise Reject(f"ts: must be finite, got {value}")
    elif isinstance(value, int):
        in_range = _INT64_MIN <= value <= _INT64_MAX
        row["ts_int" if in_range else "ts_num"] = value if in_range else str(value)
    else:
        row["ts_str"] = _text(value, "ts")


def put_fill_id(obj: dict[str, Any], row: dict[str, Any]) -> None:
    """A string as is; a number as its JSON text (``123`` -> ``"123"``)."""
    value = obj.get("fill_id")
    if value is None:
        return
    if isinstance(value, float):  # NaN / Infinity literals
        raise Reject(f"fill_id: must be finite, got {value}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Reject(f"fill_id: expected a string or a number, got {kind(value)}")
    row["fill_id"] = str(value) if isinstance(value, int | _Number) else _text(value, "fill_id")


def _no_dups(obj: _Object, keys: frozenset[str], prefix: str = "") -> None:
    bad = sorted(obj.dups & keys)
    if bad:
        raise Reject(f"{prefix}{bad[0]}: duplicate key")


def _fill(obj: _Object, row: dict[str, Any]) -> None:
    _no_dups(obj, FILL_KEYS)
    row["source"] = get_str(obj, "source", "source")
    put_fill_id(obj, row)
    put_ts(obj, row)
    row["quantity"] = get_int(obj, "quantity", "quantity")
    row["fill_price"] = get_float(obj, "fill_price", "fill_price")
    row["fee"] = get_float(obj, "fee", "fee")
    signal = obj.get("original_signal")
    if signal is None:
        row["sig_present"] = False
        return
    if not isinstance(signal, dict):
        raise Reject(f"original_signal: expected an object, got {kind(signal)}")
    assert isinstance(signal, _Object)
    _no_dups(signal, SIGNAL_KEYS, "original_signal.")
    row["sig_present"] = True
    row["strategy_id"] = get_str(signal, "strategy_id", "original_signal.strategy_id")
    row["sig_token"] = get_int(signal, "instrument_token", "original_signal.instrument_token")
    row["signal_type"] = get_str(signal, "signal_type", "original_signal.signal_type")


def _tick(obj: _Object, row: dict[str, Any]) -> None:
    _no_dups(obj, TICK_KEYS)
    row["instrument_token"] = get_int(obj, "instrument_token", "instrument_token")
    row["last_price"] = get_float(obj, "last_price", "last_price")
    put_ts(obj, row)


def _decode(raw: bytes | None, row: dict[str, Any]) -> None:
    if raw is None:
        raise Reject("tombstone: message value is null (None)")
    if not raw.strip(b" \t\r\n"):
        raise Reject("empty message: no JSON value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Reject(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_Object, parse_float=_Number, parse_constant=float)
    except RecursionError:
        raise Reject("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        hint = " (more than one JSON value in one message)" if "Extra data" in str(exc) else ""
        raise Reject(f"not valid JSON: {exc}{hint}") from None
    if not isinstance(obj, dict):
        raise Reject(f"not a JSON object: got {kind(obj)}")
    assert isinstance(obj, _Object)
    if "event_type" in obj.dups:
        raise Reject("event_type: duplicate key")
    event_type = get_str(obj, "event_type", "event_type")
    row["event_type"] = event_type
    if event_type == FILL_EVENT:
        _fill(obj, row)
    elif event_type == TICK_EVENT:
        _tick(obj, row)


def parse_record(raw: bytes | None) -> dict[str, Any]:
    """Decode one message into a ``RAW_SCHEMA`` row; problems go to ``parse_error``."""
    row: dict[str, Any] = dict.fromkeys(RAW_SCHEMA)
    try:
        _decode(raw, row)
    except Reject as exc:
        row = dict.fromkeys(RAW_SCHEMA)
        row["parse_error"] = str(exc)
    return row
