"""Fractional quantities (``quantity_decimals`` 8) through the history: the archive's fills,
replay, end of day (positions, round trips), analytics (blotter, intraday equity) and the
FIFO realized-lots report. Every quantity reads in units, never in atoms.

The book (starting cash 1,000,000, multiplier 1, fees 0; average cost), BTC = token 1:

* D1: S1 BUY 0.015 @ 60,000 (a), BUY 0.005 @ 62,000 (b): 0.02 at (900 + 310) / 0.02 =
  60,500, cash 998,790; close 61,000: unrealized 0.02 x 500 = 10, equity 1,000,010.
* D2: SELL 0.012 @ 63,000 (c, 04:00 UTC): realized 0.012 x 2,500 = 30; SELL 0.008 @ 61,000
  (d, 05:00): realized 0.008 x 500 = 4; flat exactly, realized 34, cash 998,790 + 756 + 488
  = 1,000,034. One LONG round trip D1 -> D2: 4 fills, peak 0.02, realized = the trip's cash
  flows -900 - 310 + 756 + 488 = 34.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from history_helpers import D1, D2, at
from reference import fill, tick

from pm_polars import PortfolioEngine
from pm_polars import analytics as an
from pm_polars.archive import ArchiveWriter, save_engine_config
from pm_polars.archive.config import load_engine_config
from pm_polars.archive.replay import replay
from pm_polars.engine.config import QuantityDecimalsMismatch
from pm_polars.engine.lot_matches import realized_lots
from pm_polars.eod import run_eod

BTC = 1
MS = 10**6  # the wire's ts is epoch ms; the archive's ns
DAYS = {
    D1: [fill("S1", BTC, "BUY", 0.015, 60_000.0, fee=0.0, fill_id="a", ts=at(D1, 4) // MS),
         fill("S1", BTC, "BUY", 0.005, 62_000.0, fee=0.0, fill_id="b", ts=at(D1, 4, 30) // MS),
         tick(BTC, 61_000.0, ts=at(D1, 9) // MS)],
    D2: [fill("S1", BTC, "SELL", 0.012, 63_000.0, fee=0.0, fill_id="c", ts=at(D2, 4) // MS),
         fill("S1", BTC, "SELL", 0.008, 61_000.0, fee=0.0, fill_id="d", ts=at(D2, 5) // MS),
         tick(BTC, 62_000.0, ts=at(D2, 9) // MS)],
}


@pytest.fixture()
def archive(tmp_path: Path) -> tuple[Path, PortfolioEngine]:
    eng = PortfolioEngine(starting_cash=1_000_000.0, quantity_decimals=8)
    save_engine_config(tmp_path, eng)
    with ArchiveWriter(tmp_path, fsync=False) as w:
        for events in DAYS.values():
            w.submit(eng.apply(events))
    return tmp_path, eng


def test_archive_records_the_scale_and_replay_rebuilds_the_book(
        archive: tuple[Path, PortfolioEngine]) -> None:
    root, live = archive
    assert load_engine_config(root)["quantity_decimals"] == 8
    again = replay(root)
    assert again.config.quantity_decimals == 8
    assert again.positions().equals(live.positions())
    pos = again.positions().row(0, named=True)
    assert (pos["quantity"], pos["buy_quantity"], pos["sell_quantity"]) == (0.0, 0.02, 0.02)
    assert pos["realized_pnl"] == pytest.approx(34.0, abs=1e-9)


def test_end_of_day_positions_and_round_trip_in_units(
        archive: tuple[Path, PortfolioEngine]) -> None:
    root, _ = archive
    d1 = run_eod(root, D1).positions.row(0, named=True)
    assert (d1["quantity"], d1["average_price"], d1["close"]) == (0.02, 60_500.0, 61_000.0)
    assert d1["unrealized_pnl"] == pytest.approx(10.0, abs=1e-9)
    assert d1["trip_peak"] == 0.02 and d1["trip_cash"] == pytest.approx(-1_210.0, abs=1e-9)
    assert d1["trip_realized"] == pytest.approx(0.0, abs=1e-9)  # nothing closed yet
    d1_port = run_eod(root, D1).portfolios.row(0, named=True)
    assert d1_port["equity"] == pytest.approx(1_000_010.0, abs=1e-6)
    res = run_eod(root, D2)
    d2 = res.positions.row(0, named=True)
    assert (d2["overnight_quantity"], d2["day_sell_quantity"], d2["quantity"]) == (
        0.02, 0.02, 0.0)
    assert d2["day_realized_pnl"] == pytest.approx(34.0, abs=1e-9)
    trip = res.trips.row(0, named=True)
    assert res.trips.height == 1 and trip["direction"] == "LONG" and trip["fills"] == 4
    assert trip["peak_quantity"] == 0.02
    assert trip["realized_pnl"] == pytest.approx(34.0, abs=1e-9)
    assert res.portfolios.row(0, named=True)["cash"] == pytest.approx(1_000_034.0, abs=1e-6)
    # a second run from the stored D1 state (carry read back from the table) agrees
    full = run_eod(root, D2, full=True).trips.row(0, named=True)
    assert full["peak_quantity"] == 0.02
    assert full["realized_pnl"] == pytest.approx(34.0, abs=1e-9)


def test_analytics_read_units(archive: tuple[Path, PortfolioEngine]) -> None:
    root, _ = archive
    blot = an.blotter(an.connect(root))
    assert blot["quantity"].to_list() == [0.015, 0.005, 0.012, 0.008]
    assert blot["signed_qty"].to_list() == [0.015, 0.005, -0.012, -0.008]
    assert blot["value"].to_list() == pytest.approx([900.0, 310.0, 756.0, 488.0])
    run_eod(root, D1)
    curve = an.intraday_equity(root, D2, every="1h").sort("time")
    # bucket ending 05:00: c sold (cash 998,790 + 756); 0.008 left at D1's close 61,000
    first = curve.row(0, named=True)
    assert (first["cash"], first["market_value"]) == pytest.approx((999_546.0, 488.0))
    assert curve.row(-1, named=True)["equity"] == pytest.approx(1_000_034.0, abs=1e-6)


def test_realized_lots_report_in_units() -> None:
    """FIFO: c closes 0.012 of lot a (+0.012 x 3,000 = 36 at 63,000 vs 60,000); d closes
    the remaining 0.003 of a (+3) and lot b's 0.005 (61,000 vs 62,000: -5)."""
    events = [e for day in DAYS.values() for e in day]
    out = realized_lots(events, quantity_decimals=8)
    assert out["quantity"].dtype == pl.Float64
    assert out.select("close_fill_id", "open_fill_id", "side", "quantity",
                      "realized_pnl").rows() == [
        ("c", "a", "LONG", 0.012, 36.0), ("d", "a", "LONG", 0.003, 3.0),
        ("d", "b", "LONG", 0.005, -5.0)]


def test_archive_of_other_decimals_is_refused(archive: tuple[Path, PortfolioEngine]) -> None:
    """Fills archived as atoms of 10^-8 would be read at the wrong scale by an engine at
    another ``quantity_decimals``: recording its settings there is refused (the daemon
    stops with exit 2), the same settings are fine."""
    root, live = archive
    with pytest.raises(QuantityDecimalsMismatch, match=(
            "holds fills booked with --quantity-decimals 8 .* but --quantity-decimals is 0")):
        save_engine_config(root, PortfolioEngine())
    save_engine_config(root, live)
    assert load_engine_config(root)["quantity_decimals"] == 8
