"""Decode stage: ``ts`` forms -> int64 ns since epoch UTC (epoch ms, ISO, fallback).

Issue 11, class 1: a number is epoch milliseconds (the wire format) from 1e11 to
9223372036854 (2262-04-11); seconds, microseconds and nanoseconds were guessed by
magnitude before (a value could be misread 1000x without a word) and are now refused with
a reason, never rescaled.

Expected values are computed here with ``datetime`` arithmetic or written out by hand,
never with the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pm_polars.events import decode_messages

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = datetime(2026, 11, 25, 9, 55, 50, tzinfo=UTC)  # = 1795600550 s
T_NS = (T - EPOCH) // timedelta(seconds=1) * 10**9
assert T_NS == 1_795_600_550_000_000_000


def tick_with(ts: Any, **extra: Any) -> bytes:
    event = {"event_type": "market_tick", "instrument_token": 1, "last_price": 1.0, "ts": ts}
    return json.dumps({**event, **extra}).encode()


def ts_of(raw: bytes, kafka_ms: int | None = None) -> int | None:
    batch = decode_messages([raw], kafka_timestamps_ms=[kafka_ms])
    assert batch.rejects.height == 0, batch.rejects["reason"].to_list()
    return batch.ticks["ts"][0]  # type: ignore[no-any-return]


def reason_of(raw: bytes) -> str:
    batch = decode_messages([raw])
    assert batch.ticks.height == 0
    return str(batch.rejects["reason"][0])


SAME_INSTANT = T_NS + 123_000_000  # 2026-11-25T09:55:50.123Z
FORMS: list[Any] = [
    1795600550123,  # milliseconds
    1795600550123.0,  # milliseconds, float
    "2026-11-25T09:55:50.123Z",
    "2026-11-25T09:55:50.123+00:00",
    "2026-11-25T15:25:50.123+05:30",
    "2026-11-25T15:25:50.123+0530",
    "2026-11-25T04:55:50.123-05",
    "2026-11-25T09:55:50.123",  # naive = UTC
    "2026-11-25 09:55:50.123",
    "2026-11-25t09:55:50,123z",
    "2026-11-25T09:55:50.123000000Z",
    "2026-11-25T09:55:50.1230000009Z",  # sub-ns digits truncated
    "1795600550123",  # numeric string = the number
    "1795600550123.000",
]
OTHER_UNITS: list[Any] = [
    1795600550.123,  # seconds, float
    1795600550,  # seconds
    1795600550123000,  # microseconds
    1795600550123000000,  # nanoseconds
    "1795600550.123",
]


@pytest.mark.parametrize("ts", OTHER_UNITS)
def test_other_units_are_refused_never_rescaled(ts: Any) -> None:
    reason = reason_of(tick_with(ts))
    assert reason.startswith("ts: must be epoch milliseconds from 1e11 (1973-03-03) to "
                             "9223372036854 (2262-04-11), got ")
    assert reason.endswith("seconds, microseconds and nanoseconds are refused, never rescaled")


@pytest.mark.parametrize("ts", FORMS)
def test_every_form_gives_the_same_nanoseconds(ts: Any) -> None:
    assert ts_of(tick_with(ts)) == SAME_INSTANT


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        (100_000_000_000, 100_000_000_000 * 10**6),  # 1e11 ms: the first accepted
        (9_223_372_036_854, 9_223_372_036_854 * 10**6),  # the last whole ms in int64 ns
        (100_000_000_000.0000001, 100_000_000_000 * 10**6),  # below a ns: truncated
        ("1969-12-31T23:59:59.5Z", -500_000_000),
        (
            "2000-02-29T00:00:00Z",
            (datetime(2000, 2, 29, tzinfo=UTC) - EPOCH) // timedelta(seconds=1) * 10**9,
        ),
        ("2026-11-25T09:55Z", T_NS - 50 * 10**9),  # seconds optional
        (
            "1677-09-22T00:00:00Z",
            (datetime(1677, 9, 22, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1) * 1000,
        ),
    ],
)
def test_known_epoch_values(ts: Any, expected_ns: int) -> None:
    assert ts_of(tick_with(ts)) == expected_ns


def test_fractional_milliseconds_are_exact_not_float_rounded() -> None:
    # 1795600550123.456789 * 1e6 in float64 is not exact; the decimal text is
    big = (b'{"event_type":"market_tick","instrument_token":1,"last_price":1,'
           b'"ts":1795600550123.456789}')
    assert ts_of(big) == T_NS + 123_456_789


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2026-02-30T00:00:00Z", "ts: invalid or out-of-range date/time '2026-02-30T00:00:00Z'"),
        ("2026-11-25T24:00:00Z", "ts: invalid or out-of-range date/time"),
        ("2026-11-25T23:59:60Z", "ts: invalid or out-of-range date/time"),  # leap second
        ("2300-01-01T00:00:00Z", "ts: invalid or out-of-range date/time"),  # past int64 ns
        ("2026-11-25", "ts: expected an epoch number or an ISO-8601 datetime, got '2026-11-25'"),
        ("", "ts: expected an epoch number or an ISO-8601 datetime, got ''"),
        ("+12", "ts: expected an epoch number or an ISO-8601 datetime, got '+12'"),
        ("1e9", "ts: expected an epoch number or an ISO-8601 datetime"),
        (99_999_999_999, "ts: must be epoch milliseconds from 1e11 (1973-03-03) to "
                          "9223372036854 (2262-04-11), got 99999999999"),
        (100_000_000_000_000, "ts: must be epoch milliseconds from 1e11"),
        (0, "ts: must be epoch milliseconds from 1e11 (1973-03-03) to 9223372036854 "
            "(2262-04-11), got 0"),
        (9_223_372_036_855, "ts: must be epoch milliseconds from 1e11"),
        (-1_795_600_550_123, "ts: must be epoch milliseconds from 1e11"),
        (1e20, "ts: must be epoch milliseconds from 1e11 (1973-03-03) to 9223372036854 "
               "(2262-04-11), got 100000000000000000000"),
        (2**63, "ts: must be epoch milliseconds from 1e11"),
        (float("inf"), "ts: must be finite, got inf"),
        ({"s": 1}, "ts: expected an epoch number or an ISO-8601 string, got object"),
        ([1], "ts: expected an epoch number or an ISO-8601 string, got array"),
    ],
)
def test_bad_ts_is_rejected_with_reason(ts: Any, reason: str) -> None:
    assert reason in reason_of(tick_with(ts))


def test_kafka_timestamp_fills_in_only_for_a_missing_or_null_ts() -> None:
    kafka_ms = 1795600551000
    absent = b'{"event_type":"market_tick","instrument_token":1,"last_price":1}'
    assert ts_of(absent, kafka_ms) == kafka_ms * 10**6
    assert ts_of(tick_with(None), kafka_ms) == kafka_ms * 10**6
    assert ts_of(tick_with(1795600550123), kafka_ms) == SAME_INSTANT  # event time wins
    assert ts_of(absent, None) is None
    assert ts_of(absent, -1) is None  # Kafka "no timestamp"
    bad = decode_messages([tick_with("nope")], kafka_timestamps_ms=[kafka_ms])
    assert bad.rejects.height == 1  # an invalid ts is not replaced by the Kafka one


def test_ts_forms_mixed_in_one_batch() -> None:
    """int, float, ISO and null ts in one batch (several pyarrow read variants)."""
    msgs = [tick_with(ts) for ts in FORMS] + [tick_with(None)] + [tick_with(ts) for ts in FORMS]
    batch = decode_messages(msgs * 20)
    assert batch.rejects.height == 0
    expected = ([SAME_INSTANT] * len(FORMS) + [None] + [SAME_INSTANT] * len(FORMS)) * 20
    assert batch.ticks["ts"].to_list() == expected


INTEGER_TS = [
    0,
    1,
    9_223_372_036,
    9_300_000_000,
    99_999_999_999,
    100_000_000_000,
    1795600550123,
    99_999_999_999_999,
    100_000_000_000_000,
    99_999_999_999_999_999,
    100_000_000_000_000_000,
    2**63 - 1,
    -1,
    -100_000_000_000,
    -(2**63),
]


def test_integer_ts_alone_and_together_agree() -> None:
    """A batch of one unit is one multiply; mixed units, negatives and overflows take the
    per-row rule: both give the same values and reasons."""
    alone = [decode_messages([tick_with(ts)]) for ts in INTEGER_TS]
    together = decode_messages([tick_with(ts) for ts in INTEGER_TS])
    ticks = {row["seq"]: row["ts"] for row in together.ticks.iter_rows(named=True)}
    reasons = dict(zip(together.rejects["seq"], together.rejects["reason"], strict=True))
    for i, batch in enumerate(alone):
        if batch.ticks.height:
            assert ticks[i] == batch.ticks["ts"][0]
        else:
            assert reasons[i] == batch.rejects["reason"][0]
    assert len(ticks) == 2 and len(reasons) == 13
