"""Decode stage: every valid form and every reject kind, with exact expected values.

Timestamps have their own file (test_decode_ts.py); frame/dict/dispatch inputs and the
property tests are in test_decode_inputs.py.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from pm_polars.events import decode_messages
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA

TS_MS = 1795600550123  # 2026-11-25T09:55:50.123Z


def fill(**over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "order_fill",
        "source": "paper",
        "fill_id": "f-000123",
        "ts": TS_MS,
        "quantity": 75,
        "fill_price": 24510.5,
        "fee": 20.0,
        "original_signal": {
            "strategy_id": "Momentum_NIFTY50_1",
            "instrument_token": 256265,
            "signal_type": "BUY",
        },
    }
    event["original_signal"].update(over.pop("signal", {}))
    event.update(over)
    return {k: v for k, v in event.items() if v is not DROP}


def tick(**over: Any) -> dict[str, Any]:
    event = {"event_type": "market_tick", "instrument_token": 256265, "last_price": 24512.0}
    event["ts"] = TS_MS + 77
    event.update(over)
    return {k: v for k, v in event.items() if v is not DROP}


DROP = object()  # marks a field to leave out


def enc(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def one_reject(msg: bytes | None) -> str:
    batch = decode_messages([msg])
    assert batch.fills.height == 0 and batch.ticks.height == 0, msg
    assert batch.rejects["raw"].to_list() == [msg]
    return str(batch.rejects["reason"][0])


def test_valid_fill_every_column() -> None:
    batch = decode_messages([enc(fill())], topics=["fills"], partitions=[3], offsets=[41])
    assert batch.fills.schema == pl.Schema(FILL_SCHEMA)
    assert batch.fills.to_dicts() == [
        {
            "seq": 0,
            "portfolio_id": "paper_Momentum_NIFTY50_1",
            "source": "paper",
            "strategy_id": "Momentum_NIFTY50_1",
            "instrument_token": 256265,
            "side": "BUY",
            "quantity": 75,
            "signed_qty": 75,
            "fill_price": 24510.5,
            "fee": 20.0,
            "fill_id": "f-000123",
            "ts": 1795600550123000000,
            "topic": "fills",
            "partition": 3,
            "offset": 41,
        }
    ]
    assert batch.ticks.height == batch.rejects.height == 0 and batch.size == 1


def test_valid_tick_every_column() -> None:
    batch = decode_messages([enc(tick())])
    assert batch.ticks.schema == pl.Schema(TICK_SCHEMA)
    assert batch.ticks.to_dicts() == [
        {
            "seq": 0,
            "instrument_token": 256265,
            "last_price": 24512.0,
            "ts": 1795600550200000000,
            "topic": None,
            "partition": None,
            "offset": None,
        }
    ]


@pytest.mark.parametrize(
    ("over", "expect"),
    [
        ({"signal": {"signal_type": "sell"}}, {"side": "SELL", "signed_qty": -75}),
        ({"signal": {"signal_type": "bUy"}}, {"side": "BUY", "signed_qty": 75}),
        ({"fee": DROP}, {"fee": 0.0}),
        ({"fee": None}, {"fee": 0.0}),
        ({"fee": -1.25}, {"fee": -1.25}),  # rebate
        ({"fee": 3}, {"fee": 3.0}),
        ({"fill_id": 123}, {"fill_id": "123"}),
        ({"fill_id": DROP}, {"fill_id": None}),
        ({"fill_id": ""}, {"fill_id": None}),  # no usable dedupe key
        ({"quantity": 75.0}, {"quantity": 75}),
        ({"quantity": 2**62}, {"quantity": 2**62, "signed_qty": 2**62}),
        ({"fill_price": 5}, {"fill_price": 5.0}),
        ({"source": "live"}, {"portfolio_id": "live_Momentum_NIFTY50_1"}),
        ({"ts": None}, {"ts": None}),
        ({"ts": DROP}, {"ts": None}),
    ],
)
def test_valid_fill_variants(over: dict[str, Any], expect: dict[str, Any]) -> None:
    row = decode_messages([enc(fill(**over))]).fills.to_dicts()[0]
    assert {k: row[k] for k in expect} == expect


def test_exponent_quantity_and_pretty_printed_json_are_valid() -> None:
    raw = enc(fill()).replace(b'"quantity": 75', b'"quantity": 1e3')
    pretty = json.dumps(fill(), indent=2).encode()
    batch = decode_messages([raw, pretty, b"  " + enc(fill()) + b"\t\n"])
    assert batch.fills["quantity"].to_list() == [1000, 75, 75]
    assert batch.fills["seq"].to_list() == [0, 1, 2]


def test_nesting_depth_gets_the_same_verdict_alone_and_in_a_batch() -> None:
    def nested(depth: int) -> bytes:
        return enc(tick()).replace(b"{", b'{"x": ' + b"[" * depth + b"]" * depth + b", ", 1)

    for depth, valid in ((200, True), (100_000, False)):
        alone = decode_messages([nested(depth)])
        mixed = decode_messages([enc(fill()), b"{bad", nested(depth)] * 40)
        assert alone.ticks.height == int(valid) and mixed.ticks.height == 40 * int(valid)
        if not valid:
            assert alone.rejects["reason"][0] == "not valid JSON: nested too deeply"
            assert mixed.rejects["reason"].to_list()[1::2] == alone.rejects["reason"].to_list() * 40


def test_extra_fields_are_ignored_whatever_they_hold() -> None:
    junk = {"nested": {"a": [1, {"b": None}], "ts": "x"}, "blob": "z" * 100_000, "n": 1e300}
    odd_tick = tick(quantity="not a number", original_signal=7, fill_price=[1], source=5)
    batch = decode_messages([enc(fill(**junk)), enc(odd_tick), enc(fill(signal={"x": {}}))])
    assert batch.rejects.height == 0
    assert batch.fills.height == 2 and batch.ticks.height == 1


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
    (enc(fill(quantity=2**64)), "quantity: out of range for a 64-bit integer"),
    (enc(fill(quantity=float("nan"))), "quantity: must be an integer, got nan"),
    (enc(fill(fill_price=DROP)), "fill_price: is required (missing or null)"),
    (enc(fill(fill_price="24510.5")), "fill_price: expected a number, got string"),
    (enc(fill(fill_price=float("nan"))), "fill_price: must be finite, got nan"),
    (enc(fill(fill_price=float("inf"))), "fill_price: must be finite, got inf"),
    (enc(fill(fill_price=-1.0)), "fill_price: must be > 0, got -1.0"),
    (enc(fill(fill_price=0)), "fill_price: must be > 0, got 0.0"),
    (enc(fill(fee=float("-inf"))), "fee: must be finite, got -inf"),
    (enc(fill(fee="1")), "fee: expected a number, got string"),
    (enc(fill(fill_id=True)), "fill_id: expected a string or a number, got boolean"),
    (enc(fill(fill_id={"a": 1})), "fill_id: expected a string or a number, got object"),
    (enc(tick(instrument_token=DROP)), "instrument_token: is required (missing or null)"),
    (enc(tick(instrument_token="1")), "instrument_token: expected a number, got string"),
    (enc(tick(last_price=DROP)), "last_price: is required (missing or null)"),
    (enc(tick(last_price=float("nan"))), "last_price: must be finite, got nan"),
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


def test_counts_order_and_provenance_carried_to_all_frames() -> None:
    msgs = [enc(tick()), b"garbage", enc(fill()), None, enc(fill(fill_price=-1))]
    n = len(msgs)
    batch = decode_messages(
        msgs, topics=["t"] * n, partitions=list(range(n)), offsets=[100 + i for i in range(n)]
    )
    assert batch.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert (batch.fills.height, batch.ticks.height, batch.rejects.height) == (1, 1, 3)
    for frame in (batch.fills, batch.ticks, batch.rejects):
        for row in frame.iter_rows(named=True):
            assert (row["topic"], row["partition"], row["offset"]) == (
                "t",
                row["seq"],
                100 + row["seq"],
            )
    assert batch.rejects["seq"].to_list() == [1, 3, 4]


def test_empty_batch_and_length_mismatch() -> None:
    batch = decode_messages([])
    assert batch.size == 0 and batch.fills.schema == pl.Schema(FILL_SCHEMA)
    with pytest.raises(ValueError, match="topic"):
        decode_messages([b"{}"], topics=["a", "b"])
