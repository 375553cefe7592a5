"""Input trust, class 4 (issue 11): no overflow, wrap or non-finite number reaches state;
the same event gets the same verdict however it is written; reasons quote the raw value.

Before: two fills of quantity 2**63-1 wrapped the position to -2 (a long became a short)
and cash to -1.8e19; a fill price of 1e307 took cash to -inf; ``"quantity":
75.000000000000001`` was applied as 75 in a batch the native reader took and refused on the
per-record path; reasons quoted ``inf`` for ``1e400`` and ``nan`` for ``NaN``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest
from test_decode import enc, fill, tick

from pm_polars import PortfolioEngine
from pm_polars.engine.refusals import MAX_POSITION
from pm_polars.events import decode_dicts, decode_frame, decode_messages


def with_value(event: bytes, field: bytes, old: bytes, text: bytes) -> bytes:
    out = event.replace(b'"' + field + b'": ' + old, b'"' + field + b'": ' + text)
    assert out != event
    return out


def test_int64_quantities_cannot_wrap_a_long_into_a_short() -> None:
    eng = PortfolioEngine()
    big = 2**63 - 1
    result = eng.apply([enc(fill(quantity=big, fill_id="a")), enc(fill(quantity=big, fill_id="b"))])
    assert result.fills.height == 0
    assert result.rejects["reason"].to_list() == [
        f"quantity: must be at most 1000000000000 units, got {big}"] * 2
    assert eng.positions().height == 0


def test_money_cannot_overflow_to_infinity() -> None:
    eng = PortfolioEngine(starting_cash=1e6)
    result = eng.apply([
        enc(fill(fill_price=1e307, fill_id="a")),
        enc(fill(fee=1e300, fill_id="b")),
        enc(tick(last_price=1e300)),
        enc(fill(quantity=10**12, fill_price=1e12, fill_id="c")),  # the largest allowed
    ])
    assert result.rejects["reason"].to_list() == [
        "fill_price: must be at most 1e+12 per unit, got 1e+307",
        "fee: must be between -1e+12 and 1e+12, got 1e+300",
        "last_price: must be at most 1e+12 per unit, got 1e+300",
    ]
    [cash] = eng.portfolios()["cash"].to_list()
    assert cash == 1e6 - 1e24 - 20.0 and math.isfinite(cash)


def test_position_beyond_the_exact_integer_limit_is_refused_in_arrival_order() -> None:
    eng = PortfolioEngine()
    q = 10**12
    n = MAX_POSITION // q  # 9007 buys fit
    buys = [enc(fill(quantity=q, fill_id=f"b{i}", fill_price=1.0)) for i in range(n + 1)]
    sell = enc(fill(quantity=q, fill_id="s", fill_price=1.0, signal={"signal_type": "SELL"}))
    again = enc(fill(quantity=q, fill_id="again", fill_price=1.0))
    result = eng.apply([*buys, sell, again])
    assert result.rejects["seq"].to_list() == [n]  # only the buy that would pass the bound
    assert result.rejects["reason"][0] == (
        "quantity: the position of paper_Momentum_NIFTY50_1 in 256265 would pass "
        f"{MAX_POSITION} units (the exact-integer limit) or its bought/sold total {2**62}, "
        f"got {q}")
    assert eng.positions()["quantity"].to_list() == [n * q]  # sell and again both applied
    assert result.fills.height == n + 2


FRACTION = b"75.000000000000001"  # float64 reads it as exactly 75


def test_a_fractional_quantity_gets_one_verdict_however_it_is_written() -> None:
    text = with_value(enc(fill()), b"quantity", b"75", FRACTION)
    alone = decode_messages([text])  # the native reader's batch
    mixed = decode_messages([enc(fill(fill_id=f"x{i}")) for i in range(50)] + [text])
    slow = decode_messages([text, b"{not json"])  # a batch the native reader refuses
    for batch in (alone, mixed, slow):
        assert batch.rejects["reason"][0] == f"quantity: must be an integer, got {FRACTION.decode()}"
    for text in (b"75.0", b"7.5e1", b"750e-1", b"75.000"):
        batch = decode_messages([with_value(enc(fill()), b"quantity", b"75", text)])
        assert batch.fills["quantity"].to_list() == [75], text
    token = with_value(enc(tick()), b"instrument_token", b"256265", b"256265.0000000000001")
    assert decode_messages([token]).rejects["reason"].to_list() == [
        "instrument_token: must be an integer, got 256265.0000000000001"]


@pytest.mark.parametrize(
    ("field", "old", "text", "reason"),
    [
        (b"fill_price", b"24510.5", b"1e400", "fill_price: must be finite, got 1e400"),
        (b"fill_price", b"24510.5", b"-0.0", "fill_price: must be > 0, got -0.0"),
        (b"fill_price", b"24510.5", b"2.5E12", "fill_price: must be at most 1e+12 per unit, got 2.5E12"),
        (b"quantity", b"75", b"1E13", "quantity: must be at most 1000000000000 units, got 1E13"),
        (b"quantity", b"75", b"-0", "quantity: must be > 0, got -0"),
        (b"fee", b"20.0", b"-Infinity", "fee: must be finite, got -Infinity"),
    ],
)
def test_reasons_quote_the_value_as_written(field: bytes, old: bytes, text: bytes,
                                            reason: str) -> None:
    msg = with_value(enc(fill()), field, old, text)
    assert decode_messages([msg]).rejects["reason"].to_list() == [reason]
    mixed = decode_messages([enc(fill(fill_id=f"x{i}")) for i in range(20)] + [msg])
    assert mixed.rejects["reason"].to_list() == [reason]


def test_typed_inputs_give_the_verdicts_of_their_json() -> None:
    events = [fill(quantity=2**62), fill(fill_price=1e13, fill_id="b"), tick(last_price=2e12)]
    expected = decode_messages([enc(e) for e in events]).rejects["reason"].to_list()
    assert expected == [
        f"quantity: must be at most 1000000000000 units, got {2**62}",
        "fill_price: must be at most 1e+12 per unit, got 10000000000000.0",
        "last_price: must be at most 1e+12 per unit, got 2000000000000.0",
    ]
    assert decode_dicts(events).rejects["reason"].to_list() == expected
    assert decode_frame(pl.DataFrame([events[0]])).rejects["reason"].to_list() == expected[:1]
    assert decode_frame(pl.DataFrame([events[2]]).to_arrow()).rejects.height == 1


def test_a_lifetime_bought_total_cannot_wrap_int64() -> None:
    eng = PortfolioEngine()
    eng.apply([enc(fill(quantity=5, fill_id="a"))])
    positions = eng.state.positions.with_columns(pl.lit(2**62 - 80, pl.Int64).alias("buy_quantity"))
    eng.state = replace(eng.state, positions=positions)
    result = eng.apply([enc(fill(quantity=75, fill_id="b")), enc(fill(quantity=6, fill_id="c")),
                        enc(fill(quantity=5, fill_id="d"))])
    assert result.rejects["seq"].to_list() == [1]  # 2**62 - 80 + 75 + 6 > 2**62
    assert eng.state.positions["buy_quantity"].to_list() == [2**62]
    assert eng.positions()["quantity"].to_list() == [85]
