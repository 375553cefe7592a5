"""Fees paid in the base asset (``fee_currency = "base"``), hand-worked from Binance's spot
fee FAQ ("What is Binance Spot Trading Fee and How to Calculate",
https://www.binance.com/en-GB/support/faq/e85d6e703b874674840122196b89780a): "Trading fees
are always charged in the asset you receive ... buy 10 ETH for 3,452.55 USDT each: trading
fee = 10 ETH x 0.1% = 0.01 ETH ... sell 10 ETH ...: fee = (10 ETH x 3,452.55 USDT) x 0.1%"
(in USDT, the quote: an ordinary fee)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from pm_polars.engine.engine import PortfolioEngine

ETH = 42


def fill(fid: str, side: str, qty: float, price: float, fee: float = 0.0,
         fee_currency: str | None = None, token: int = ETH) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "order_fill", "source": "s", "fill_id": fid, "ts": 1_700_000_000_000,
        "quantity": qty, "fill_price": price, "fee": fee,
        "original_signal": {"strategy_id": "A", "instrument_token": token,
                            "signal_type": side}}
    if fee_currency is not None:
        event["fee_currency"] = fee_currency
    return event


def only(frame: pl.DataFrame) -> dict[str, Any]:
    assert frame.height == 1
    return frame.row(0, named=True)


@pytest.mark.parametrize("cost_basis", ["average", "fifo"])
def test_binance_buy_fee_in_eth(cost_basis: str) -> None:
    """Buy 10 ETH at 3,452.55 with 0.01 ETH fee: 9.99 ETH held for 34,525.50 paid (the fee
    is not in ``fees`` nor cash); sell the 9.99 at 3,500 with a quote fee of 0.1%
    (34.965): realized 9.99 x 3,500 - 34,525.50 = 439.50, net 404.535, cash likewise."""
    e = PortfolioEngine(starting_cash=50_000.0, quantity_decimals=8, cost_basis=cost_basis)
    r = e.apply([fill("1", "BUY", 10, 3_452.55, fee=0.01, fee_currency="base")])
    assert r.rejects.height == 0
    pos = only(e.positions())
    assert pos["quantity"] == 9.99 and pos["fees"] == 0.0
    assert pos["average_price"] == pytest.approx(34_525.5 / 9.99, rel=1e-12)
    assert only(e.portfolios())["cash"] == pytest.approx(50_000.0 - 34_525.5, abs=1e-9)
    e.apply([fill("2", "SELL", 9.99, 3_500.0, fee=34.965, fee_currency="quote")])
    pos = only(e.positions())
    assert pos["quantity"] == 0
    assert round(pos["realized_pnl"], 2) == 439.50
    assert pos["realized_pnl"] == pytest.approx(439.5, abs=1e-8)
    assert pos["fees"] == pytest.approx(34.965)
    p = only(e.portfolios())
    assert p["net_pnl"] == pytest.approx(404.535, abs=1e-8)
    assert p["cash"] == pytest.approx(50_000.0 + 404.535, abs=1e-8)


def test_sell_fee_in_base_gives_up_more_units() -> None:
    """Sell 2 of 5 held with a 0.002 base fee: 2.002 units leave for 2 x 110 received."""
    e = PortfolioEngine(starting_cash=0.0, quantity_decimals=3)
    e.apply([fill("1", "BUY", 5, 100.0),
             fill("2", "SELL", 2, 110.0, fee=0.002, fee_currency="base")])
    pos = only(e.positions())
    assert pos["quantity"] == 2.998
    # 2.002 units at the effective price 220 / 2.002 against the average 100
    assert pos["realized_pnl"] == pytest.approx(220.0 - 2.002 * 100.0, rel=1e-12)
    assert only(e.portfolios())["cash"] == pytest.approx(-500.0 + 220.0, abs=1e-9)


def test_integer_base_fee_at_zero_decimals() -> None:
    e = PortfolioEngine(starting_cash=0.0)
    r = e.apply([fill("1", "BUY", 10, 50.0, fee=1, fee_currency="base")])
    assert r.rejects.height == 0
    pos = only(e.positions())
    assert (pos["quantity"], pos["fees"]) == (9, 0.0)
    assert pos["average_price"] == pytest.approx(500.0 / 9)


def test_unrepresentable_base_fee_refused_with_reason() -> None:
    e = PortfolioEngine(starting_cash=0.0)
    r = e.apply([fill("1", "BUY", 10, 50.0, fee=0.5, fee_currency="base"),
                 fill("2", "BUY", 10, 50.0, fee=0.5)])
    assert r.rejects["reason"].to_list() == [
        "fee: a base-currency fee (fee_currency 'base') is a quantity of the asset and must "
        "be a whole number of units (quantity_decimals = 0; raise it to book this fee), got 0.5"]
    assert json.loads(r.rejects["raw"][0])["fee_currency"] == "base"  # the event as sent
    assert only(e.positions())["quantity"] == 10  # the quote-fee fill is booked
    e8 = PortfolioEngine(starting_cash=0.0, quantity_decimals=2)
    r = e8.apply([fill("1", "BUY", 1, 50.0, fee=0.001, fee_currency="base"),
                  fill("2", "BUY", 1, 50.0, fee=1, fee_currency="base")])
    assert [x.split(",")[0] for x in r.rejects["reason"].to_list()] == [
        "fee: a base-currency fee (fee_currency 'base') is a quantity of the asset and must "
        "be a whole number of 10^-2 units (quantity_decimals = 2; raise it to book this fee)",
        "fee: a base-currency fee must be less than the quantity bought"]
    assert e8.positions().height == 0
    # refused fills are not remembered: the corrected re-send books
    assert e8.apply([fill("2", "BUY", 1, 50.0, fee=0.01, fee_currency="base")]).rejects.height == 0


def test_bad_fee_currency_rejected_by_decode() -> None:
    e = PortfolioEngine()
    r = e.apply([fill("1", "BUY", 1, 50.0, fee=1.0, fee_currency="ETH")])
    assert r.rejects["reason"].to_list() == ["fee_currency: must be 'quote' or 'base', got 'ETH'"]


def test_base_fee_on_inverse_is_money_in_base() -> None:
    ins = pl.DataFrame({"instrument_token": [ETH], "multiplier": [1.0],
                        "base_currency": ["BTC"], "inverse": [True]})
    e = PortfolioEngine(instruments=ins, quantity_decimals=2)
    e.apply([fill("1", "BUY", 100, 20_000.0, fee=0.0001, fee_currency="base")])
    pos = only(e.positions())
    assert (pos["quantity"], pos["fees"]) == (100.0, pytest.approx(0.0001))
