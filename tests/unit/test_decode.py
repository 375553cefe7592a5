"""Decode stage: every valid form, exact output values, counts, order and provenance.

Reject kinds are in test_decode_rejects.py, timestamps in test_decode_ts.py, frame/dict/
dispatch inputs and the property tests in test_decode_inputs.py.
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
            "bid": None,  # optional quote: absent on the wire
            "ask": None,
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
        ({"quantity": 10**12}, {"quantity": 10**12, "signed_qty": 10**12}),
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


def test_a_large_batch_decodes_like_small_ones() -> None:
    """Over 4 MB (pyarrow parses blocks in parallel) and over one recovery piece, clean and
    with records pyarrow rejects in the middle: the same frames as 100-record batches."""
    msgs: list[bytes | None] = []
    for i in range(32_000):
        msgs.append(enc(fill(fill_id=f"f-{i}", ts=TS_MS + i)) if i % 3 == 0 else enc(tick(ts=TS_MS + i)))
    poison: list[bytes | None] = [
        b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 01}',  # bad JSON
        enc(tick(ts="2026-11-25T09:55:50Z")),  # another ts type
        enc(fill(quantity="5")),
        None,
        enc(fill(quantity=1.5)),
    ]
    dirty = list(msgs)
    for k, bad in enumerate(poison):
        dirty[1_000 + 7_000 * k] = bad
    for batch in (msgs, dirty):
        whole = decode_messages(batch, seq_start=3)
        parts = [
            decode_messages(batch[i : i + 100], seq_start=3 + i) for i in range(0, 32_000, 100)
        ]
        for name in ("fills", "ticks", "rejects"):
            expected = pl.concat([getattr(p, name) for p in parts])
            assert getattr(whole, name).equals(expected), name
    assert decode_messages(dirty).rejects.height == 4


def test_escaped_keys_mean_what_they_spell() -> None:
    r"""``"\u0074s"`` is the key ``ts``: same values alone and among clean records."""
    head = b'{"event_type": "market_tick", "instrument_token": 1, "last_price": 2.0, '
    msgs = [
        head + b'"\\u0074s": 1795600550123}',
        head + b'"\\u0074s": "2026-11-25T09:55:50.123Z"}',
        head + b'"ts": 1, "\\u0074s": 2}',  # a duplicate key
    ]
    expected = [1795600550123000000, 1795600550123000000]
    for batch in (msgs, [enc(tick())] * 50 + msgs):
        got = decode_messages(batch)
        assert got.ticks["ts"].to_list()[-2:] == expected
        assert got.rejects["reason"].to_list() == ["ts: duplicate key"]
