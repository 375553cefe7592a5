"""Bid/ask marks (``mark="bid_ask"``) and ``allow_negative_price`` (issue 13).

Hand-worked cases first (every number by hand in the comments), then the engine against the
scalar reference (``tests/reference.py``) in both mark modes with negative prices.

The negative-price future is NYMEX WTI light sweet crude (CL, 1,000 barrels a contract),
May 2020 contract (CLK20): it settled at 18.27 USD/bbl on Friday 17 April 2020 and at
-37.63 USD/bbl on Monday 20 April 2020, the first negative settlement of the contract
(CME Group settlement prices; U.S. EIA, "Today in Energy", 21 April 2020).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ReferenceBook, assert_books_match, fill, make_book, tick

from pm_polars.daemon.config import ConfigError, Settings
from pm_polars.engine.config import EngineConfig, SettingError
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.instruments import InstrumentError, load_instruments

T0 = 1_795_600_000_000  # ms
WTI = 9  # CL May 2020: multiplier 1000 bbl, allow_negative_price
INSTRUMENTS = [
    {"instrument_token": 7, "tradingsymbol": "X", "multiplier": 1.0,
     "allow_negative_price": False},
    {"instrument_token": WTI, "tradingsymbol": "CLK20", "multiplier": 1000.0,
     "allow_negative_price": True},
]


def _row(eng: PortfolioEngine, pid: str, token: int) -> dict[str, Any]:
    rows = eng.positions([pid]).filter(pl.col("instrument_token") == token).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_long_at_the_bid_short_at_the_ask_fallback_to_last() -> None:
    events = [
        fill("L", 7, "BUY", 10, 100.0, ts=T0, fill_id="1"),
        fill("S", 7, "SELL", 4, 102.0, ts=T0, fill_id="2"),
        fill("L", 8, "BUY", 3, 50.0, ts=T0, fill_id="3"),
        fill("S", 8, "SELL", 2, 51.0, ts=T0, fill_id="4"),
        tick(7, 101.0, T0 + 1, bid=100.5, ask=101.5),
        tick(8, 50.5, T0 + 1, bid=50.25),  # no ask: the short falls back to the last price
    ]
    eng = PortfolioEngine(mark="bid_ask")
    eng.apply(events)
    long7, short7 = _row(eng, "paper_L", 7), _row(eng, "paper_S", 7)
    # long 10 @ 100 at the bid 100.5: (100.5 - 100) x 10 = 5.0; value 10 x 100.5 = 1005
    assert (long7["last_price"], long7["unrealized_pnl"], long7["market_value"]) == (
        101.0, 5.0, 1005.0)
    # short 4 @ 102 at the ask 101.5: (101.5 - 102) x -4 = 2.0; value -4 x 101.5 = -406
    assert (short7["unrealized_pnl"], short7["market_value"]) == (2.0, -406.0)
    # long 3 @ 50 at the bid 50.25: 0.75; short 2 @ 51 at last 50.5 (no ask): 1.0
    assert _row(eng, "paper_L", 8)["unrealized_pnl"] == 0.75
    assert _row(eng, "paper_S", 8)["unrealized_pnl"] == 1.0
    # equity = cash + market value: L paid 1000 + 150, holds 1005 + 150.75
    pf = eng.portfolios(["paper_L"]).row(0, named=True)
    assert pf["equity"] == 1_000_000.0 - 1150.0 + 1005.0 + 150.75
    # "last" ignores the quote: (101 - 100) x 10 = 10, (101 - 102) x -4 = 4
    last = PortfolioEngine()
    last.apply(events)
    assert _row(last, "paper_L", 7)["unrealized_pnl"] == 10.0
    assert _row(last, "paper_S", 7)["unrealized_pnl"] == 4.0


def test_one_tick_wins_for_its_price_and_quote_and_crossed_quotes_are_accepted() -> None:
    eng = PortfolioEngine(mark="bid_ask")
    eng.apply([fill("L", 7, "BUY", 2, 100.0, ts=T0, fill_id="1"),
               tick(7, 101.0, T0 + 2, bid=100.0, ask=101.0),
               tick(7, 99.0, T0 + 1, bid=98.0, ask=99.0)])  # older: loses with its quote
    assert _row(eng, "paper_L", 7)["unrealized_pnl"] == 0.0  # bid 100.0 - 100
    result = eng.apply([tick(7, 103.0, T0 + 3)])  # newer, no quote: the old bid goes too
    assert result.rejects.height == 0
    assert _row(eng, "paper_L", 7)["unrealized_pnl"] == 6.0  # (103 - 100) x 2
    crossed = eng.apply([tick(7, 104.0, T0 + 4, bid=104.5, ask=104.25)])  # bid > ask
    assert crossed.rejects.height == 0
    assert _row(eng, "paper_L", 7)["unrealized_pnl"] == 9.0  # (104.5 - 100) x 2
    marks = eng.snapshot().marks.row(0, named=True)
    assert (marks["tick_price"], marks["tick_bid"], marks["tick_ask"]) == (104.0, 104.5, 104.25)


def test_bad_quotes_are_refused_naming_the_field() -> None:
    eng = PortfolioEngine(mark="bid_ask")
    out = eng.apply([tick(7, 100.0, T0, bid=float("nan")), tick(7, 100.0, T0, ask=-1.0),
                     tick(7, 100.0, T0, bid=0.0)])
    assert out.rejects["reason"].to_list() == [
        "bid: must be finite, got NaN", "ask: must be > 0, got -1.0", "bid: must be > 0, got 0.0"]


@pytest.mark.parametrize("cost_basis", ["average", "fifo"])
def test_negative_price_future_by_hand(cost_basis: str) -> None:
    """Long 2 CL May 2020 at 18.27 (17 Apr), marked at -37.63 (20 Apr), one sold there,
    one bought back at -37.63: P&L by hand (1,000 bbl a contract)."""
    eng = PortfolioEngine(instruments=pl.DataFrame(INSTRUMENTS), cost_basis=cost_basis)
    out = eng.apply([fill("W", WTI, "BUY", 2, 18.27, ts=T0, fill_id="1"),
                     tick(WTI, -37.63, T0 + 1)])
    assert out.rejects.height == 0
    row = _row(eng, "paper_W", WTI)
    # unrealized (-37.63 - 18.27) x 2 x 1000 = -111,800; value 2 x -37.63 x 1000 = -75,260
    assert row["unrealized_pnl"] == pytest.approx(-111_800.0, abs=0.005)
    assert row["market_value"] == pytest.approx(-75_260.0, abs=0.005)
    eng.apply([fill("W", WTI, "SELL", 1, -37.63, ts=T0 + 2, fill_id="2")])
    row = _row(eng, "paper_W", WTI)
    # realized (-37.63 - 18.27) x 1 x 1000 = -55,900 (one lot at 18.27 either way)
    assert row["realized_pnl"] == pytest.approx(-55_900.0, abs=0.005)
    assert row["unrealized_pnl"] == pytest.approx(-55_900.0, abs=0.005)
    eng.apply([fill("W", WTI, "BUY", 1, -37.63, ts=T0 + 3, fill_id="3")])
    row = _row(eng, "paper_W", WTI)
    # average: (18.27 - 37.63) / 2 = -9.68; FIFO lots 18.27 and -37.63 average the same
    assert row["average_price"] == pytest.approx(-9.68, abs=1e-9)
    # selling at a negative price pays: cash 1e6 - 36,540 - 37,630 (sell) + 37,630 (buy)
    cash = eng.portfolios(["paper_W"]).row(0, named=True)["cash"]
    assert cash == pytest.approx(1e6 - 36_540.0 - 37_630.0 + 37_630.0, abs=0.005)


def test_non_positive_prices_refused_unless_the_instrument_allows_them() -> None:
    default = PortfolioEngine().apply([fill("W", 7, "BUY", 1, -5.0, ts=T0)])
    assert default.rejects["reason"].to_list() == ["fill_price: must be > 0, got -5.0"]
    eng = PortfolioEngine(instruments=pl.DataFrame(INSTRUMENTS))
    out = eng.apply([fill("W", 7, "BUY", 1, -5.0, ts=T0, fill_id="1"),
                     fill("W", 7, "BUY", 1, 0.0, ts=T0, fill_id="2"),
                     tick(7, -1.0, T0), tick(7, 5.0, T0, ask=-2.5),
                     fill("W", WTI, "BUY", 1, 0.0, ts=T0, fill_id="3"), tick(WTI, -1.5, T0)])
    # the same reasons the decoder gives (there the wire's own spelling of the number)
    assert out.rejects.select("seq", "reason").rows() == [
        (0, "fill_price: must be > 0, got -5.0"), (1, "fill_price: must be > 0, got 0.0"),
        (2, "last_price: must be > 0, got -1.0"), (3, "ask: must be > 0, got -2.5")]
    assert eng.positions().get_column("instrument_token").to_list() == [WTI]
    assert b'"ask": -2.5' in out.rejects.get_column("raw")[3]  # the wire JSON, quote too


def test_instruments_allow_negative_price_column() -> None:
    text = pl.DataFrame({"instrument_token": [1, 2, 3], "multiplier": [1, 1, 1],
                         "allow_negative_price": ["TRUE", "no", None]})
    assert load_instruments(text)["allow_negative_price"].to_list() == [True, False, False]
    assert load_instruments(pl.DataFrame({"instrument_token": [1], "multiplier": [1]}))[
        "allow_negative_price"].to_list() == [False]
    with pytest.raises(InstrumentError, match="allow_negative_price"):
        load_instruments(text.with_columns(pl.lit("maybe").alias("allow_negative_price")))


def test_mark_settings_name_the_setting() -> None:
    with pytest.raises(SettingError, match="setting mark: got 'mid'"):
        EngineConfig(mark="mid")
    with pytest.raises(ConfigError, match="--mark"):
        Settings(bootstrap_servers="localhost:9092", mark="mid")
    assert Settings(bootstrap_servers="localhost:9092",
                    mark="bid_ask").engine_config().mark == "bid_ask"


def test_snapshot_keeps_the_mark_and_the_quote(tmp_path: Any) -> None:
    eng = PortfolioEngine(mark="bid_ask")
    eng.apply([fill("L", 7, "BUY", 2, 100.0, ts=T0), tick(7, 101.0, T0 + 1, bid=100.5)])
    back = PortfolioEngine.restore(eng.snapshot().write(tmp_path / "snap"))
    assert back.config.mark == "bid_ask"
    assert back.positions().equals(eng.positions())


# ---- the engine against the scalar reference -------------------------------------------

TOKENS = [7, 8, WTI]
quote = st.one_of(st.none(), st.floats(min_value=0.05, max_value=1e4))
price = st.floats(min_value=0.05, max_value=1e4)
wti_price = st.floats(min_value=-100.0, max_value=100.0)  # zero and negative allowed


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        token = draw(st.sampled_from(TOKENS))
        p = draw(wti_price if token == WTI else price)
        ts = T0 + draw(st.integers(min_value=0, max_value=50))  # ties
        if draw(st.booleans()):
            events.append(tick(token, p, ts, bid=draw(quote), ask=draw(quote)))
        else:
            events.append(fill(draw(st.sampled_from(["A", "B"])), token,
                               draw(st.sampled_from(["BUY", "SELL"])),
                               draw(st.integers(min_value=1, max_value=50)), p, ts=ts,
                               fill_id=f"f{i}"))
    if draw(st.booleans()):
        events.append(fill("A", 7, "BUY", 1, -1.0, ts=T0, fill_id="neg"))  # refused
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=streams(), mark=st.sampled_from(["last", "bid_ask"]),
       cost_basis=st.sampled_from(["average", "fifo"]))
def test_engine_matches_reference_in_both_mark_modes(
    events: list[dict[str, Any]], mark: str, cost_basis: str
) -> None:
    ref = ReferenceBook(instruments=INSTRUMENTS, cost_basis=cost_basis, mark=mark)
    eng = make_book("engine", instruments=INSTRUMENTS, cost_basis=cost_basis, mark=mark)
    assert len(eng.apply(events)) == len(ref.apply(events))
    assert_books_match(eng, ref)


def test_intraday_equity_and_eod_value_each_side_of_the_quote(tmp_path: Any) -> None:
    """The archive's analytics value positions as the engine does under ``bid_ask``."""
    from history_helpers import D1, D2, at, batch
    from history_helpers import fill as hfill
    from history_helpers import tick as htick

    from pm_polars import analytics as an
    from pm_polars.archive.config import save_engine_config
    from pm_polars.archive.writer import ArchiveWriter
    from pm_polars.eod import run_eod

    def quoted(token: int, last: float, ts: int, bid: float | None,
               ask: float | None) -> dict[str, Any]:
        return {**htick(token, last, ts), "bid": bid, "ask": ask}

    eng = PortfolioEngine(starting_cash=1e6, mark="bid_ask")
    save_engine_config(tmp_path, eng)
    days = {D1: [hfill("S1", 7, "BUY", 10, 100.0, at(D1, 4), fill_id="l"),
                 hfill("S2", 7, "SELL", 4, 102.0, at(D1, 4, 1), fill_id="s"),
                 quoted(7, 101.0, at(D1, 9), 100.5, 101.5)],
            D2: [quoted(7, 103.0, at(D2, 5), 102.5, None)]}  # no ask: shorts at last
    with ArchiveWriter(tmp_path, fsync=False) as w:
        for events in days.values():
            w.submit(eng.apply_decoded(batch(events)))
    for day in days:
        run_eod(tmp_path, day)
    curve = an.intraday_equity(tmp_path, D2, every="5m")
    last = curve.filter(pl.col("time") == pl.col("time").max()).sort("portfolio_id")
    # S1: cash 1e6 - 1000 + 10 x bid 102.5; S2: cash 1e6 + 408 - 4 x last 103 (no ask)
    assert last["equity"].to_list() == [1_000_025.0, 999_996.0]
    assert eng.portfolios()["equity"].to_list() == [1_000_025.0, 999_996.0]
