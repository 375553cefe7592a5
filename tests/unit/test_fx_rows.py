"""The daemon's publish path of a currency book (``publish.fx_rows`` through ``model_rows``)
renders what ``engine.fxviews`` shows: every document field, for hand-picked and random books.

Instruments and sources as ``test_currencies`` (BitMEX XBTUSD inverse guide; a USD stock in
an INR account at the USDINR rate)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.documents import same
from test_currencies import AAPL, BTCINR, INSTRUMENTS, NIFTY, USDINR, XBTUSD, fill, tick

from pm_polars.engine.engine import PortfolioEngine
from pm_polars.publish.fx_rows import FxFacts
from pm_polars.publish.model_rows import render
from pm_polars.publish.state_rows import StateRows


def published(e: PortfolioEngine) -> dict[str, dict[str, Any]]:
    """What the daemon writes under ``portfolio:{id}`` for every portfolio of ``e``."""
    fx = FxFacts.of(e.state.instruments, e.config.account_currency)
    assert fx is not None
    pids = e.portfolio_ids()
    rows = StateRows.fetch(e.state, pids, fx.rate_tokens)
    out = {}
    for pid, (row, held) in render(rows, pids, e.config.quantity_scale, e.config.mark,
                                   fx).items():
        doc = dict(row)
        doc["positions"] = {str(p["instrument_token"]): {k: p[k] for k in p if k not in (
            "portfolio_id", "_atoms")} for p in held}
        out[pid] = json.loads(json.dumps(doc))
    return out


def check(e: PortfolioEngine) -> dict[str, dict[str, Any]]:
    got = published(e)
    want = json.loads(json.dumps(e.portfolio_documents(e.portfolio_ids())))
    assert list(got) == list(want)
    for pid in want:
        same(got[pid], want[pid], pid)
    return got


def test_inr_book_with_usd_stock_and_inverse_contract() -> None:
    """Long 10 AAPL at 150 USD marked 160 at USDINR 83; long 100,000 XBTUSD at 10,000 marked
    10,500 at BTCINR 5,000,000; a NIFTY position in INR. By hand: AAPL unrealized 100 USD =
    8,300 INR; XBTUSD unrealized 100,000 x (1/10,000 - 1/10,500) = 0.476190... BTC =
    2,380,952.38 INR; equity adds the AAPL value 1,600 USD (132,800 INR) and the XBTUSD
    unrealized, not its face value."""
    e = PortfolioEngine(starting_cash=1_000.0, instruments=INSTRUMENTS,
                        account_currency="INR")
    e.apply([fill("1", AAPL, "BUY", 10, 150.0, fee=1.0), tick(USDINR, 83.0),
             fill("2", XBTUSD, "BUY", 100_000, 10_000.0), tick(BTCINR, 5_000_000.0),
             fill("3", NIFTY, "BUY", 2, 200.0), tick(AAPL, 160.0), tick(XBTUSD, 10_500.0),
             tick(NIFTY, 210.0)])
    doc = check(e)["s_A"]
    btc = 100_000 * (1 / 10_000 - 1 / 10_500)
    assert doc["positions"][str(XBTUSD)]["unrealized_pnl"] == pytest.approx(btc, rel=1e-12)
    assert doc["positions"][str(XBTUSD)]["average_price"] == pytest.approx(10_000.0)
    assert doc["positions"][str(XBTUSD)]["market_value"] == pytest.approx(100_000 / 10_500)
    assert doc["positions"][str(AAPL)]["fx_rate"] == 83.0
    assert doc["total_unrealized_pnl"] == pytest.approx(8_300 + btc * 5e6 + 20, rel=1e-12)
    cash = 1_000.0 - 400.0 + (-1_500.0 - 1.0) * 83.0  # INR cash + USD cash converted
    assert doc["cash"] == pytest.approx(cash, rel=1e-12)
    assert doc["equity"] == pytest.approx(cash + 420.0 + 1_600 * 83.0 + btc * 5e6, rel=1e-12)
    assert doc["total_fees"] == pytest.approx(83.0) and doc["missing_rate"] is False


def test_missing_rate_nulls_the_totals() -> None:
    e = PortfolioEngine(starting_cash=1_000.0, instruments=INSTRUMENTS,
                        account_currency="INR")
    e.apply([fill("1", XBTUSD, "SELL", 1_000, 20_000.0), fill("2", NIFTY, "BUY", 1, 100.0)])
    doc = check(e)["s_A"]
    assert doc["missing_rate"] is True and doc["equity"] is None and doc["cash"] is None
    assert doc["open_positions"] == 2
    assert doc["positions"][str(XBTUSD)]["missing_rate"] is True
    assert doc["positions"][str(XBTUSD)]["fx_rate"] is None


_TOKENS = [AAPL, XBTUSD, USDINR, BTCINR, NIFTY]
_event = st.one_of(
    st.tuples(st.just("fill"), st.sampled_from([AAPL, XBTUSD, NIFTY]),
              st.sampled_from(["BUY", "SELL"]), st.integers(1, 50),
              st.floats(50.0, 500.0).map(lambda x: round(x, 2)), st.sampled_from("AB"),
              st.sampled_from([0.0, 0.5])),
    st.tuples(st.just("tick"), st.sampled_from(_TOKENS),
              st.floats(50.0, 500.0).map(lambda x: round(x, 2))),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_event, min_size=1, max_size=12), st.sampled_from(["last", "bid_ask"]))
def test_rendering_equals_fxviews(events: list[tuple[Any, ...]], mark: str) -> None:
    e = PortfolioEngine(starting_cash=1_000.0, instruments=INSTRUMENTS,
                        account_currency="INR", mark=mark)
    batch = []
    for i, ev in enumerate(events):
        if ev[0] == "fill":
            _, tok, side, qty, price, strategy, fee = ev
            batch.append(fill(str(i), tok, side, qty, price, fee=fee, strategy=strategy, dt=i))
        else:
            t = tick(ev[1], ev[2], dt=i)
            if mark == "bid_ask":
                t.update(bid=ev[2] - 0.5, ask=ev[2] + 0.5)
            batch.append(t)
    e.apply(batch)
    if e.portfolio_ids():
        check(e)
