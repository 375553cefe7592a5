"""A catalogue of malformed Kafka records ("poison") for the fault tests and bench/chaos.py.

Every :class:`Poison` is a record no portfolio may be changed by: it names the topic kind it
is produced to (``"fills"``: a fill topic, ``"ticks"``: the ticks topic), its key and value,
and ``expect``, a piece of text the dead-letter ``reason`` header must contain (written by
hand from the wire-format rules in the README, not copied from the decoder; ``a|b``: either). A tick on a fill
topic and a fill on the ticks topic are *valid JSON events* that are poison only because of
where they arrive.

:func:`accepted_oddities` are the opposite: odd but valid records (extra fields, whatever
they hold; a missing ``fee``; lower-case side) that must be *applied*, not dead-lettered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

TopicKind = Literal["fills", "ticks"]

BASE_TS_MS = 1_795_600_000_000
MIB = 1 << 20


@dataclass(frozen=True)
class Poison:
    """One malformed record and the text its dead-letter reason must contain."""

    name: str
    kind: TopicKind
    key: bytes | None
    value: bytes | None
    expect: str


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def fill_dict(
    *, source: str = "paper", strategy: str = "Poison_S", token: int = 256265,
    side: str = "BUY", qty: Any = 75, price: Any = 100.0, fee: Any = 20.0,
    fill_id: str = "p-1", ts: Any = BASE_TS_MS,
) -> dict[str, Any]:
    return {"event_type": "order_fill", "source": source, "fill_id": fill_id, "ts": ts,
            "quantity": qty, "fill_price": price, "fee": fee,
            "original_signal": {"strategy_id": strategy, "instrument_token": token,
                                "signal_type": side}}


def tick_dict(*, token: int = 256265, price: Any = 100.0, ts: Any = BASE_TS_MS) -> dict[str, Any]:
    return {"event_type": "market_tick", "instrument_token": token, "last_price": price,
            "ts": ts}


def _fill(**kw: Any) -> bytes:
    return _dumps(fill_dict(**kw))


def _tick(**kw: Any) -> bytes:
    return _dumps(tick_dict(**kw))


def _without(obj: dict[str, Any], *path: str) -> bytes:
    cur = json.loads(json.dumps(obj))
    inner = cur
    for p in path[:-1]:
        inner = inner[p]
    del inner[path[-1]]
    return _dumps(cur)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def catalogue(large: bool = False) -> list[Poison]:
    """Every malformed shape we could think of; ``large`` adds three ~900 KB records."""
    f = fill_dict()
    t = tick_dict()
    fk, tk = b"paper_Poison_S", b"256265"
    good_fill = _dumps(f)
    out: list[Poison] = [
        # --- not JSON, or not one JSON object
        Poison("truncated_json", "fills", fk, good_fill[: len(good_fill) // 2], "not valid JSON"),
        Poison("truncated_one_byte", "fills", fk, b"{", "not valid JSON"),
        Poison("truncated_tick", "ticks", tk, _dumps(t)[:-1], "not valid JSON"),
        Poison("plain_text", "fills", fk, b"hello, world", "not valid JSON"),
        Poison("binary_garbage", "ticks", None, bytes(range(256)), "UTF-8"),
        Poison("json_array", "fills", fk, b"[1,2,3]", "not a JSON object"),
        Poison("json_string", "ticks", tk, b'"market_tick"', "not a JSON object"),
        Poison("json_number", "fills", fk, b"42", "not a JSON object"),
        Poison("json_null", "ticks", tk, b"null", "not a JSON object"),
        Poison("json_true", "fills", fk, b"true", "not a JSON object"),
        Poison("two_objects", "fills", fk, good_fill + good_fill, "more than one JSON value"),
        Poison("utf8_bom", "ticks", tk, b"\xef\xbb\xbf" + _dumps(t), "JSON"),
        Poison("nul_byte_inside", "ticks", tk, _dumps(t)[:-1] + b"\x00}", "not valid JSON"),
        Poison("trailing_comma", "fills", fk, good_fill[:-1] + b",}", "not valid JSON"),
        Poison("single_quotes", "ticks", tk, _dumps(t).replace(b'"', b"'"), "not valid JSON"),
        # --- tombstones and empty values
        Poison("tombstone", "fills", fk, None, "tombstone"),
        Poison("tombstone_tick", "ticks", tk, None, "tombstone"),
        Poison("empty_value", "fills", fk, b"", "empty"),
        Poison("whitespace_only", "ticks", tk, b" \t\r\n ", "empty"),
        Poison("empty_object", "fills", fk, b"{}", "event_type"),
        # --- non-UTF-8 bytes and bad Unicode
        Poison("latin1_strategy", "fills", fk,
               _fill(strategy="CafX").replace(b"CafX", b"Caf\xe9"), "UTF-8"),
        Poison("invalid_utf8_price", "ticks", tk,
               b'{"event_type":"market_tick","instrument_token":1,"last_price":\xff\xfe}',
               "UTF-8"),
        Poison("lone_surrogate", "fills", fk,
               good_fill.replace(b'"Poison_S"', b'"Poison_\\ud800"'), "surrogate"),
        # --- missing fields
        Poison("missing_event_type", "fills", fk,
               _without(f, "event_type"), "event_type"),
        Poison("missing_quantity", "fills", fk, _without(f, "quantity"), "quantity"),
        Poison("missing_price", "fills", fk, _without(f, "fill_price"), "fill_price"),
        Poison("missing_source", "fills", fk, _without(f, "source"), "source"),
        Poison("missing_signal", "fills", fk, _without(f, "original_signal"), "original_signal"),
        Poison("missing_strategy", "fills", fk,
               _without(f, "original_signal", "strategy_id"), "strategy_id"),
        Poison("missing_token", "fills", fk,
               _without(f, "original_signal", "instrument_token"), "instrument_token"),
        Poison("missing_side", "fills", fk,
               _without(f, "original_signal", "signal_type"), "signal_type"),
        Poison("tick_missing_price", "ticks", tk, _without(t, "last_price"), "last_price"),
        Poison("tick_missing_token", "ticks", tk, _without(t, "instrument_token"),
               "instrument_token"),
        Poison("null_quantity", "fills", fk, _fill(qty=None), "quantity"),
        # --- wrong JSON types
        Poison("quantity_string", "fills", fk, _fill(qty="75"), "quantity"),
        Poison("quantity_bool", "fills", fk, _fill(qty=True), "quantity"),
        Poison("quantity_fraction", "fills", fk, _fill(qty=1.5), "quantity"),
        Poison("quantity_object", "fills", fk, _fill(qty={"n": 75}), "quantity"),
        Poison("price_string", "fills", fk, _fill(price="100.0"), "fill_price"),
        Poison("price_array", "fills", fk, _fill(price=[100.0]), "fill_price"),
        Poison("fee_string", "fills", fk, _fill(fee="20"), "fee"),
        Poison("token_string", "ticks", tk,
               _dumps({**t, "instrument_token": "256265"}), "instrument_token"),
        Poison("token_fraction", "ticks", tk,
               _dumps({**t, "instrument_token": 256265.5}), "instrument_token"),
        Poison("signal_list", "fills", fk,
               _dumps({**f, "original_signal": [f["original_signal"]]}), "original_signal"),
        Poison("strategy_number", "fills", fk, _fill(strategy=7), "strategy_id"),
        Poison("event_type_number", "ticks", tk, _dumps({**t, "event_type": 1}), "event_type"),
        Poison("ts_object", "ticks", tk, _tick(ts={"ms": BASE_TS_MS}), "ts"),
        Poison("ts_garbage_text", "ticks", tk, _tick(ts="yesterday at noon"), "ts"),
        Poison("side_number", "fills", fk, _fill(side=1), "signal_type"),
        # --- NaN / infinity / negative / zero / out of range
        Poison("price_nan", "fills", fk, _fill(price=float("nan")), "fill_price"),
        Poison("price_inf", "fills", fk, _fill(price=float("inf")), "fill_price"),
        Poison("price_overflow_1e999", "fills", fk,
               good_fill.replace(b'"fill_price":100.0', b'"fill_price":1e999'), "fill_price"),
        Poison("price_negative", "fills", fk, _fill(price=-100.0), "fill_price"),
        Poison("price_zero", "fills", fk, _fill(price=0), "fill_price"),
        Poison("quantity_zero", "fills", fk, _fill(qty=0), "quantity"),
        Poison("quantity_negative", "fills", fk, _fill(qty=-75), "quantity"),
        Poison("quantity_beyond_int64", "fills", fk, _fill(qty=2**70), "quantity"),
        Poison("fee_nan", "fills", fk, _fill(fee=float("nan")), "fee"),
        Poison("fee_minus_inf", "fills", fk, _fill(fee=float("-inf")), "fee"),
        Poison("tick_price_nan", "ticks", tk, _tick(price=float("nan")), "last_price"),
        Poison("tick_price_inf", "ticks", tk, _tick(price=float("inf")), "last_price"),
        Poison("tick_price_negative", "ticks", tk, _tick(price=-0.05), "last_price"),
        Poison("tick_price_zero", "ticks", tk, _tick(price=0.0), "last_price"),
        Poison("token_beyond_int64", "ticks", tk,
               _dumps({**t, "instrument_token": 2**64}), "instrument_token"),
        Poison("number_5000_digits", "fills", fk,
               good_fill.replace(b'"quantity":75', b'"quantity":' + b"7" * 5000),
               "not valid JSON|quantity"),
        # --- unknown side / event type
        Poison("side_hold", "fills", fk, _fill(side="HOLD"), "signal_type"),
        Poison("side_empty", "fills", fk, _fill(side=""), "signal_type"),
        Poison("side_padded", "fills", fk, _fill(side=" BUY"), "signal_type"),
        Poison("side_fullwidth", "fills", fk, _fill(side="\uff22\uff35\uff39"), "signal_type"),
        Poison("side_buyy", "fills", fk, _fill(side="BUYY"), "signal_type"),
        Poison("event_type_cancel", "fills", fk, _dumps({**f, "event_type": "order_cancel"}),
               "event_type"),
        Poison("blank_strategy", "fills", fk, _fill(strategy="   "), "strategy_id"),
        Poison("blank_source", "fills", fk, _fill(source=""), "source"),
        Poison("duplicate_event_type_key", "fills", fk,
               b'{"event_type":"market_tick",' + good_fill[1:], "duplicate"),
        # --- deeply nested (10k levels)
        Poison("nested_10k_top_level", "fills", fk, _nested(10_000).encode(), "nested"),
        Poison("nested_10k_extra_field", "fills", fk,
               good_fill[:-1] + b',"x":' + _nested(10_000).encode() + b"}", "nested"),
        Poison("nested_10k_objects_in_signal", "fills", fk,
               good_fill.replace(b'"signal_type":"BUY"',
                                 b'"signal_type":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
               "nested"),
        # --- wrong topic: valid events where they do not belong
        Poison("tick_on_fill_topic", "fills", tk, _tick(), "market_tick on a fill topic"),
        Poison("fill_on_ticks_topic", "ticks", fk, _fill(fill_id="p-wrong-topic"),
               "order_fill on the ticks topic"),
    ]
    if large:  # just under librdkafka's default message.max.bytes (1,000,000)
        out += [
            Poison("large_side_900kb", "fills", fk, _fill(side="B" * 900_000), "signal_type"),
            Poison("large_not_json_900kb", "ticks", tk, b"x" * 900_000, "not valid JSON"),
            Poison("large_strategy_900kb_latin1", "fills", fk,
                   _fill(strategy="S" * 900_000).replace(b"SSSS", b"S\xe9SS", 1), "UTF-8"),
        ]
    return out


def oversized() -> list[Poison]:
    """1 MiB strings: over librdkafka's default ``message.max.bytes`` (1,000,000 bytes), so
    they reach the daemon only from producers configured for large messages."""
    fk, tk = b"paper_Poison_S", b"256265"
    return [
        Poison("huge_side_1mib", "fills", fk, _fill(side="B" * MIB), "signal_type"),
        Poison("huge_not_json_1mib", "ticks", tk, b"x" * MIB, "not valid JSON"),
        Poison("huge_price_string_1mib", "fills", fk, _fill(price="9" * MIB), "fill_price"),
    ]


def accepted_oddities(ts_ms: int) -> list[tuple[TopicKind, bytes, bytes]]:
    """Odd but valid records: ``(kind, key, value)``; the engine applies them.

    Portfolio ``paper_Odd_S`` (a strategy of its own, so the demo feed never touches it).
    """
    key = b"paper_Odd_S"
    base = {"strategy": "Odd_S", "ts": ts_ms}
    extra = fill_dict(fill_id="odd-1", **base)  # type: ignore[arg-type]
    extra |= {"comment": "x" * 10_000, "meta": {"a": [1, {"b": None}], "c": "\u00e9\u4e2d"},
              "nested": json.loads(_nested(100))}
    no_fee = fill_dict(fill_id="odd-2", qty=25, price=101.5, **base)  # type: ignore[arg-type]
    del no_fee["fee"]
    lower = fill_dict(fill_id="odd-3", side="sell", qty=50, price=102.0, **base)  # type: ignore[arg-type]
    return [("fills", key, _dumps(extra)), ("fills", key, _dumps(no_fee)),
            ("fills", key, _dumps(lower))]
