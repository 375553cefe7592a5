"""Decode stage: frame / dict / dispatch inputs agree with bytes input; property tests.

The property tests mix random bytes, random JSON values and near-miss records into valid
batches and check that nothing raises, nothing is lost, valid records keep their values
(computed here, independently), and that the fast path (pyarrow) and the reference decoder
(plain Python, forced) give identical frames.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from test_decode import enc, fill, tick

from pm_polars.events import (
    DecodedBatch,
    decode_any,
    decode_dicts,
    decode_frame,
    decode_messages,
    rules,
    timestamps,
)
from pm_polars.events import decode as decode_module

EVENTS: list[dict[str, Any]] = [
    fill(),
    tick(),
    fill(quantity=-5, fill_id="f-2"),
    fill(signal={"signal_type": "HOLD"}, fill_id="f-3"),
    fill(fill_price=math.nan, fill_id="f-4"),
    fill(fee=math.inf, fill_id="f-5"),
    tick(last_price=-1.0),
    fill(event_type="heartbeat", fill_id="f-6"),
    fill(signal={"signal_type": "sell"}, fill_id="f-7", ts=1795600550000),
    tick(ts=None),
    fill(source="", fill_id="f-8"),
]


def same(a: DecodedBatch, b: DecodedBatch) -> None:
    assert_frame_equal(a.fills, b.fills)
    assert_frame_equal(a.ticks, b.ticks)
    assert_frame_equal(a.rejects.drop("raw"), b.rejects.drop("raw"))


def flattened(event: dict[str, Any]) -> dict[str, Any]:
    signal = event.get("original_signal") or {}
    return {k: v for k, v in event.items() if k != "original_signal"} | signal


def test_frame_dict_and_bytes_inputs_agree() -> None:
    expected = decode_messages([enc(e) for e in EVENTS])
    assert expected.rejects["seq"].to_list() == [2, 3, 4, 5, 6, 7, 10]
    assert "fill_price: must be finite, got NaN" in expected.rejects["reason"][2]
    same(decode_dicts(EVENTS), expected)
    same(decode_frame(pl.DataFrame(EVENTS)), expected)  # original_signal as a struct
    same(decode_frame(pl.DataFrame([flattened(e) for e in EVENTS])), expected)
    same(decode_frame(pl.DataFrame(EVENTS).to_arrow()), expected)
    same(decode_any(pl.DataFrame(EVENTS).to_arrow().to_batches()[0]), expected)


def test_frame_rejects_carry_the_row_as_json_and_provenance() -> None:
    frame = pl.DataFrame([fill(), fill(quantity=0)]).with_columns(
        topic=pl.lit("fills"), partition=pl.lit(2), offset=pl.Series([10, 11]), note=pl.lit("x")
    )
    batch = decode_frame(frame, seq_start=5)
    assert batch.fills[["seq", "topic", "partition", "offset"]].row(0) == (5, "fills", 2, 10)
    reject = batch.rejects.row(0, named=True)
    assert (reject["seq"], reject["offset"], reject["reason"]) == (
        6,
        11,
        "quantity: must be > 0, got 0",
    )
    row = json.loads(reject["raw"])
    assert (
        row["quantity"] == 0
        and row["note"] == "x"
        and row["original_signal"]["signal_type"] == "BUY"
    )


def test_frame_with_missing_columns_and_datetime_ts() -> None:
    when = datetime(2026, 11, 25, 9, 55, 50, 123456, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "event_type": ["market_tick", "market_tick"],
            "instrument_token": [1, 2],
            "ts": [when, None],
        }
    )
    batch = decode_frame(frame.with_columns(last_price=pl.Series([2.5, None])))
    assert batch.ticks.rows() == [(0, 1, 2.5, 1795600550123456000, None, None, None, None, None)]
    assert batch.rejects["reason"].to_list() == ["last_price: is required (missing or null)"]
    assert decode_frame(frame).rejects.height == 2  # no last_price column at all
    unrelated = decode_frame(pl.DataFrame({"a": [1, 2]}))  # no wire field at all
    assert (
        unrelated.rejects["reason"].to_list() == ["event_type: is required (missing or null)"] * 2
    )
    assert unrelated.rejects["raw"].to_list() == [b'{"a":1}', b'{"a":2}']


def test_frame_column_types_json_cannot_write_directly() -> None:
    frame = pl.DataFrame(
        {
            "event_type": pl.Series([b"market_tick", b"market_tick"]),  # binary, valid UTF-8
            "instrument_token": pl.Series([1, 2], dtype=pl.UInt64),
            "last_price": pl.Series([Decimal("24512.50"), Decimal("-1")], dtype=pl.Decimal(10, 2)),
            "ts": pl.Series([Decimal("1795600550123.000"), None], dtype=pl.Decimal(20, 3)),
            "blob": pl.Series([b"\xff", b"\x00"]),  # not UTF-8: written as hex
            "obj": pl.Series([object(), object()], dtype=pl.Object),  # not writable at all
        }
    )
    batch = decode_frame(frame)
    assert batch.ticks.rows() == [(0, 1, 24512.5, 1795600550123000000, None, None, None, None, None)]
    assert batch.rejects["reason"].to_list() == ["last_price: must be > 0, got -1.0"]
    raw = json.loads(batch.rejects["raw"][0])  # the Object column cannot be written: wire fields
    assert raw == {
        "event_type": "market_tick",
        "instrument_token": 2,
        "last_price": -1.0,
        "ts": None,
    }
    with pytest.raises(TypeError, match="fill_id.*Object"):
        decode_frame(frame.rename({"obj": "fill_id"}))


def test_dicts_with_datetimes_and_unencodable_values() -> None:
    when = datetime(2026, 11, 25, 9, 55, 50, 123000, tzinfo=UTC)
    batch = decode_dicts([tick(ts=when), tick(ts={1, 2}), [1, 2]])  # type: ignore[list-item]
    assert batch.ticks["ts"].to_list() == [1795600550123000000]
    assert batch.rejects["seq"].to_list() == [1, 2]
    assert batch.rejects["reason"][0].startswith("not JSON-serializable: Object of type set")
    assert b"{1, 2}" in batch.rejects["raw"][0]
    assert batch.rejects["reason"][1] == "not a JSON object: got array"


def test_decode_any_dispatch() -> None:
    msgs = [enc(e) for e in EVENTS]
    expected = decode_messages(msgs)
    same(decode_any(msgs), expected)
    same(decode_any(tuple(m.decode() for m in msgs)), expected)
    same(decode_any(EVENTS), expected)
    same(decode_any(pl.Series(msgs)), expected)
    same(decode_any([msgs[0], EVENTS[1], *msgs[2:]]), expected)  # bytes and dicts mixed
    assert decode_any(expected) is expected
    assert decode_any([]).size == 0
    assert decode_any([None]).rejects["reason"].to_list() == [
        "tombstone: message value is null (None)"
    ]
    for bad in (5, b"{}", "{}", {"event_type": "market_tick"}, [1, 2], object()):
        with pytest.raises(TypeError, match="decode_any"):
            decode_any(bad)


# ---- properties --------------------------------------------------------------------------

names = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")
finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=5e-324, allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def valid_fill(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid fill and the FILL_SCHEMA values expected for it (seq added later)."""
    source = draw(st.from_regex(r"[A-Za-z0-9.-]{1,12}", fullmatch=True))
    strategy = draw(names.filter(lambda s: s != "Overall" and not s.endswith("_Overall")))
    side = draw(st.sampled_from(["BUY", "SELL", "buy", "Sell"]))
    qty = draw(st.integers(1, 10**12))
    token = draw(st.integers(1, 2**63 - 1))
    price = draw(st.floats(min_value=5e-324, max_value=1e12))
    fee = draw(st.none() | st.floats(min_value=-1e12, max_value=1e12))
    fill_id = draw(st.none() | st.text(max_size=6) | st.integers(0, 10**30))
    ts_ms = draw(st.none() | st.integers(10**11, 9 * 10**12))  # the millisecond range
    extra = draw(st.dictionaries(st.sampled_from(["x", "meta", "note"]), json_values, max_size=2))
    signal = {"strategy_id": strategy, "instrument_token": token, "signal_type": side}
    event: dict[str, Any] = {"event_type": "order_fill", "source": source, "quantity": qty,
                             "fill_price": price}
    event |= {"fee": fee, "fill_id": fill_id, "ts": ts_ms, "original_signal": signal} | extra
    upper = side.upper()
    expected = {
        "portfolio_id": f"{source}_{strategy}",
        "source": source,
        "strategy_id": strategy,
        "instrument_token": token,
        "side": upper,
        "quantity": qty,
        "signed_qty": qty if upper == "BUY" else -qty,
        "fill_price": price,
        "fee": 0.0 if fee is None else fee,
        "fill_id": None if fill_id in (None, "") else str(fill_id),
        "ts": None if ts_ms is None else ts_ms * 1_000_000,
    }
    return event, expected


TRICKY = [b"Inf", b"-Inf", b"-NaN", b"NaN", b"Infinity", b"1e400", b"-0", b"01", b"true"]
TRICKY += [b"\\u0074", b"\\ud800", b"}", b"{", b"[", b",", b":", b'"', b"\n", b"\xff", b"\t"]
TRICKY += [
    b"[" * 300 + b"]" * 300,
    b"[" * 3000 + b"]" * 3000,
    b'{"ts": 1.5}',
    b'"ts": "x", ',
    b'"fill_id": 1.5, ',
]


def splice(msg: bytes, token: bytes, at: int) -> bytes:
    at %= len(msg) + 1
    return msg[:at] + token + msg[at:]


def as_extra_value(msg: bytes, token: bytes) -> bytes:
    """``token`` as the value of an extra (ignored) field: only its JSON validity matters."""
    return b'{"x": ' + token + b", " + msg[1:]


junk = st.one_of(
    st.builds(as_extra_value, st.sampled_from([enc(fill()), enc(tick())]), st.sampled_from(TRICKY)),
    st.builds(
        splice,
        st.sampled_from([enc(fill()), enc(tick())]),
        st.sampled_from(TRICKY),
        st.integers(0, 300),
    ),
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.none(),
    st.just(b'{"event_type": "order_fill", "quantity": "1"}'),
    st.builds(lambda q: enc(fill(quantity=q)), json_values),
    st.builds(lambda t: enc(tick(ts=t)), json_values),
)
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.lists(valid_fill(), min_size=1, max_size=12), st.lists(junk, max_size=12), st.randoms())
def test_junk_never_raises_loses_or_alters_valid_records(
    fills: list[tuple[dict[str, Any], dict[str, Any]]], noise: list[bytes | None], rnd: Any
) -> None:
    msgs: list[bytes | None] = [enc(event) for event, _ in fills]
    expected_rows = [exp for _, exp in fills]
    for item in noise:
        msgs.insert(rnd.randint(0, len(msgs)), item)
    batch = decode_messages(msgs, seq_start=7)
    assert batch.size == len(msgs)
    seqs = [7 + i for i, m in enumerate(msgs) if m is not None and m in {enc(e) for e, _ in fills}]
    got = batch.fills.filter(pl.col("seq").is_in(seqs)).drop("seq", "topic", "partition", "offset")
    assert got.to_dicts() == expected_rows  # order kept, values intact
    all_seqs = sorted(pl.concat([batch.fills["seq"], batch.ticks["seq"], batch.rejects["seq"]]))
    assert all_seqs == list(range(7, 7 + len(msgs)))


@PROPERTY
@given(st.lists(st.one_of(junk, valid_fill().map(lambda f: enc(f[0]))), max_size=30))
# a ts beyond decimal128(38, 9): pyarrow wrapped it silently, so the reason showed a wrong value
@example([enc(tick(ts=7.799846594545486e36)), enc(tick(ts=1.5e30)), enc(tick(ts=1.7955e9))])
@example([enc(tick(ts=12345678901234567890123.5)), enc(tick(ts=1795600550.25))])
def test_fast_path_equals_reference_decoder(msgs: list[bytes | None]) -> None:
    fast = decode_messages(msgs)
    with pytest.MonkeyPatch.context() as mp:  # every record through the Python decoder
        mp.setattr(decode_module, "read_fast", lambda text: ({}, list(range(len(text))), False))
        reference = decode_messages(msgs)
    assert_frame_equal(fast.fills, reference.fills)
    assert_frame_equal(fast.ticks, reference.ticks)
    assert_frame_equal(fast.rejects, reference.rejects)


valid_tick = st.builds(
    lambda token, price, ts: enc(tick(instrument_token=token, last_price=price, ts=ts)),
    st.integers(-(2**63), 2**63 - 1),
    positive,
    st.none() | st.integers(10**11, 9 * 10**12),
)


valid_msg = st.one_of(valid_fill().map(lambda f: enc(f[0])), valid_tick)


@PROPERTY
@given(st.lists(valid_msg, max_size=30) | st.lists(junk | valid_msg, max_size=30))
def test_quick_checks_never_change_a_verdict(msgs: list[bytes | None]) -> None:
    """The whole-column check (``rules.all_valid``) and the one-multiply ``ts`` path agree
    with judging every row by every rule."""
    quick = decode_messages(msgs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rules, "all_valid", lambda *args, **kwargs: False)
        mp.setattr(timestamps, "common_unit", lambda values: None)
        slow = decode_messages(msgs)
    assert_frame_equal(quick.fills, slow.fills)
    assert_frame_equal(quick.ticks, slow.ticks)
    assert_frame_equal(quick.rejects, slow.rejects)
