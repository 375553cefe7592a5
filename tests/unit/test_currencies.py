"""Currencies and inverse contracts: hand-worked cases from public contract specs.

Sources:
* BitMEX, "Inverse Futures Guide" (https://bitmex.com/app/inverseFuturesGuide) and
  "Inverse Perpetuals Guide" (https://www.bitmex.com/app/inversePerpetualsGuide): XBTUSD,
  multiplier 1 USD, "XBT Contract Value = Multiplier / XBTUSD Price", "PnL = # Contracts x
  Multiplier x (1/Entry Price - 1/Exit Price)", margin and P&L in Bitcoin. Their example:
  buy 100,000 contracts at 10,000, sell at 10,500.
* An FX-converted equity: a USD stock in an INR account, USDINR the rate (RBI reference
  rate convention: INR per 1 USD).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from pm_polars.engine.config import SettingError
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.instruments import InstrumentError, load_instruments

T0 = 1_700_000_000_000  # epoch ms

AAPL, XBTUSD, USDINR, BTCINR, NIFTY = 1, 2, 9, 7, 256265
INSTRUMENTS = pl.DataFrame({
    "instrument_token": [AAPL, XBTUSD, USDINR, BTCINR, NIFTY],
    "tradingsymbol": ["AAPL", "XBTUSD", "USDINR", "BTCINR", "NIFTY"],
    "multiplier": [1.0, 1.0, 1.0, 1.0, 1.0],
    "quote_currency": ["USD", "USD", "INR", "INR", "INR"],
    "base_currency": [None, "BTC", "USD", "BTC", None],
    "inverse": [False, True, False, False, False],
    "fx_pair": [None, None, "USDINR", "BTCINR", None],
})


def fill(fid: str, token: int, side: str, qty: float, price: float, fee: float = 0.0,
         strategy: str = "A", dt: int = 0) -> dict[str, Any]:
    return {"event_type": "order_fill", "source": "s", "fill_id": fid, "ts": T0 + dt,
            "quantity": qty, "fill_price": price, "fee": fee,
            "original_signal": {"strategy_id": strategy, "instrument_token": token,
                                "signal_type": side}}


def tick(token: int, price: float, dt: int = 1) -> dict[str, Any]:
    return {"event_type": "market_tick", "instrument_token": token, "last_price": price,
            "ts": T0 + dt}


def engine(**kw: Any) -> PortfolioEngine:
    return PortfolioEngine(starting_cash=1_000.0, instruments=INSTRUMENTS, **kw)


def row(frame: pl.DataFrame, **keys: Any) -> dict[str, Any]:
    out = frame.filter(**keys).to_dicts()
    assert len(out) == 1, out
    return out[0]


@pytest.mark.parametrize("cost_basis", ["average", "fifo"])
def test_bitmex_inverse_example(cost_basis: str) -> None:
    """BitMEX's example: long 100,000 XBTUSD at 10,000, exit at 10,500: 100,000 x 1 x
    (1/10,000 - 1/10,500) = 0.476190476... XBT; at entry the XBT contract value is
    100,000 / 10,000 = 10 XBT."""
    e = engine(cost_basis=cost_basis)
    e.apply([fill("1", XBTUSD, "BUY", 100_000, 10_000.0), tick(BTCINR, 5_000_000.0),
             tick(XBTUSD, 10_000.0)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    assert pos["pnl_currency"] == "BTC" and pos["inverse"]
    assert pos["market_value"] == pytest.approx(10.0, rel=1e-12)
    assert pos["average_price"] == pytest.approx(10_000.0, rel=1e-12)
    e.apply([tick(XBTUSD, 10_500.0, dt=2)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    want = 100_000 * (1 / 10_000 - 1 / 10_500)
    assert pos["unrealized_pnl"] == pytest.approx(want, rel=1e-12)
    assert pos["market_value"] == pytest.approx(100_000 / 10_500, rel=1e-12)
    e.apply([fill("2", XBTUSD, "SELL", 100_000, 10_500.0, dt=3)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    assert pos["realized_pnl"] == pytest.approx(want, rel=1e-12)
    assert pos["quantity"] == 0 and pos["unrealized_pnl"] == 0.0
    assert round(want, 8) == 0.47619048
    p = row(e.portfolios(), portfolio_id="s_A")
    # account INR: BTC at 5,000,000 INR; no notional changes hands on an inverse contract
    assert p["total_realized_pnl"] == pytest.approx(want * 5e6, rel=1e-12)
    assert p["cash"] == pytest.approx(1_000.0 + want * 5e6, rel=1e-12)
    assert p["equity"] == pytest.approx(p["cash"], rel=1e-12)


@pytest.mark.parametrize("cost_basis", ["average", "fifo"])
def test_inverse_short_and_fee_in_base(cost_basis: str) -> None:
    """Short 1,000 at 40,000, cover 400 at 50,000 then 600 at 32,000 (BitMEX's formula with a
    signed quantity); fees are money in BTC."""
    e = engine(cost_basis=cost_basis)
    e.apply([fill("1", XBTUSD, "SELL", 1_000, 40_000.0, fee=0.0001),
             fill("2", XBTUSD, "BUY", 400, 50_000.0, fee=0.00002),
             tick(BTCINR, 4_000_000.0)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    r1 = -400 * (1 / 40_000 - 1 / 50_000)
    assert pos["realized_pnl"] == pytest.approx(r1, rel=1e-12)
    assert pos["quantity"] == -600
    assert pos["fees"] == pytest.approx(0.00012, rel=1e-12)
    e.apply([fill("3", XBTUSD, "BUY", 600, 32_000.0, dt=2)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    r2 = -600 * (1 / 40_000 - 1 / 32_000)
    assert pos["realized_pnl"] == pytest.approx(r1 + r2, rel=1e-12)
    p = row(e.portfolios(), portfolio_id="s_A")
    assert p["net_pnl"] == pytest.approx((r1 + r2 - 0.00012) * 4e6, rel=1e-12)
    assert p["cash"] == pytest.approx(1_000.0 + (r1 + r2 - 0.00012) * 4e6, rel=1e-12)


def test_usd_stock_in_inr_account() -> None:
    """Buy 10 AAPL at 190 USD (fee 1 USD), mark 200, USDINR 83.25: unrealized 100 USD =
    8,325 INR; cash -1,901 USD; equity = 1,000 INR + (-1,901 + 2,000) x 83.25."""
    e = engine()
    e.apply([fill("1", AAPL, "BUY", 10, 190.0, fee=1.0), tick(AAPL, 200.0),
             tick(USDINR, 83.25), fill("2", NIFTY, "BUY", 2, 100.0)])
    pos = row(e.positions(), instrument_token=AAPL)
    assert (pos["pnl_currency"], pos["fx_rate"], pos["missing_rate"]) == ("USD", 83.25, False)
    assert pos["unrealized_pnl"] == pytest.approx(100.0)
    nifty = row(e.positions(), instrument_token=NIFTY)
    assert (nifty["pnl_currency"], nifty["fx_rate"]) == ("INR", 1.0)
    p = row(e.portfolios(), portfolio_id="s_A")
    assert p["total_unrealized_pnl"] == pytest.approx(8_325.0)
    assert p["total_fees"] == pytest.approx(83.25)
    assert p["cash"] == pytest.approx(1_000.0 - 200.0 - 1_901 * 83.25)
    assert p["market_value"] == pytest.approx(2_000 * 83.25 + 200.0)
    assert p["equity"] == pytest.approx(1_000.0 + 99 * 83.25)
    assert p["net_pnl"] == pytest.approx(99 * 83.25)
    # a new rate alone moves the totals (and names the portfolio as changed)
    result = e.apply([tick(USDINR, 84.0, dt=5)])
    assert result.changed_portfolios == ["s_A"]
    assert row(e.portfolios(), portfolio_id="s_A")["equity"] == pytest.approx(
        1_000.0 + 99 * 84.0)
    assert e.aum()["total"] == pytest.approx(1_000.0 + 99 * 84.0)


def test_reverse_pair_and_usd_account() -> None:
    """Account USD: the USDINR rate converts INR by its reciprocal."""
    e = engine(account_currency="USD")
    e.apply([fill("1", NIFTY, "BUY", 1, 166.0), tick(NIFTY, 249.0), tick(USDINR, 83.0)])
    pos = row(e.positions(), instrument_token=NIFTY)
    assert pos["pnl_currency"] == "INR" and pos["fx_rate"] == pytest.approx(1 / 83.0)
    p = row(e.portfolios(), portfolio_id="s_A")
    assert p["total_unrealized_pnl"] == pytest.approx(1.0)
    assert p["equity"] == pytest.approx(1_000.0 + 1.0)


def test_missing_rate_is_null_never_one() -> None:
    """No USDINR tick yet: AAPL's totals are unknown, and say so."""
    e = engine()
    e.apply([fill("1", AAPL, "BUY", 10, 190.0, strategy="A"),
             fill("2", NIFTY, "BUY", 1, 100.0, strategy="B")])
    pos = row(e.positions(), instrument_token=AAPL)
    assert pos["missing_rate"] and pos["fx_rate"] is None
    assert pos["market_value"] == pytest.approx(1_900.0)  # its own currency is known
    a = row(e.portfolios(), portfolio_id="s_A")
    assert a["missing_rate"]
    assert all(a[c] is None for c in ("cash", "equity", "total_realized_pnl", "market_value",
                                      "gross_exposure", "net_pnl", "m2m"))
    b = row(e.portfolios(), portfolio_id="s_B")
    assert not b["missing_rate"] and b["equity"] == pytest.approx(1_000.0)
    overall = row(e.portfolios(aggregates=True), portfolio_id="s_Overall")
    assert overall["missing_rate"] and overall["equity"] is None
    assert e.aum()["total"] is None
    doc = e.portfolio("s_A")
    assert doc["missing_rate"] is True and doc["equity"] is None
    assert doc["positions"][str(AAPL)]["pnl_currency"] == "USD"


def test_default_book_has_no_currency_columns() -> None:
    """Instruments without currency columns: today's frames and documents exactly."""
    e = PortfolioEngine(instruments=pl.DataFrame({"instrument_token": [1],
                                                  "multiplier": [50.0]}))
    e.apply([fill("1", 1, "BUY", 1, 100.0)])
    assert "pnl_currency" not in e.positions().columns
    assert "missing_rate" not in e.portfolios().columns
    assert load_instruments(None).columns == ["instrument_token", "tradingsymbol", "multiplier",
                                              "allow_negative_price"]  # no currency column


def test_fifo_lots_show_prices_of_inverse() -> None:
    e = engine(cost_basis="fifo")
    e.apply([fill("1", XBTUSD, "BUY", 100, 20_000.0), fill("2", XBTUSD, "BUY", 100, 25_000.0),
             fill("3", XBTUSD, "SELL", 150, 30_000.0)])
    lots = e.lots()
    assert lots["price"].to_list() == pytest.approx([25_000.0])
    assert lots["quantity"].to_list() == [50]
    pos = row(e.positions(), instrument_token=XBTUSD)
    want = 100 * (1 / 20_000 - 1 / 30_000) + 50 * (1 / 25_000 - 1 / 30_000)
    assert pos["realized_pnl"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad", ["usd", "US", "INRR", "", 5])
def test_account_currency_setting_refused(bad: Any) -> None:
    with pytest.raises(SettingError, match="account_currency"):
        PortfolioEngine(account_currency=bad)


@pytest.mark.parametrize(("column", "value"), [("quote_currency", "us"),
                                               ("fx_pair", "USD-INR"),
                                               ("base_currency", None)])
def test_bad_currency_columns_refused(column: str, value: Any) -> None:
    table = INSTRUMENTS.with_columns(
        pl.when(pl.col("instrument_token") == XBTUSD).then(pl.lit(value, pl.String))
        .otherwise(pl.col(column)).alias(column))
    with pytest.raises(InstrumentError, match=column):
        load_instruments(table)


def test_snapshot_keeps_account_currency(tmp_path: Any) -> None:
    e = engine(account_currency="USD")
    e.apply([fill("1", NIFTY, "BUY", 1, 166.0), tick(USDINR, 83.0)])
    back = PortfolioEngine.restore(e.snapshot().write(tmp_path / "snap"))
    assert back.config.account_currency == "USD"
    assert back.portfolios().equals(e.portfolios())


def test_realized_lots_refuses_inverse_contracts() -> None:
    from pm_polars.engine.lot_matches import realized_lots

    events = [fill("1", XBTUSD, "BUY", 100, 20_000.0), fill("2", XBTUSD, "SELL", 100, 30_000.0)]
    with pytest.raises(ValueError, match="instruments: .*inverse contracts"):
        realized_lots(events, INSTRUMENTS)
    usd = realized_lots([fill("1", AAPL, "BUY", 10, 190.0), fill("2", AAPL, "SELL", 10, 200.0)],
                        INSTRUMENTS)
    assert usd["realized_pnl"].to_list() == [100.0]  # in USD, AAPL's quote currency


def test_inverse_day_figures_across_a_roll() -> None:
    """Long 1,000 XBTUSD @ 40,000, day closes at 50,000; next day marked at 40,000: the
    carried position's m2m is 1,000 x (1/50,000 - 1/40,000) = -0.005 BTC (BitMEX's formula
    from the previous close), the lifetime unrealized 0."""
    day = 86_400_000
    e = engine()
    e.apply([fill("1", XBTUSD, "BUY", 1_000, 40_000.0), tick(XBTUSD, 50_000.0, dt=5),
             tick(BTCINR, 4_000_000.0, dt=5)])
    first = row(e.positions(), instrument_token=XBTUSD)
    assert first["m2m"] == pytest.approx(1_000 * (1 / 40_000 - 1 / 50_000), rel=1e-12)
    e.apply([tick(XBTUSD, 40_000.0, dt=day)])
    pos = row(e.positions(), instrument_token=XBTUSD)
    assert (pos["overnight_quantity"], pos["prev_close"]) == (1_000, 50_000.0)
    assert pos["overnight_average_price"] == pytest.approx(40_000.0, rel=1e-12)
    want = 1_000 * (1 / 50_000 - 1 / 40_000)
    assert pos["m2m"] == pytest.approx(want, rel=1e-12)
    assert pos["day_carried_pnl"] == pytest.approx(want, rel=1e-12)
    assert pos["unrealized_pnl"] == pytest.approx(0.0, abs=1e-15)
    p = row(e.portfolios(), portfolio_id="s_A")
    assert p["m2m"] == pytest.approx(want * 4e6, rel=1e-12)


def test_overall_document_of_inverse_positions() -> None:
    """Two strategies long XBTUSD at 20,000 and 30,000 (100 each): the aggregate's average
    entry is the harmonic one, 200 / (100/20,000 + 100/30,000) = 24,000."""
    e = engine()
    e.apply([fill("1", XBTUSD, "BUY", 100, 20_000.0, strategy="A"),
             fill("2", XBTUSD, "BUY", 100, 30_000.0, strategy="B"),
             tick(BTCINR, 4_000_000.0)])
    pos = e.portfolio("s_Overall")["positions"][str(XBTUSD)]
    assert pos["quantity"] == 200 and pos["pnl_currency"] == "BTC"
    assert pos["average_price"] == pytest.approx(24_000.0, rel=1e-12)


def test_bid_ask_marks_in_another_currency_and_on_an_inverse_contract() -> None:
    """``mark="bid_ask"`` with conversion: a USD long at its bid, a USD short at its ask,
    converted at USDINR; an inverse long at the bid on the line price (BitMEX: P&L in BTC
    = contracts x multiplier x (1/entry - 1/exit), the exit being the bid a long sells at)."""
    e = engine(mark="bid_ask")
    e.apply([fill("a", AAPL, "BUY", 10, 200.0), fill("b", AAPL, "SELL", 5, 100.0, strategy="B"),
             fill("x", XBTUSD, "BUY", 100_000, 10_000.0, strategy="C"),
             tick(USDINR, 83.0),
             {**tick(AAPL, 210.0, dt=2), "bid": 209.0, "ask": 211.0},
             {**tick(XBTUSD, 10_600.0, dt=2), "bid": 10_500.0, "ask": 10_700.0},
             {**tick(BTCINR, 5_000_000.0, dt=2)}])
    pos = e.positions()
    long_ = row(pos, portfolio_id="s_A", instrument_token=AAPL)
    assert long_["unrealized_pnl"] == pytest.approx((209.0 - 200.0) * 10)  # USD, at the bid
    assert long_["market_value"] == pytest.approx(10 * 209.0)
    assert long_["last_price"] == 210.0  # the last price is still shown
    short = row(pos, portfolio_id="s_B", instrument_token=AAPL)
    assert short["unrealized_pnl"] == pytest.approx((211.0 - 100.0) * -5)  # at the ask
    inv = row(pos, portfolio_id="s_C", instrument_token=XBTUSD)
    btc = 100_000 * 1.0 * (1 / 10_000.0 - 1 / 10_500.0)  # BitMEX's example, exit at the bid
    assert inv["unrealized_pnl"] == pytest.approx(btc)
    assert inv["market_value"] == pytest.approx(100_000 / 10_500.0)
    pf = e.portfolios()
    assert row(pf, portfolio_id="s_A")["total_unrealized_pnl"] == pytest.approx(90.0 * 83.0)
    assert row(pf, portfolio_id="s_B")["total_unrealized_pnl"] == pytest.approx(-555.0 * 83.0)
    assert row(pf, portfolio_id="s_C")["total_unrealized_pnl"] == pytest.approx(btc * 5e6)
    last = engine()  # the same book under mark="last": the last prices
    last.apply([fill("a", AAPL, "BUY", 10, 200.0), tick(USDINR, 83.0),
                {**tick(AAPL, 210.0, dt=2), "bid": 209.0, "ask": 211.0}])
    assert row(last.positions(), portfolio_id="s_A")["unrealized_pnl"] == pytest.approx(100.0)
