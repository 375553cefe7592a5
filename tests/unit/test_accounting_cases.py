"""Hand-worked accounting cases.

Every expected number below is worked out by hand in the comments (never taken from the
reference implementation). Each case runs twice, against the scalar ``ReferenceBook`` and
against the columnar ``PortfolioEngine``, so the hand numbers check both the engine and the
reference the property tests rely on.

Conventions: starting cash 1,000,000 unless stated; multiplier 1 unless stated; ts are
epoch milliseconds ``T0 + k``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from reference import T0, fill, make_book, portfolio_row, position, tick

TOKEN_A = 256265
TOKEN_B = 738561
START = 1_000_000.0


@pytest.fixture(params=["reference", "engine"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def expect(row: dict[str, Any], **expected: Any) -> None:
    """Strings and integers must match exactly, floats to 1e-12 relative (hand numbers are exact)."""
    wrong = []
    for name, want in expected.items():
        got = row.get(name)
        if isinstance(want, str):
            ok = got == want
        elif isinstance(want, int) and not isinstance(want, bool):
            ok = got == want and not isinstance(got, float)
        else:
            ok = got is not None and got == pytest.approx(want, rel=1e-12, abs=1e-9)
        if not ok:
            wrong.append(f"{name}: got {got!r}, want {want!r}")
    assert not wrong, "; ".join(wrong)


def pid(strategy: str, source: str = "paper") -> str:
    return f"{source}_{strategy}"


# ---------------------------------------------------------------------------------------
# Long: open, add, partial close
# ---------------------------------------------------------------------------------------


def test_long_open_add_partial_close(kind: str) -> None:
    book = make_book(kind)
    rejects = book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 100, 10.0, fee=1.0, ts=T0 + 1000, fill_id="f-1"),
            fill("S1", TOKEN_A, "BUY", 50, 13.0, fee=0.5, ts=T0 + 2000, fill_id="f-2"),
            fill("S1", TOKEN_A, "SELL", 60, 15.0, fee=0.25, ts=T0 + 3000, fill_id="f-3"),
        ]
    )
    assert rejects == []
    # avg after add = (100*10 + 50*13) / 150 = 1650/150 = 11.0; q = 150
    # SELL 60 @ 15: realized = 60 * (15 - 11) = 240; q = 90; avg stays 11
    # no tick yet -> mark = latest fill price by ts = 15 (ts T0+3000)
    # unrealized = (15 - 11) * 90 = 360; market value = 90 * 15 = 1350
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=90,
        average_price=11.0,
        last_price=15.0,
        realized_pnl=240.0,
        unrealized_pnl=360.0,
        fees=1.75,
        multiplier=1.0,
        market_value=1350.0,
        buy_quantity=150,
        sell_quantity=60,
        buy_value=1650.0,
        sell_value=900.0,
    )

    book.apply([tick(TOKEN_A, 16.0, ts=T0 + 4000)])
    # mark 16: unrealized = (16 - 11) * 90 = 450; market value = 90 * 16 = 1440
    # cash = 1e6 - (1000 + 1) - (650 + 0.5) + (900 - 0.25) = 1e6 - 751.75 = 999,248.25
    # equity = 999,248.25 + 1440 = 1,000,688.25  (= 1e6 + net_pnl)
    # net_pnl = 240 + 450 - 1.75 = 688.25; total_pnl = 690
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=90,
        average_price=11.0,
        last_price=16.0,
        realized_pnl=240.0,
        unrealized_pnl=450.0,
        market_value=1440.0,
    )
    expect(
        portfolio_row(book, pid("S1")),
        source="paper",
        strategy_id="S1",
        cash=999_248.25,
        total_realized_pnl=240.0,
        total_unrealized_pnl=450.0,
        total_fees=1.75,
        total_pnl=690.0,
        net_pnl=688.25,
        market_value=1440.0,
        equity=1_000_688.25,
        gross_exposure=1440.0,
        net_exposure=1440.0,
    )
    doc = book.portfolio(pid("S1"))
    expect(
        doc, cash=999_248.25, total_realized_pnl=240.0, total_unrealized_pnl=450.0, total_pnl=690.0
    )
    expect(
        doc["positions"][str(TOKEN_A)],
        instrument_token=TOKEN_A,
        quantity=90,
        average_price=11.0,
        last_price=16.0,
        unrealized_pnl=450.0,
        realized_pnl=240.0,
    )


# ---------------------------------------------------------------------------------------
# Short: open, add, partial cover, full cover
# ---------------------------------------------------------------------------------------


def test_short_open_add_cover(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "SELL", 40, 50.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 10, 55.0, ts=T0 + 2),
            fill("S1", TOKEN_A, "BUY", 20, 45.0, ts=T0 + 3),
            tick(TOKEN_A, 48.0, ts=T0 + 4),
        ]
    )
    # short avg = (40*50 + 10*55) / 50 = 2550/50 = 51; q = -50
    # BUY 20 @ 45 covers: realized = 20 * (45 - 51) * (-1) = +120; q = -30, avg 51
    # mark 48: unrealized = (48 - 51) * (-30) = +90; market value = -30 * 48 = -1440
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=-30,
        average_price=51.0,
        last_price=48.0,
        realized_pnl=120.0,
        unrealized_pnl=90.0,
        market_value=-1440.0,
    )
    # cash = 1e6 + 2000 + 550 - 900 = 1,001,650; equity = 1,001,650 - 1440 = 1,000,210
    expect(
        portfolio_row(book, pid("S1")),
        cash=1_001_650.0,
        equity=1_000_210.0,
        gross_exposure=1440.0,
        net_exposure=-1440.0,
    )

    book.apply([fill("S1", TOKEN_A, "BUY", 30, 49.0, ts=T0 + 5)])
    # BUY 30 @ 49 covers the rest: realized += 30 * (49 - 51) * (-1) = +60 -> 180; flat, avg 0
    # a tick exists, so the later fill price does not move the mark (still 48)
    # cash = 1,001,650 - 1470 = 1,000,180 = equity (= 1e6 + realized)
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=0,
        average_price=0.0,
        last_price=48.0,
        realized_pnl=180.0,
        unrealized_pnl=0.0,
        market_value=0.0,
        buy_quantity=50,
        sell_quantity=50,
        buy_value=2370.0,  # 900 + 1470
        sell_value=2550.0,  # 2000 + 550
    )
    expect(
        portfolio_row(book, pid("S1")),
        cash=1_000_180.0,
        equity=1_000_180.0,
        total_realized_pnl=180.0,
        total_unrealized_pnl=0.0,
        gross_exposure=0.0,
    )


# ---------------------------------------------------------------------------------------
# Flips
# ---------------------------------------------------------------------------------------


def test_flip_long_to_short(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 100, 20.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 150, 25.0, ts=T0 + 2),
            tick(TOKEN_A, 24.0, ts=T0 + 3),
        ]
    )
    # SELL 150 @ 25 on long 100 @ 20: closes 100 -> realized = 100 * (25 - 20) = 500,
    # remainder -50 opens at 25. mark 24: unrealized = (24 - 25) * (-50) = +50
    # cash = 1e6 - 2000 + 3750 = 1,001,750; market value = -50 * 24 = -1200
    # equity = 1,001,750 - 1200 = 1,000,550 (= 1e6 + 500 + 50)
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=-50,
        average_price=25.0,
        realized_pnl=500.0,
        unrealized_pnl=50.0,
        market_value=-1200.0,
        buy_quantity=100,
        sell_quantity=150,
    )
    expect(
        portfolio_row(book, pid("S1")),
        cash=1_001_750.0,
        equity=1_000_550.0,
        gross_exposure=1200.0,
        net_exposure=-1200.0,
    )


def test_flip_short_to_long_and_back(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "SELL", 30, 100.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "BUY", 50, 90.0, ts=T0 + 2),
            tick(TOKEN_A, 95.0, ts=T0 + 3),
        ]
    )
    # BUY 50 @ 90 on short 30 @ 100: closes 30 -> realized = 30 * (90 - 100) * (-1) = +300,
    # remainder +20 opens at 90. mark 95: unrealized = (95 - 90) * 20 = 100
    # cash = 1e6 + 3000 - 4500 = 998,500; equity = 998,500 + 20*95 = 1,000,400
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=20,
        average_price=90.0,
        realized_pnl=300.0,
        unrealized_pnl=100.0,
        market_value=1900.0,
    )
    expect(portfolio_row(book, pid("S1")), cash=998_500.0, equity=1_000_400.0)

    book.apply([fill("S1", TOKEN_A, "SELL", 25, 80.0, ts=T0 + 4)])
    # SELL 25 @ 80 on long 20 @ 90: closes 20 -> realized += 20 * (80 - 90) = -200 -> 100,
    # remainder -5 opens at 80. mark still 95 (tick): unrealized = (95 - 80) * (-5) = -75
    # cash = 998,500 + 2000 = 1,000,500; mv = -5 * 95 = -475; equity = 1,000,025
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=-5,
        average_price=80.0,
        realized_pnl=100.0,
        unrealized_pnl=-75.0,
        market_value=-475.0,
    )
    expect(
        portfolio_row(book, pid("S1")),
        cash=1_000_500.0,
        equity=1_000_025.0,
        total_pnl=25.0,
        net_pnl=25.0,
    )


def test_exact_close_is_not_a_flip(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 10, 100.5, ts=T0 + 2),
        ]
    )
    # realized = 10 * 0.5 = 5; flat: avg 0, unrealized 0, market value 0
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=0,
        average_price=0.0,
        realized_pnl=5.0,
        unrealized_pnl=0.0,
        market_value=0.0,
        last_price=100.5,
    )


# ---------------------------------------------------------------------------------------
# Flat and re-open
# ---------------------------------------------------------------------------------------


def test_close_to_flat_then_reopen(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 10, 110.0, ts=T0 + 2),
        ]
    )
    # realized = 10 * 10 = 100; flat position row is kept with quantity 0
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=0,
        average_price=0.0,
        realized_pnl=100.0,
        unrealized_pnl=0.0,
        market_value=0.0,
    )

    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 5, 200.0, ts=T0 + 3),
        ]
    )
    # re-open: the average is the new fill price (the old 100 plays no part)
    expect(position(book, pid("S1"), TOKEN_A), quantity=5, average_price=200.0, realized_pnl=100.0)

    book.apply(
        [
            fill("S1", TOKEN_A, "SELL", 5, 190.0, ts=T0 + 4),
            fill("S1", TOKEN_A, "BUY", 4, 150.0, ts=T0 + 5),
        ]
    )
    # realized += 5 * (190 - 200) = -50 -> 50; then re-open 4 @ 150 (avg 150)
    # mark = latest fill price 150 -> unrealized 0
    # cash = 1e6 - 1000 + 1100 - 1000 + 950 - 600 = 999,450; equity = 999,450 + 600
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=4,
        average_price=150.0,
        realized_pnl=50.0,
        unrealized_pnl=0.0,
        buy_quantity=19,
        sell_quantity=15,
        buy_value=2600.0,
        sell_value=2050.0,
    )
    expect(
        portfolio_row(book, pid("S1")), cash=999_450.0, equity=1_000_050.0, total_realized_pnl=50.0
    )


# ---------------------------------------------------------------------------------------
# Fees and net P&L
# ---------------------------------------------------------------------------------------


def test_fees_and_net_pnl(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, fee=2.5, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 10, 101.0, fee=2.5, ts=T0 + 2),
            fill("S1", TOKEN_B, "BUY", 3, 40.0, ts=T0 + 3),  # fee omitted -> 0
            tick(TOKEN_B, 41.0, ts=T0 + 4),
        ]
    )
    # A: realized 10 * 1 = 10, fees 5; B: unrealized (41 - 40) * 3 = 3, fees 0
    # total_pnl = 10 + 3 = 13; net_pnl = 13 - 5 = 8
    # cash = 1e6 - 1002.5 + 1007.5 - 120 = 999,885; equity = 999,885 + 123 = 1,000,008
    expect(position(book, pid("S1"), TOKEN_A), realized_pnl=10.0, fees=5.0)
    expect(position(book, pid("S1"), TOKEN_B), unrealized_pnl=3.0, fees=0.0)
    expect(
        portfolio_row(book, pid("S1")),
        total_fees=5.0,
        total_pnl=13.0,
        net_pnl=8.0,
        cash=999_885.0,
        equity=1_000_008.0,
    )


# ---------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["lot_size", "multiplier"])
def test_multiplier_from_instruments(kind: str, column: str) -> None:
    instruments = [
        {"instrument_token": TOKEN_A, "tradingsymbol": "NIFTY25NOVFUT", column: 50},
        {"instrument_token": TOKEN_B, "tradingsymbol": "BANKNIFTY25NOVFUT", column: 25},
    ]
    book = make_book(kind, instruments=instruments)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 2, 100.0, fee=20.0, ts=T0 + 1),
            fill("S1", TOKEN_A, "SELL", 1, 104.0, ts=T0 + 2),
            tick(TOKEN_A, 110.0, ts=T0 + 3),
            fill("S1", 11536, "BUY", 3, 10.0, ts=T0 + 4),  # not in the frame -> m = 1
        ]
    )
    # A (m=50): BUY 2 @ 100 costs 2*100*50 = 10,000 (+20 fee); SELL 1 @ 104 -> +5,200
    # realized = 1 * (104 - 100) * 50 = 200; mark 110: unrealized = (110 - 100) * 1 * 50 = 500
    # market value = 1 * 110 * 50 = 5,500
    expect(
        position(book, pid("S1"), TOKEN_A),
        multiplier=50.0,
        quantity=1,
        average_price=100.0,
        realized_pnl=200.0,
        unrealized_pnl=500.0,
        market_value=5500.0,
        buy_value=10_000.0,
        sell_value=5200.0,
        fees=20.0,
    )
    # token 11536 (m=1): cost 30, mark 10, unrealized 0
    expect(position(book, pid("S1"), 11536), multiplier=1.0, market_value=30.0)
    # cash = 1e6 - 10,020 + 5,200 - 30 = 995,150; equity = 995,150 + 5,500 + 30 = 1,000,680
    # (= 1e6 + 200 + 500 - 20)
    expect(
        portfolio_row(book, pid("S1")),
        cash=995_150.0,
        equity=1_000_680.0,
        net_pnl=680.0,
        gross_exposure=5530.0,
    )

    book.apply([fill("S2", TOKEN_B, "SELL", 4, 1000.0, ts=T0 + 5), tick(TOKEN_B, 990.0, T0 + 6)])
    # B (m=25), short 4 @ 1000: unrealized = (990 - 1000) * (-4) * 25 = +1000
    # market value = -4 * 990 * 25 = -99,000; cash = 1e6 + 4*1000*25 = 1,100,000
    expect(
        position(book, pid("S2"), TOKEN_B),
        multiplier=25.0,
        unrealized_pnl=1000.0,
        market_value=-99_000.0,
    )
    expect(portfolio_row(book, pid("S2")), cash=1_100_000.0, equity=1_001_000.0)


# ---------------------------------------------------------------------------------------
# Cash and equity across positions
# ---------------------------------------------------------------------------------------


def test_cash_equity_and_exposures(kind: str) -> None:
    book = make_book(kind, starting_cash=50_000.0)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1),
            fill("S1", TOKEN_B, "SELL", 5, 200.0, ts=T0 + 2),
            tick(TOKEN_A, 105.0, ts=T0 + 3),
            tick(TOKEN_B, 190.0, ts=T0 + 4),
        ]
    )
    # cash = 50,000 - 1,000 + 1,000 = 50,000
    # A: mv = 10 * 105 = 1,050, unrealized = 50; B: mv = -5 * 190 = -950, unrealized = +50
    # equity = 50,000 + 1,050 - 950 = 50,100; gross = 2,000; net = 100
    expect(
        portfolio_row(book, pid("S1")),
        cash=50_000.0,
        market_value=100.0,
        equity=50_100.0,
        gross_exposure=2000.0,
        net_exposure=100.0,
        total_unrealized_pnl=100.0,
        total_pnl=100.0,
    )
    assert book.aum()["total"] == pytest.approx(50_100.0, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Marks
# ---------------------------------------------------------------------------------------


def test_late_older_tick_does_not_overwrite(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0),
            tick(TOKEN_A, 105.0, ts=T0 + 2000),
            tick(TOKEN_A, 103.0, ts=T0 + 1000),  # arrives later, but older: ignored
        ]
    )
    # mark 105: unrealized = 5 * 10 = 50
    expect(position(book, pid("S1"), TOKEN_A), last_price=105.0, unrealized_pnl=50.0)
    book.apply([tick(TOKEN_A, 101.0, ts=T0 + 1500)])  # older, in a later batch: ignored
    expect(position(book, pid("S1"), TOKEN_A), last_price=105.0, unrealized_pnl=50.0)
    book.apply([tick(TOKEN_A, 107.0, ts=T0 + 3000)])  # newer: applies, unrealized 70
    expect(position(book, pid("S1"), TOKEN_A), last_price=107.0, unrealized_pnl=70.0)


def test_equal_ts_later_arrival_wins(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0),
            tick(TOKEN_A, 105.0, ts=T0 + 500),
            tick(TOKEN_A, 104.0, ts=T0 + 500),  # same ts, later arrival: wins
        ]
    )
    expect(position(book, pid("S1"), TOKEN_A), last_price=104.0, unrealized_pnl=40.0)
    book.apply([tick(TOKEN_A, 106.0, ts=T0 + 500)])  # same ts, later batch: wins
    expect(position(book, pid("S1"), TOKEN_A), last_price=106.0, unrealized_pnl=60.0)


def test_mark_falls_back_to_latest_fill_price(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 10),
            fill("S2", TOKEN_A, "SELL", 3, 102.0, ts=T0 + 20),  # other portfolio, newer
        ]
    )
    # no tick: mark = latest fill by ts across portfolios = 102
    # S1 unrealized = (102 - 100) * 10 = 20; S2 unrealized = (102 - 102) * (-3) = 0
    expect(
        position(book, pid("S1"), TOKEN_A),
        last_price=102.0,
        unrealized_pnl=20.0,
        market_value=1020.0,
    )
    expect(position(book, pid("S2"), TOKEN_A), last_price=102.0, unrealized_pnl=0.0)

    book.apply([fill("S2", TOKEN_A, "BUY", 1, 90.0, ts=T0 + 5)])  # older fill, later batch
    # mark stays 102 (older fill does not overwrite). S2 covers 1: realized = 1*(90-102)*(-1)
    # = +12; q = -2; S2 unrealized = 0; S1 unrealized still 20
    expect(position(book, pid("S1"), TOKEN_A), last_price=102.0, unrealized_pnl=20.0)
    expect(position(book, pid("S2"), TOKEN_A), quantity=-2, realized_pnl=12.0, unrealized_pnl=0.0)

    book.apply([fill("S1", TOKEN_A, "BUY", 1, 99.0, ts=T0 + 20)])  # equal ts: later wins
    # mark 99; S1: avg = (10*100 + 99)/11 = 1099/11 = 99.909090..., q 11
    # S1 unrealized = (99 - 1099/11) * 11 = 1089 - 1099 = -10; S2 = (99 - 102) * (-2) = +6
    expect(
        position(book, pid("S1"), TOKEN_A),
        last_price=99.0,
        unrealized_pnl=-10.0,
        average_price=1099 / 11,
    )
    expect(position(book, pid("S2"), TOKEN_A), last_price=99.0, unrealized_pnl=6.0)

    book.apply([tick(TOKEN_A, 101.0, ts=T0 + 30)])
    # a tick takes over: S1 unrealized = 101*11 - 1099 = 12; S2 = (101 - 102) * (-2) = 2
    expect(position(book, pid("S1"), TOKEN_A), last_price=101.0, unrealized_pnl=12.0)
    book.apply([fill("S1", TOKEN_A, "SELL", 1, 120.0, ts=T0 + 40)])
    # after a tick, newer fills no longer move the mark: still 101
    # S1 q 10, avg 1099/11, unrealized = (101 - 1099/11) * 10 = (1111 - 1099)/11 * 10
    # = 120/11
    expect(position(book, pid("S1"), TOKEN_A), last_price=101.0, unrealized_pnl=120 / 11)


def test_any_tick_replaces_fill_fallback_even_if_older(kind: str) -> None:
    # "before any tick for the instrument, the latest fill price": once a tick exists it is
    # the mark, even when its ts is older than the fills.
    book = make_book(kind)
    book.apply([fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 100)])
    book.apply([tick(TOKEN_A, 97.0, ts=T0 + 1)])
    # unrealized = (97 - 100) * 10 = -30
    expect(position(book, pid("S1"), TOKEN_A), last_price=97.0, unrealized_pnl=-30.0)


def test_ticks_for_other_instruments_do_not_leak(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            tick(TOKEN_B, 500.0, ts=T0 + 1),  # tick for an instrument nobody holds
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 2),
        ]
    )
    # A has no tick: mark = fill price 100; B creates no position
    expect(position(book, pid("S1"), TOKEN_A), last_price=100.0, unrealized_pnl=0.0)
    assert [(r["portfolio_id"], r["instrument_token"]) for r in book.positions()] == [
        (pid("S1"), TOKEN_A)
    ]
    book.apply([fill("S1", TOKEN_B, "BUY", 1, 490.0, ts=T0 + 3)])
    # the earlier B tick (500) is the mark, not the later fill (490): unrealized = 10
    expect(position(book, pid("S1"), TOKEN_B), last_price=500.0, unrealized_pnl=10.0)


def test_timestamps_are_epoch_ms_or_iso_and_other_units_are_refused(kind: str) -> None:
    # Ordering uses real time; a number is epoch ms (s / us / ns are refused, not guessed).
    book = make_book(kind)
    s = (T0 + 1000) // 1000  # 1,795,600,551 s = T0 + 1000 ms, if it were read as seconds
    book.apply([fill("S1", TOKEN_A, "BUY", 1, 100.0, ts=T0)])
    assert len(book.apply([tick(TOKEN_A, 110.0, ts=s)])) == 1  # seconds: refused
    assert len(book.apply([tick(TOKEN_A, 111.0, ts=(T0 + 500) * 1000)])) == 1  # us: refused
    assert len(book.apply([tick(TOKEN_A, 112.0, ts=(T0 + 1500) * 1_000_000)])) == 1  # ns
    expect(position(book, pid("S1"), TOKEN_A), last_price=100.0)
    book.apply([tick(TOKEN_A, 110.0, ts=T0 + 1000)])
    expect(position(book, pid("S1"), TOKEN_A), last_price=110.0)
    # ISO: 2026-11-25T09:55:50.700Z = T0 + 700 ms -> older, ignored
    book.apply([tick(TOKEN_A, 113.0, ts="2026-11-25T09:55:50.700+00:00")])
    expect(position(book, pid("S1"), TOKEN_A), last_price=110.0)
    # ISO: 2026-11-25T09:55:53Z = T0 + 3000 ms -> newer, applies
    book.apply([tick(TOKEN_A, 114.0, ts="2026-11-25T09:55:53+00:00")])
    expect(position(book, pid("S1"), TOKEN_A), last_price=114.0, unrealized_pnl=14.0)


# ---------------------------------------------------------------------------------------
# Ordering within a batch: arrival order, not ts order
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True])
def test_fills_apply_in_arrival_order_not_ts_order(kind: str, split: bool) -> None:
    events = [
        fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 10),
        fill("S1", TOKEN_A, "SELL", 4, 110.0, ts=T0 + 1),
        fill("S1", TOKEN_A, "BUY", 6, 120.0, ts=T0 + 5),
    ]
    book = make_book(kind)
    for batch in ([e] for e in events) if split else [events]:
        book.apply(batch)
    # arrival order: long 10 @ 100; SELL 4 @ 110 -> realized 40, q 6 @ 100;
    # BUY 6 @ 120 -> avg (600 + 720)/12 = 110, q 12.
    # (ts order would give q 12 @ 103.33 with realized -40.)
    # mark = fill with the latest ts = 100 (T0+10): unrealized = (100 - 110) * 12 = -120
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=12,
        average_price=110.0,
        realized_pnl=40.0,
        last_price=100.0,
        unrealized_pnl=-120.0,
    )


# ---------------------------------------------------------------------------------------
# Duplicate fills
# ---------------------------------------------------------------------------------------


def test_duplicate_fill_ids_in_same_and_later_batches(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1, fill_id="f-1"),
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1, fill_id="f-1"),  # dup: ignored
            fill("S1", TOKEN_A, "BUY", 5, 130.0, ts=T0 + 2, fill_id="f-2"),
            # same fill_id from another source is a different fill
            fill("S1", TOKEN_A, "BUY", 2, 100.0, ts=T0 + 3, fill_id="f-1", source="live"),
        ]
    )
    # paper_S1: q 15, avg (1000 + 650)/15 = 110; live_S1: q 2 @ 100
    expect(position(book, pid("S1"), TOKEN_A), quantity=15, average_price=110.0)
    expect(position(book, pid("S1", "live"), TOKEN_A), quantity=2, average_price=100.0)

    book.apply(
        [
            # a re-delivery of f-2 with different content, newer ts, price and fee: ignored
            # entirely (no quantity, cash, fee or mark effect)
            fill("S1", TOKEN_A, "SELL", 15, 999.0, fee=7.0, ts=T0 + 10, fill_id="f-2"),
            fill("S1", TOKEN_A, "SELL", 5, 120.0, ts=T0 + 5, fill_id="f-3"),
            fill("S1", TOKEN_A, "BUY", 2, 100.0, ts=T0 + 3, fill_id="f-1", source="live"),  # dup
        ]
    )
    # paper_S1: SELL 5 @ 120 -> realized 5 * (120 - 110) = 50; q 10 @ 110
    # mark = latest fill ts among the applied fills = f-3 (T0+5) @ 120
    # unrealized = (120 - 110) * 10 = 100; fees 0
    # cash = 1e6 - 1000 - 650 + 600 = 998,950
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=10,
        average_price=110.0,
        realized_pnl=50.0,
        last_price=120.0,
        unrealized_pnl=100.0,
        fees=0.0,
        sell_quantity=5,
        buy_quantity=15,
    )
    expect(portfolio_row(book, pid("S1")), cash=998_950.0)
    # live_S1 unchanged by its duplicate: q 2, cash 1e6 - 200
    expect(position(book, pid("S1", "live"), TOKEN_A), quantity=2, unrealized_pnl=40.0)
    expect(portfolio_row(book, pid("S1", "live")), cash=999_800.0)


def test_duplicate_is_ignored_however_long_ago_it_was_seen(kind: str) -> None:
    # "seen before (in this or any earlier batch)": the spec sets no retention horizon.
    day_ms = 86_400_000
    book = make_book(kind)
    book.apply([fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0, fill_id="f-1")])
    book.apply([fill("S1", TOKEN_A, "BUY", 1, 100.0, ts=T0 + 2 * day_ms, fill_id="f-9")])
    book.apply([fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0, fill_id="f-1")])  # re-delivery
    # q = 10 + 1 = 11 (the re-delivered f-1 is ignored); cash = 1e6 - 1,100
    expect(position(book, pid("S1"), TOKEN_A), quantity=11, buy_value=1100.0)
    expect(portfolio_row(book, pid("S1")), cash=998_900.0)


def test_fills_without_fill_id_are_never_deduplicated(kind: str) -> None:
    book = make_book(kind)
    same = fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1)
    book.apply([same, dict(same)])
    book.apply([dict(same)])
    # three identical fills without fill_id all apply: q 30, cash 1e6 - 3000
    expect(position(book, pid("S1"), TOKEN_A), quantity=30, buy_value=3000.0)
    expect(portfolio_row(book, pid("S1")), cash=997_000.0)


# ---------------------------------------------------------------------------------------
# Invalid records
# ---------------------------------------------------------------------------------------


def _invalid_records() -> list[tuple[str, Any]]:
    base = fill("S1", TOKEN_A, "BUY", 1000, 1.0, ts=T0 + 50)

    def with_(**changes: Any) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(base))
        for key, value in changes.items():
            if key in ("strategy_id", "signal_type", "instrument_token"):
                event["original_signal"][key] = value
            else:
                event[key] = value
        return event

    def without(key: str) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(base))
        if key in ("strategy_id", "signal_type", "instrument_token"):
            del event["original_signal"][key]
        else:
            del event[key]
        return event

    return [
        ("qty_zero", with_(quantity=0)),
        ("qty_negative", with_(quantity=-5)),
        ("qty_fractional", with_(quantity=1.5)),
        ("price_nan", with_(fill_price=math.nan)),
        ("price_inf", with_(fill_price=math.inf)),
        ("price_zero", with_(fill_price=0.0)),
        ("price_negative", with_(fill_price=-1.0)),
        ("side_unknown", with_(signal_type="HOLD")),
        ("event_type_unknown", with_(event_type="order_cancel")),
        ("missing_quantity", without("quantity")),
        ("missing_fill_price", without("fill_price")),
        ("missing_strategy_id", without("strategy_id")),
        ("missing_instrument_token", without("instrument_token")),
        ("missing_signal_type", without("signal_type")),
        ("missing_original_signal", without("original_signal")),
        ("missing_event_type", without("event_type")),
        ("tick_price_zero", tick(TOKEN_A, 0.0, ts=T0 + 60)),
        ("tick_price_nan", tick(TOKEN_A, math.nan, ts=T0 + 60)),
        ("tick_price_negative", tick(TOKEN_A, -3.0, ts=T0 + 60)),
        ("tick_missing_token", {"event_type": "market_tick", "last_price": 1.0, "ts": T0 + 60}),
        (
            "tick_missing_price",
            {"event_type": "market_tick", "instrument_token": TOKEN_A, "ts": T0 + 60},
        ),
    ]


INVALID = _invalid_records()


@pytest.mark.parametrize("bad", [b for _, b in INVALID], ids=[n for n, _ in INVALID])
def test_each_invalid_record_is_rejected_alone(kind: str, bad: dict[str, Any]) -> None:
    book = make_book(kind)
    rejects = book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1),
            bad,
            tick(TOKEN_A, 105.0, ts=T0 + 2),
        ]
    )
    assert len(rejects) == 1, rejects
    # the invalid record had a huge quantity / later ts / odd price: had it applied, the
    # numbers below would differ. q 10 @ 100, mark 105, unrealized 50, cash 999,000
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=10,
        average_price=100.0,
        last_price=105.0,
        unrealized_pnl=50.0,
        fees=0.0,
    )
    assert [r["portfolio_id"] for r in book.portfolios()] == [pid("S1")]
    expect(portfolio_row(book, pid("S1")), cash=999_000.0)


def test_invalid_records_rejected_while_rest_applies(kind: str) -> None:
    book = make_book(kind)
    invalid = [b for _, b in INVALID]
    batch = [fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1)]
    batch += invalid[: len(invalid) // 2]
    batch += [tick(TOKEN_A, 105.0, ts=T0 + 2)]
    batch += invalid[len(invalid) // 2 :]
    batch += [fill("S1", TOKEN_A, "SELL", 4, 110.0, ts=T0 + 3)]
    rejects = book.apply(batch)
    assert len(rejects) == len(INVALID)
    # q 10 @ 100; SELL 4 @ 110 -> realized 40, q 6; mark 105 -> unrealized 30
    # cash = 1e6 - 1000 + 440 = 999,440
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=6,
        realized_pnl=40.0,
        unrealized_pnl=30.0,
        last_price=105.0,
    )
    expect(portfolio_row(book, pid("S1")), cash=999_440.0, equity=1_000_070.0)


def test_bad_json_in_raw_bytes_batch(kind: str) -> None:
    book = make_book(kind)
    batch = [
        json.dumps(fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1, fill_id="f-1")).encode(),
        b'{"event_type": "order_fill", "source": "paper", "quantity": 5',  # truncated
        b"not json at all",
        json.dumps(tick(TOKEN_A, 103.0, ts=T0 + 2)).encode(),
    ]
    rejects = book.apply(batch)
    assert len(rejects) == 2
    # q 10 @ 100, mark 103 -> unrealized 30
    expect(position(book, pid("S1"), TOKEN_A), quantity=10, unrealized_pnl=30.0)


def test_rejected_fill_leaves_no_trace_in_dedupe_or_marks(kind: str) -> None:
    # "Invalid records ... do not affect state": an invalid fill neither consumes its
    # fill_id nor moves the fill-price fallback mark.
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1, fill_id="f-1"),
            fill("S1", TOKEN_A, "BUY", 0, 500.0, ts=T0 + 99, fill_id="f-2"),  # invalid qty
        ]
    )
    expect(position(book, pid("S1"), TOKEN_A), quantity=10, last_price=100.0)
    book.apply([fill("S1", TOKEN_A, "BUY", 10, 102.0, ts=T0 + 2, fill_id="f-2")])
    # the valid f-2 applies: q 20, avg 101, mark 102 -> unrealized (102 - 101) * 20 = 20
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=20,
        average_price=101.0,
        last_price=102.0,
        unrealized_pnl=20.0,
    )


def test_optional_fields_may_be_absent(kind: str) -> None:
    book = make_book(kind)
    # no ts, no fee, no fill_id
    rejects = book.apply([fill("S1", TOKEN_A, "SELL", 7, 12.5)])
    assert rejects == []
    # short 7 @ 12.5: mark 12.5, cash = 1e6 + 87.5
    expect(
        position(book, pid("S1"), TOKEN_A),
        quantity=-7,
        average_price=12.5,
        last_price=12.5,
        fees=0.0,
        market_value=-87.5,
    )
    expect(portfolio_row(book, pid("S1")), cash=1_000_087.5, equity=1_000_000.0)


# ---------------------------------------------------------------------------------------
# Aggregates and AUM
# ---------------------------------------------------------------------------------------


def test_source_aggregates_and_aum(kind: str) -> None:
    book = make_book(kind)
    book.apply(
        [
            fill("S1", TOKEN_A, "BUY", 10, 100.0, ts=T0 + 1, fill_id="p1"),
            fill("S2", TOKEN_A, "SELL", 4, 102.0, ts=T0 + 2, fill_id="p2"),
            fill("S2", TOKEN_B, "BUY", 3, 50.0, ts=T0 + 3, fill_id="p3"),
            fill("S1", TOKEN_A, "BUY", 7, 101.0, ts=T0 + 4, fill_id="l1", source="live"),
            tick(TOKEN_A, 105.0, ts=T0 + 5),
            tick(TOKEN_B, 52.0, ts=T0 + 6),
            fill("S2", TOKEN_A, "BUY", 1, 100.0, ts=T0 + 7, fill_id="p4"),
        ]
    )
    # paper_S1: A +10 @ 100, unreal (105-100)*10 = 50, cash 999,000, equity 1,000,050
    # paper_S2: A short 4 @ 102, BUY 1 @ 100 covers -> realized 1*(100-102)*(-1) = 2, q -3
    #           A unreal (105-102)*(-3) = -9, mv -315
    #           B +3 @ 50: unreal (52-50)*3 = 6, mv 156
    #           cash = 1e6 + 408 - 150 - 100 = 1,000,158; equity = 1,000,158 - 315 + 156
    #           = 999,999
    # live_S1: A +7 @ 101, unreal 28, cash 999,293, equity 999,293 + 735 = 1,000,028
    expect(portfolio_row(book, "paper_S1"), equity=1_000_050.0, cash=999_000.0)
    expect(
        portfolio_row(book, "paper_S2"),
        equity=999_999.0,
        cash=1_000_158.0,
        total_realized_pnl=2.0,
        total_unrealized_pnl=-3.0,
    )
    expect(portfolio_row(book, "live_S1"), equity=1_000_028.0, cash=999_293.0)
    # portfolios() holds strategy portfolios only
    assert sorted(r["portfolio_id"] for r in book.portfolios()) == [
        "live_S1",
        "paper_S1",
        "paper_S2",
    ]

    # paper_Overall: net A = 10 - 3 = 7, B = 3; realized 2; unrealized 50 - 9 + 6 = 47
    # total_pnl 49; cash 999,000 + 1,000,158 = 1,999,158
    paper = book.portfolio("paper_Overall")
    expect(
        paper,
        portfolio_id="paper_Overall",
        cash=1_999_158.0,
        total_realized_pnl=2.0,
        total_unrealized_pnl=47.0,
        total_pnl=49.0,
    )
    expect(paper["positions"][str(TOKEN_A)], quantity=7, realized_pnl=2.0, unrealized_pnl=41.0)
    expect(paper["positions"][str(TOKEN_B)], quantity=3, unrealized_pnl=6.0)
    if "equity" in paper:  # 999,000 + 1,050 + 1,000,158 - 315 + 156 = 2,000,049
        expect(paper, equity=2_000_049.0)
    # live_Overall = live_S1
    live = book.portfolio("live_Overall")
    expect(live, cash=999_293.0, total_realized_pnl=0.0, total_unrealized_pnl=28.0, total_pnl=28.0)
    expect(live["positions"][str(TOKEN_A)], quantity=7, unrealized_pnl=28.0)
    assert str(TOKEN_B) not in live["positions"] or live["positions"][str(TOKEN_B)]["quantity"] == 0

    # aum: 1,000,050 + 999,999 + 1,000,028 = 3,000,077 (aggregates not double counted)
    aum = book.aum()
    assert aum["total"] == pytest.approx(3_000_077.0, rel=1e-12)
    assert aum["by_source"]["paper"] == pytest.approx(2_000_049.0, rel=1e-12)
    assert aum["by_source"]["live"] == pytest.approx(1_000_028.0, rel=1e-12)


def test_aum_with_one_source_only(kind: str) -> None:
    book = make_book(kind, starting_cash=10_000.0)
    book.apply(
        [fill("S9", TOKEN_A, "BUY", 2, 10.0, fee=1.0, ts=T0 + 1), tick(TOKEN_A, 11.0, ts=T0 + 2)]
    )
    # cash = 10,000 - 20 - 1 = 9,979; equity = 9,979 + 22 = 10,001
    aum = book.aum()
    assert aum["total"] == pytest.approx(10_001.0, rel=1e-12)
    assert aum["by_source"]["paper"] == pytest.approx(10_001.0, rel=1e-12)
    assert aum["by_source"].get("live", 0.0) == 0.0
