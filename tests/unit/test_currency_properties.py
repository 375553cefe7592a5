"""Property tests of currencies, inverse contracts and base-currency fees: the columnar
engine against the scalar reference (``reference.ReferenceBook``, whose inverse P&L is the
direct ``contracts x multiplier x (1/entry - 1/exit)``), and batch invariance.

Book: an INR stock (m 1), a USD future (m 50), the inverse XBTUSD (m 1, BTC), rates USDINR,
BTCINR and BTCUSD; account INR or USD (USD converts INR by 1/USDINR). Tolerances are
``reference.compare_books``'.
"""

from __future__ import annotations

import random
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import T0, EngineBook, ReferenceBook, assert_books_match, fill, tick

INR_STOCK, USD_FUT, XBTUSD, USDINR, BTCINR, BTCUSD = 101, 202, 303, 901, 902, 903
INSTRUMENTS = [
    {"instrument_token": INR_STOCK, "multiplier": 1.0, "quote_currency": "INR",
     "base_currency": None, "inverse": False, "fx_pair": None},
    {"instrument_token": USD_FUT, "multiplier": 50.0, "quote_currency": "USD",
     "base_currency": None, "inverse": False, "fx_pair": None},
    {"instrument_token": XBTUSD, "multiplier": 1.0, "quote_currency": "USD",
     "base_currency": "BTC", "inverse": True, "fx_pair": None},
    {"instrument_token": USDINR, "multiplier": 1.0, "quote_currency": "INR",
     "base_currency": "USD", "inverse": False, "fx_pair": "USDINR"},
    {"instrument_token": BTCINR, "multiplier": 1.0, "quote_currency": "INR",
     "base_currency": "BTC", "inverse": False, "fx_pair": "BTCINR"},
    {"instrument_token": BTCUSD, "multiplier": 1.0, "quote_currency": "USD",
     "base_currency": "BTC", "inverse": False, "fx_pair": "BTCUSD"},
]
PRICES = {INR_STOCK: (50.0, 5_000.0), USD_FUT: (10.0, 500.0), XBTUSD: (5_000.0, 90_000.0),
          USDINR: (70.0, 90.0), BTCINR: (2e6, 8e6), BTCUSD: (20_000.0, 90_000.0)}
TRADED = (INR_STOCK, USD_FUT, XBTUSD)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _price(rng: random.Random, token: int) -> float:
    low, high = PRICES[token]
    return round(rng.uniform(low, high), 2)


def stream(seed: int, n: int, decimals: int, base_fees: bool) -> list[dict[str, Any]]:
    """Rate ticks first (no missing rate), then fills and ticks of every instrument."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [tick(t, _price(rng, t), ts=T0) for t in (USDINR, BTCINR,
                                                                              BTCUSD)]
    for i in range(n):
        ts = T0 + 1 + i
        if rng.random() < 0.3:
            token = rng.choice([*TRADED, USDINR, BTCINR, BTCUSD])
            events.append(tick(token, _price(rng, token), ts=ts))
            continue
        token = rng.choice(TRADED)
        step = 10**-decimals
        qty: float = rng.randint(1, 500)
        if decimals and rng.random() < 0.5:
            qty = round(rng.randint(1, 500 * 10**decimals) * step, decimals)
        fee = round(rng.uniform(0, 20), 2) if token != XBTUSD else round(rng.uniform(0, 1e-4), 8)
        event = fill(rng.choice(["S1", "S2"]), token, rng.choice(["BUY", "SELL"]), qty,
                     _price(rng, token), fee=fee, ts=ts, fill_id=f"f{i}",
                     source=rng.choice(["paper", "live"]))
        if base_fees and token != XBTUSD and rng.random() < 0.4:
            units = rng.randint(1, 5) * step
            if event["original_signal"]["signal_type"] == "SELL" or units < qty:
                event["fee"], event["fee_currency"] = round(units, decimals), "base"
        events.append(event)
    return events


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60),
       cost_basis=st.sampled_from(["average", "fifo"]),
       account=st.sampled_from(["INR", "USD"]))
def test_engine_matches_reference(seed: int, n: int, cost_basis: str, account: str) -> None:
    events = stream(seed, n, 0, False)
    ref = ReferenceBook(starting_cash=1e6, instruments=INSTRUMENTS, cost_basis=cost_basis,
                        account_currency=account)
    eng = EngineBook.create(starting_cash=1e6, instruments=INSTRUMENTS, cost_basis=cost_basis,
                            account_currency=account)
    assert ref.apply(events) == []
    assert eng.apply(events) == []
    assert_books_match(eng, ref, starting_cash=1e6)
    for g, w in zip(eng.positions(), ref.positions(), strict=True):
        assert (g["pnl_currency"], g["inverse"], g["missing_rate"]) == (
            w["pnl_currency"], w["inverse"], w["missing_rate"])


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60),
       cost_basis=st.sampled_from(["average", "fifo"]))
def test_base_fees_match_reference(seed: int, n: int, cost_basis: str) -> None:
    events = stream(seed, n, 2, True)
    ref = ReferenceBook(starting_cash=1e6, instruments=INSTRUMENTS, cost_basis=cost_basis,
                        quantity_decimals=2)
    eng = EngineBook.create(starting_cash=1e6, instruments=INSTRUMENTS, cost_basis=cost_basis,
                            quantity_decimals=2)
    assert [r for _, r in ref.apply(events)] == []
    assert eng.apply(events) == []
    assert_books_match(eng, ref, starting_cash=1e6)


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(2, 60), cuts=st.integers(1, 5),
       cost_basis=st.sampled_from(["average", "fifo"]))
def test_batch_invariance(seed: int, n: int, cuts: int, cost_basis: str) -> None:
    """One batch or many: the same book."""
    events = stream(seed, n, 2, True)
    whole = EngineBook.create(starting_cash=1e6, instruments=INSTRUMENTS,
                              cost_basis=cost_basis, quantity_decimals=2)
    split = EngineBook.create(starting_cash=1e6, instruments=INSTRUMENTS,
                              cost_basis=cost_basis, quantity_decimals=2)
    whole.apply(events)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(events)), min(cuts, len(events) - 1)))
    for a, b in zip([0, *points], [*points, len(events)], strict=True):
        split.apply(events[a:b])
    assert_books_match(split, whole, starting_cash=1e6)


def test_missing_rate_reference_and_engine_agree() -> None:
    """No BTC rate into INR yet: the portfolio holding XBTUSD is unknown in both."""
    table = pl.DataFrame(INSTRUMENTS).filter(pl.col("instrument_token") != BTCINR)
    events = [tick(USDINR, 83.0, ts=T0), fill("S1", XBTUSD, "BUY", 100, 30_000.0, ts=T0 + 1),
              fill("S2", USD_FUT, "BUY", 1, 100.0, ts=T0 + 2)]
    ref = ReferenceBook(instruments=table.to_dicts())
    eng = EngineBook.create(instruments=table)
    ref.apply(events)
    eng.apply(events)
    want = {r["portfolio_id"]: r for r in ref.portfolios()}
    got = {r["portfolio_id"]: r for r in eng.portfolios()}
    assert want["paper_S1"]["missing_rate"] and got["paper_S1"]["missing_rate"]
    assert want["paper_S1"]["equity"] is None and got["paper_S1"]["equity"] is None
    assert got["paper_S2"]["equity"] == want["paper_S2"]["equity"]
    assert eng.aum()["total"] is None and ref.aum()["total"] is None
