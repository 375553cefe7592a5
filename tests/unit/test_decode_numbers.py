"""Decode stage, numbers and typed columns (issue 11, class 4): the same event gets the same
verdict whichever path reads it and whichever input type carries it.

Each case was wrong before the decode redesign: a huge integer in a field we ignore made a
record that the Python path read invalid JSON (while the pyarrow path accepted it), and a
frame's Binary string column was hex-encoded into garbage ids.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from test_decode import enc, fill, tick

from pm_polars.events import decode_dicts, decode_frame, decode_messages

HUGE = b"7" * 5000  # beyond Python's 4300-digit int conversion limit


def with_extra(event: dict[str, Any], value: bytes) -> bytes:
    """``event`` as JSON with an extra (ignored) field ``x`` holding ``value`` verbatim."""
    text: bytes = enc(event)
    return text[:-1] + b', "x": ' + value + b"}"


def test_huge_number_in_an_ignored_field_changes_no_verdict() -> None:
    fast = fill(fill_id="f-1")  # read by pyarrow
    slow = fill(fill_id=1.5)  # a fractional fill_id: read record by record in Python
    for event in (fast, slow):
        alone = decode_messages([with_extra(event, b"7")])
        huge = decode_messages([with_extra(event, HUGE)])
        assert huge.rejects.height == 0, huge.rejects["reason"].to_list()
        assert huge.fills.drop("seq").rows() == alone.fills.drop("seq").rows()
    assert decode_messages([with_extra(slow, HUGE)]).fills["fill_id"].to_list() == ["1.5"]


def test_huge_number_in_a_field_is_out_of_range_not_invalid_json() -> None:
    quantity = enc(fill()).replace(b'"quantity": 75', b'"quantity": ' + HUGE)
    assert b'"quantity": 7777' in quantity
    price = enc(tick()).replace(b'"last_price": 24512.0', b'"last_price": ' + HUGE)
    ts = enc(tick()).replace(b'"ts": 1795600550200', b'"ts": ' + HUGE)
    assert HUGE in price and HUGE in ts
    reasons = decode_messages([quantity, price, ts]).rejects["reason"].to_list()
    assert reasons[0].startswith("quantity: out of range for a 64-bit integer, got 7777")
    assert reasons[0].endswith("(5000 characters)")  # the raw value, cut
    assert reasons[1].startswith("last_price: must be finite, got 7777")
    assert reasons[2].startswith("ts: must be epoch milliseconds from 1e11")
    assert "got 7777" in reasons[2] and "... (5000 characters);" in reasons[2]  # cut


def test_binary_string_columns_are_utf8_text_or_a_reject_never_hex() -> None:
    frame = pl.DataFrame(
        {
            "event_type": pl.Series([b"order_fill", b"order_fill"]),
            "source": pl.Series([b"paper", b"\xff\xfe"]),
            "quantity": [5, 5],
            "fill_price": [101.5, 101.5],
            "strategy_id": pl.Series([b"S", b"S"]),
            "instrument_token": [256265, 256265],
            "signal_type": ["BUY", "BUY"],
        }
    )
    for data in (frame, frame.to_arrow()):
        batch = decode_frame(data)
        assert batch.fills[["portfolio_id", "source", "strategy_id"]].rows() == [
            ("paper_S", "paper", "S")
        ]
        assert batch.rejects["reason"].to_list() == ["source: not valid UTF-8"]
        assert json.loads(batch.rejects["raw"][0])["quantity"] == 5


def test_typed_columns_get_the_reasons_of_the_json_they_stand_for() -> None:
    events = [
        fill(quantity="75"),
        fill(quantity=1.5, fill_id="f-2"),
        fill(quantity=2.0**70, fill_id="f-3"),
        fill(fee=True, fill_id="f-4"),
        fill(signal={"strategy_id": 7}, fill_id="f-5"),
        tick(ts=True),
    ]
    expected = decode_messages([enc(e) for e in events]).rejects["reason"].to_list()
    assert expected == [
        "quantity: expected a number, got string",
        "quantity: must be an integer, got 1.5",
        "quantity: out of range for a 64-bit integer, got 1.1805916207174113e+21",
        "fee: expected a number, got boolean",
        "original_signal.strategy_id: expected a string, got number",
        "ts: expected an epoch number or an ISO-8601 string, got boolean",
    ]
    assert decode_dicts(events).rejects["reason"].to_list() == expected
    for event, reason in zip(events, expected, strict=True):  # one typed column per case
        assert decode_frame(pl.DataFrame([event])).rejects["reason"].to_list() == [reason]
