"""The per-record path: one message (or one dict) -> one ``RAW_SCHEMA`` row, in Python.

Only records the batch reader refuses come here (see ``read`` and ``isolate``), plus dicts
given by notebooks and tests; it is also the definition of what a message *means*: the
batch reader must give the same row for every record it accepts.

JSON rules: strict RFC 8259 as Python's ``json`` reads it, plus the ``NaN`` / ``Infinity`` /
``-Infinity`` literals (they decode, then fail the finiteness rules). Only the fields of the
record's own event type (``schema.FIELDS``) are type-checked; everything else is ignored,
whatever it holds. A key repeated among the record's own fields is a reject (which value
would be meant is ambiguous); repeats elsewhere are ignored. Value rules (``> 0``, BUY/SELL,
...) are *not* checked here but in ``rules``, over whole columns, for every input form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pm_polars.events.schema import (
    EVENT_TYPE,
    FIELDS,
    RAW_SCHEMA,
    SIGNAL,
    SIGNAL_KEYS,
    TOP_KEYS,
    Field,
)
from pm_polars.events.timestamps import OUT_OF_RANGE

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Number(str):
    """Text of a JSON number with a fraction or exponent (kept exact, converted on use)."""

    __slots__ = ()


_INT_DIGITS = 4_000  # below Python's int conversion limit (4300 digits)


def _parse_int(text: str) -> int | _Number:
    """A JSON integer; one too long for Python's ``int`` stays exact text, so a huge number
    is judged like any other (out of range where a field needs it, ignored elsewhere)
    rather than failing the whole record as invalid JSON."""
    return int(text) if len(text) <= _INT_DIGITS else _Number(text)


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
    if isinstance(value, Mapping):
        return "object"
    return "array"


def _text(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject(f"{path}: invalid string (lone surrogate \\u escape)") from None
    return value


def _string(value: Any, path: str) -> str:
    if isinstance(value, _Number) or not isinstance(value, str):
        raise Reject(f"{path}: expected a string, got {kind(value)}")
    return _text(value, path)


def _integer(value: Any, path: str) -> int:
    """Integers, or numbers with an integral value (``75.0``, ``1e3``) in int64 range."""
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


def _number(value: Any, path: str) -> float:
    """float64, correctly rounded; beyond float range -> +-inf."""
    if isinstance(value, bool) or not isinstance(value, _Number | int | float):
        raise Reject(f"{path}: expected a number, got {kind(value)}")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    return float(value)


def _ts(value: Any, row: dict[str, Any]) -> None:
    """``ts`` -> ``ts_int`` (int64), ``ts_num`` (other numbers, exact decimal text) or
    ``ts_str``."""
    if isinstance(value, _Number):
        exact = Decimal(value)
        if exact and exact.adjusted() > 40:
            shown = value if len(value) <= 80 else f"{value[:80]}... ({len(value)} characters)"
            raise Reject(OUT_OF_RANGE.format(shown))
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


def _fill_id(value: Any) -> str:
    """A string as is; a number as its JSON text (``123`` -> ``"123"``)."""
    if isinstance(value, float):  # NaN / Infinity literals
        raise Reject(f"fill_id: must be finite, got {value}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Reject(f"fill_id: expected a string or a number, got {kind(value)}")
    return str(value) if isinstance(value, int | _Number) else _text(value, "fill_id")


_READERS = {"string": _string, "integer": _integer, "number": _number}


QUANTITY = "quantity"


def _fraction(value: Any) -> str | None:
    """A finite non-integral JSON number as exact plain decimal text (``1.5e-2`` ->
    ``0.015``, trailing zeros dropped); ``None`` for anything else."""
    if not isinstance(value, _Number):
        return None
    try:
        exact = Decimal(value)
    except ArithmeticError:
        return None
    if not exact.is_finite() or exact == exact.to_integral_value() or exact.adjusted() > 25:
        return None
    return format(exact.normalize(), "f")


def _put(f: Field, obj: Mapping[str, Any], row: dict[str, Any]) -> None:
    value = obj.get(f.key)
    if value is None:
        return
    if f.column == QUANTITY and (text := _fraction(value)) is not None:
        # kept for the rules (``quantity_decimals``); an integer-only read refuses it so
        row["quantity_num"] = text
        row["quantity_error"] = f"{f.path}: must be an integer, got {value}"
        return
    if f.kind == "ts":
        _ts(value, row)
    elif f.kind == "id":
        row[f.column] = _fill_id(value)
    else:
        row[f.column] = _READERS[f.kind](value, f.path)


def _no_dups(obj: Mapping[str, Any], keys: frozenset[str], prefix: str = "") -> None:
    bad = sorted(getattr(obj, "dups", set()) & keys)
    if bad:
        raise Reject(f"{prefix}{bad[0]}: duplicate key")


def _event(obj: Mapping[str, Any], row: dict[str, Any]) -> None:
    """Type-check ``obj``'s own fields into ``row`` (field order = reason order)."""
    _no_dups(obj, frozenset({EVENT_TYPE.key}))
    event_type = obj.get(EVENT_TYPE.key)
    row[EVENT_TYPE.column] = None if event_type is None else _string(event_type, "event_type")
    fields = FIELDS.get(row[EVENT_TYPE.column] or "")
    if fields is None:
        return
    _no_dups(obj, TOP_KEYS[row[EVENT_TYPE.column]])
    signal = obj.get(SIGNAL)
    for f in fields:
        if not f.in_signal:
            _put(f, obj, row)
            continue
        if signal is None:
            row["sig_present"] = False
            continue
        if not isinstance(signal, Mapping):
            raise Reject(f"{SIGNAL}: expected an object, got {kind(signal)}")
        if not row.get("sig_present"):
            _no_dups(signal, SIGNAL_KEYS, f"{SIGNAL}.")
            row["sig_present"] = True
        _put(f, signal, row)


def _row(obj: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RAW_SCHEMA)
    try:
        if not isinstance(obj, Mapping):
            raise Reject(f"not a JSON object: got {kind(obj)}")
        _event(obj, row)
    except Reject as exc:
        fraction = row.get("quantity_error")  # the reason an integer-only read stops at
        row = dict.fromkeys(RAW_SCHEMA)
        row["parse_error"] = str(exc)
        row["quantity_error"] = fraction
    return row


def _load(raw: bytes | None) -> Any:
    if raw is None:
        raise Reject("tombstone: message value is null (None)")
    if not raw.strip(b" \t\r\n"):
        raise Reject("empty message: no JSON value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Reject(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_Object,
            parse_float=_Number,
            parse_int=_parse_int,
            parse_constant=float,
        )
    except RecursionError:
        raise Reject("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        hint = " (more than one JSON value in one message)" if "Extra data" in str(exc) else ""
        raise Reject(f"not valid JSON: {exc}{hint}") from None


def parse_record(raw: bytes | None) -> dict[str, Any]:
    """Decode one message into a ``RAW_SCHEMA`` row; problems go to ``parse_error``."""
    try:
        obj = _load(raw)
    except Reject as exc:
        return dict.fromkeys(RAW_SCHEMA) | {"parse_error": str(exc)}
    return _row(obj)


_JSON_TYPES = (type(None), bool, int, float, str, list, tuple, Mapping)


def _plain(value: Any, depth: int = 0) -> Any:
    """A dict's value as JSON would carry it: finite floats as exact decimal text (their
    shortest repr, what ``json.dumps`` writes), datetimes as ISO-8601 strings; a value JSON
    cannot hold is a reject."""
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, _JSON_TYPES):
        name = type(value).__name__
        raise Reject(f"not JSON-serializable: Object of type {name} is not JSON serializable")
    if isinstance(value, float) and math.isfinite(value):
        return _Number(repr(value))
    if isinstance(value, Mapping) and depth == 0:
        return {k: _plain(v, 1) for k, v in value.items()}
    return value


def dict_record(event: Any) -> dict[str, Any]:
    """One event given as a dict (or anything else: a reject) -> a ``RAW_SCHEMA`` row,
    with no JSON round trip. Values are judged as the JSON ``json.dumps`` would write."""
    if not isinstance(event, Mapping):
        return _row(event)
    try:
        plain = {k: _plain(v) for k, v in event.items()}
    except Reject as exc:
        return dict.fromkeys(RAW_SCHEMA) | {"parse_error": str(exc)}
    return _row(plain)


def number_ts(value: float | None) -> tuple[str | None, str | None]:
    """A float ``ts`` (frame input) -> (exact decimal text, reason), as the JSON number
    ``json.dumps`` writes for it would give."""
    if value is None:
        return None, None
    row: dict[str, Any] = {}
    try:
        _ts(_Number(repr(value)) if math.isfinite(value) else value, row)
    except Reject as exc:
        return None, str(exc)
    return row.get("ts_num"), None


# ---- reasons quote the raw value --------------------------------------------------------

_NUMERIC_PATHS = tuple(
    f.path for fields in FIELDS.values() for f in fields if f.kind in ("integer", "number")
)
_SHOWN = 80


def _raw_token(raw: bytes, path: str) -> str | None:
    """The JSON text of the number at ``path`` in record ``raw`` (``None``: not found)."""
    try:
        obj = json.loads(raw, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    for key in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return str(obj) if isinstance(obj, _Number) else None


def quote_raw(raw: bytes, reason: str) -> str:
    """``reason`` with the offending number quoted as it was written in ``raw`` (not as
    float64 or int64 converted it): ``fill_price: must be finite, got 1e400``."""
    path, _, rest = reason.partition(": ")
    if path not in _NUMERIC_PATHS or not rest:
        return reason
    token = _raw_token(raw, path)
    if token is None:
        return reason
    if len(token) > _SHOWN:
        token = f"{token[:_SHOWN]}... ({len(token)} characters)"
    body = rest.rpartition(", got ")[0] or rest
    return f"{path}: {body}, got {token}"
