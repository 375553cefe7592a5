"""Decode stage: every reject kind comes back with a reason naming the field.

Each record is decoded alone and again mixed into a larger batch (pyarrow fast path plus
fallbacks): the reason must be the same, and the raw bytes must be kept exactly.
"""

from __future__ import annotations

import pytest
from test_decode import DROP, enc, fill, tick

from pm_polars.events import decode_messages


def one_reject(msg: bytes | None) -> str:
    batch = decode_messages([msg])
    assert batch.fills.height == 0 and batch.ticks.height == 0, msg
    assert batch.rejects["raw"].to_list() == [msg]
    return str(batch.rejects["reason"][0])


REJECTS: list[tuple[bytes | None, str]] = [
    (b'{"event_type": "order_fill" "source": "paper"}', "not valid JSON: Expecting ',' delimiter"),
    (b"not json", "not valid JSON: Expecting value: line 1 column 1"),
    (enc(fill())[:-1], "not valid JSON"),
    (b'{"a": 1,}', "not valid JSON: Expecting property name"),
    (b"\xff\xfe{}", "not valid UTF-8: invalid start byte at byte 0"),
    (b"\xef\xbb\xbf" + enc(tick()), "not valid JSON: Unexpected UTF-8 BOM"),
    (b"", "empty message"),
    (b" \n\t", "empty message"),
    (None, "tombstone"),
    (b"[1, 2]", "not a JSON object: got array"),
    (b"42", "not a JSON object: got number"),
    (b"null", "not a JSON object: got null"),
    (b'"x"', "not a JSON object: got string"),
    (enc(tick()) + enc(tick()), "more than one JSON value in one message"),
    (enc(tick()) + b" 5", "more than one JSON value in one message"),
    (enc(fill(event_type=DROP)), "event_type: is required (missing or null)"),
    (
        enc(fill(event_type="heartbeat")),
        "event_type: must be 'order_fill' or 'market_tick', got 'heartbeat'",
    ),
    (enc(fill(event_type=1)), "event_type: expected a string, got number"),
    (enc(fill(source=DROP)), "source: is required (missing or null)"),
    (enc(fill(source="")), "source: must be a non-empty string"),
    (enc(fill(source=" ")), "source: must be a non-empty string"),
    (enc(fill(source=7)), "source: expected a string, got number"),
    (enc(fill(original_signal=DROP)), "original_signal: is required (missing or null)"),
    (enc(fill(original_signal="x")), "original_signal: expected an object, got string"),
    (enc(fill(signal={"strategy_id": None})), "original_signal.strategy_id: is required"),
    (
        enc(fill(signal={"strategy_id": ""})),
        "original_signal.strategy_id: must be a non-empty string",
    ),
    (enc(fill(signal={"instrument_token": None})), "original_signal.instrument_token: is required"),
    (
        enc(fill(signal={"instrument_token": "256265"})),
        "original_signal.instrument_token: expected a number, got string",
    ),
    (
        enc(fill(signal={"instrument_token": 1.5})),
        "original_signal.instrument_token: must be an integer, got 1.5",
    ),
    (
        enc(fill(signal={"signal_type": "HOLD"})),
        "original_signal.signal_type: must be BUY or SELL, got 'HOLD'",
    ),
    (enc(fill(signal={"signal_type": None})), "original_signal.signal_type: is required"),
    (enc(fill(signal={"signal_type": "\u017fell"})), "must be BUY or SELL, got '\u017fell'"),
    (
        enc(fill(signal={"signal_type": True})),
        "original_signal.signal_type: expected a string, got boolean",
    ),
    (enc(fill(quantity=DROP)), "quantity: is required (missing or null)"),
    (enc(fill(quantity=-5)), "quantity: must be > 0, got -5"),
    (enc(fill(quantity=0)), "quantity: must be > 0, got 0"),
    (enc(fill(quantity=7.5)), "quantity: must be an integer, got 7.5"),
    (enc(fill(quantity="75")), "quantity: expected a number, got string"),
    (enc(fill(quantity=True)), "quantity: expected a number, got boolean"),
    (
        enc(fill(quantity=2**64)),
        "quantity: out of range for a 64-bit integer, got 18446744073709551616",
    ),
    (enc(fill(quantity=float("nan"))), "quantity: must be an integer, got NaN"),
    (enc(fill(fill_price=DROP)), "fill_price: is required (missing or null)"),
    (enc(fill(fill_price="24510.5")), "fill_price: expected a number, got string"),
    (enc(fill(fill_price=float("nan"))), "fill_price: must be finite, got NaN"),
    (enc(fill(fill_price=float("inf"))), "fill_price: must be finite, got Infinity"),
    (enc(fill(fill_price=-1.0)), "fill_price: must be > 0, got -1.0"),
    (enc(fill(fill_price=0)), "fill_price: must be > 0, got 0"),
    (enc(fill(fee=float("-inf"))), "fee: must be finite, got -Infinity"),
    (enc(fill(fee="1")), "fee: expected a number, got string"),
    (enc(fill(fill_id=True)), "fill_id: expected a string or a number, got boolean"),
    (enc(fill(fill_id={"a": 1})), "fill_id: expected a string or a number, got object"),
    (enc(tick(instrument_token=DROP)), "instrument_token: is required (missing or null)"),
    (enc(tick(instrument_token="1")), "instrument_token: expected a number, got string"),
    (enc(tick(last_price=DROP)), "last_price: is required (missing or null)"),
    (enc(tick(last_price=float("nan"))), "last_price: must be finite, got NaN"),
    (enc(tick(last_price=-3.5)), "last_price: must be > 0, got -3.5"),
    (enc(tick(last_price=[1])), "last_price: expected a number, got array"),
    (
        enc(tick(ts="yesterday")),
        "ts: expected an epoch number or an ISO-8601 datetime, got 'yesterday'",
    ),
    (enc(tick(ts=True)), "ts: expected an epoch number or an ISO-8601 string, got boolean"),
    (b'{"event_type": "market_tick", "instrument_token": 1, "last_price": -NaN}', "not valid JSON"),
    (
        b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2, "x": Inf}',
        "not valid JSON",
    ),
    (
        b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2, "x": [-Inf]}',
        "not valid JSON",
    ),
    (
        b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2, "last_price": 3}',
        "last_price: duplicate key",
    ),
    (
        b'{"event_type": "order_fill", "source": "\\ud800"}',
        "source: invalid string (lone surrogate",
    ),
]


@pytest.mark.parametrize(("msg", "reason"), REJECTS)
def test_reject_reason_names_the_field(msg: bytes | None, reason: str) -> None:
    assert reason in one_reject(msg)


def test_rejects_in_a_large_batch_give_the_same_reasons() -> None:
    """The same records mixed into valid ones (pyarrow fast path + fallbacks) keep reasons."""
    msgs: list[bytes | None] = []
    for i, (msg, _) in enumerate(REJECTS):
        msgs += [enc(fill(fill_id=f"a{i}")), msg, enc(tick())]
    batch = decode_messages(msgs, seq_start=1000)
    assert batch.size == len(msgs)
    assert batch.fills["seq"].to_list() == [1000 + 3 * i for i in range(len(REJECTS))]
    assert batch.ticks["seq"].to_list() == [1002 + 3 * i for i in range(len(REJECTS))]
    assert batch.rejects["seq"].to_list() == [1001 + 3 * i for i in range(len(REJECTS))]
    for (msg, reason), got in zip(REJECTS, batch.rejects.iter_rows(named=True), strict=True):
        assert reason in got["reason"] and got["raw"] == msg
