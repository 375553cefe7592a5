"""End of day: day-vs-carried split, Kite pnl/m2m, portfolio day figures and round trips.

The book (starting cash 1,000,000; fees 1 per fill; A multiplier 1, B multiplier 2):

* D1 2026-11-23: S1 BUY 10 A @ 95; S2 SELL 10 B @ 100; close A 100, B 98.
* D2: S1 BUY 5 A @ 102, SELL 8 A @ 105; close A 104. S2 BUY 4 B @ 97; close B 96.
* D3: S1 SELL 7 A @ 106 (flat); close A 107. B has no tick (close stays 96).

Every expected number is worked by hand in the comments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from history_helpers import D1, D2, D3, DAYS, START, A, B, at, batch, build_book, fill
from polars.testing import assert_frame_equal

from pm_polars import PortfolioEngine
from pm_polars.archive import ArchiveWriter
from pm_polars.eod import run_eod, store
from pm_polars.eod.trips import TRIP_CARRY_SCHEMA, day_trips


def row(frame: pl.DataFrame, **where: Any) -> dict[str, Any]:
    hit = frame.filter(*[pl.col(k) == v for k, v in where.items()])
    assert hit.height == 1, hit
    return hit.row(0, named=True)


def check(got: dict[str, Any], **want: float) -> None:
    wrong = {k: (got[k], v) for k, v in want.items() if got[k] != pytest.approx(v, abs=1e-9)}
    assert not wrong, wrong


@pytest.fixture()
def closed(tmp_path: Path) -> tuple[Path, PortfolioEngine]:
    eng = build_book(tmp_path)
    for day in DAYS:
        run_eod(tmp_path, day)
    return tmp_path, eng


def test_long_carried_position_day_and_net_figures(closed: tuple[Path, PortfolioEngine]) -> None:
    root, _ = closed
    got = row(store.read_table(root, "positions", D2), portfolio_id="paper_S1")  # type: ignore[arg-type]
    check(
        got,
        overnight_quantity=10, overnight_average_price=95.0, prev_close=100.0,
        day_buy_quantity=5, day_sell_quantity=8,
        day_buy_value=510.0,   # 5 x 102
        day_sell_value=840.0,  # 8 x 105
        day_quantity=-3,
        day_pnl=18.0,          # 840 - 510 + (-3) x 104
        quantity=7, close=104.0,
        average_price=1460.0 / 15,  # (10 x 95 + 5 x 102) / 15 = 97.333..
        net_buy_value=1460.0,  # 510 + carried 10 x 95
        net_sell_value=840.0,
        pnl=108.0,             # 840 - 1460 + 7 x 104 = realized 61.33 + unrealized 46.67
        m2m=58.0,              # 840 - 510 + 7 x 104 - 10 x 100
        day_realized_pnl=8 * (105.0 - 1460.0 / 15),  # 61.333..
        day_fees=2.0,
    )


def test_short_carried_position_with_multiplier(closed: tuple[Path, PortfolioEngine]) -> None:
    root, _ = closed
    got = row(store.read_table(root, "positions", D2), portfolio_id="paper_S2")  # type: ignore[arg-type]
    check(
        got,
        overnight_quantity=-10, overnight_average_price=100.0, prev_close=98.0,
        day_buy_quantity=4, day_sell_quantity=0, day_buy_value=776.0,  # 4 x 97 x 2
        day_sell_value=0.0, day_quantity=4,
        day_pnl=-8.0,          # -776 + 4 x 96 x 2
        quantity=-6, close=96.0,
        net_buy_value=776.0, net_sell_value=2000.0,  # carried short 10 x 100 x 2, sell side
        pnl=72.0,              # 2000 - 776 - 6 x 96 x 2 = realized 24 + unrealized 48
        m2m=32.0,              # -776 - 6 x 96 x 2 + 10 x 98 x 2: 4 x (98-97) x 2 + 6 x 2 x 2
        day_realized_pnl=24.0,  # 4 x (100 - 97) x 2
        day_fees=1.0,
    )


def test_portfolio_day_figures_and_equity_identity(closed: tuple[Path, PortfolioEngine]) -> None:
    root, _ = closed
    d1 = store.read_table(root, "portfolios", D1)
    d2 = store.read_table(root, "portfolios", D2)
    assert d1 is not None and d2 is not None
    # D1 S1: cash 1e6 - 950 - 1, market value 10 x 100 -> equity 1,000,049; m2m 50, net 49
    check(row(d1, portfolio_id="paper_S1"), prev_equity=START, day_m2m=50.0, day_fees=1.0,
          day_net_pnl=49.0, equity=1_000_049.0, day_return=49.0 / START, fills=1)
    # D1 S2: cash 1e6 + 2000 - 1, market value -10 x 98 x 2 -> 1,000,039; m2m 2000-1960 = 40
    check(row(d1, portfolio_id="paper_S2"), day_m2m=40.0, day_net_pnl=39.0, equity=1_000_039.0)
    # D2 S1: m2m 58, fees 2 -> net 56 = equity change; unrealized change = 58 - 61.33
    check(row(d2, portfolio_id="paper_S1"), prev_equity=1_000_049.0, day_m2m=58.0,
          day_fees=2.0, day_net_pnl=56.0, equity=1_000_105.0,
          day_unrealized_change=58.0 - 8 * (105.0 - 1460.0 / 15),
          day_return=56.0 / 1_000_049.0, turnover=1350.0, fills=2, round_trips=0)
    # D2 S2: m2m 32, fee 1 -> equity 1,000,070 (cash 1,001,222, market value -1,152)
    check(row(d2, portfolio_id="paper_S2"), day_m2m=32.0, day_net_pnl=31.0,
          equity=1_000_070.0, cash=1_001_222.0)


def test_round_trip_spanning_three_days(closed: tuple[Path, PortfolioEngine]) -> None:
    root, _ = closed
    trips = store.read_table(root, "trips", D3)
    assert trips is not None and trips.height == 1
    got = trips.row(0, named=True)
    assert (got["portfolio_id"], got["direction"]) == ("paper_S1", "LONG")
    assert (got["open_ts"], got["close_ts"]) == (at(D1, 4), at(D3, 4))
    # fills a1..a4, peak 15 after a2; realized 61.33 (D2) + 7 x (106 - 97.33) = 122
    check(got, fills=4, peak_quantity=15, realized_pnl=122.0, fees=4.0, net_pnl=118.0)
    # S2's short is still open: its carry holds D1's open time and D2's realized 24
    s2 = row(store.read_table(root, "positions", D3), portfolio_id="paper_S2")  # type: ignore[arg-type]
    check(s2, trip_fills=2, trip_peak=10, trip_realized=24.0, trip_fees=2.0, m2m=0.0)
    assert s2["trip_open_ts"] == at(D1, 4, 1)


def test_flip_closes_one_trip_and_opens_the_next() -> None:
    fills = batch([
        fill("S1", A, "BUY", 5, 10.0, 1, fee=1.0),
        fill("S1", A, "SELL", 8, 12.0, 2, fee=1.0),  # realizes 5 x 2 = 10, opens short 3
        fill("S1", A, "BUY", 3, 11.0, 3, fee=1.0),   # realizes 3 x 1 = 3
    ]).fills.with_columns(pl.lit(1.0).alias("multiplier"))
    prior = PortfolioEngine().snapshot().positions
    closed, carry = day_trips(D1, prior, fills, pl.DataFrame(schema=TRIP_CARRY_SCHEMA))
    assert closed.select("direction", "open_ts", "close_ts", "fills", "peak_quantity").rows() == [
        ("LONG", 1, 2, 2, 5), ("SHORT", 2, 3, 2, 3)]
    assert closed.get_column("realized_pnl").to_list() == pytest.approx([10.0, 3.0])
    assert closed.get_column("fees").to_list() == pytest.approx([2.0, 1.0])  # flip fee: LONG
    assert carry.height == 0


def test_m2m_adds_up_to_lifetime_pnl(closed: tuple[Path, PortfolioEngine]) -> None:
    root, eng = closed
    tables = [store.read_table(root, "portfolios", d) for d in DAYS]
    days = pl.concat([t for t in tables if t is not None])
    assert all(t is not None for t in tables)  # every day has its table
    total = days.group_by("portfolio_id").agg(pl.col("day_m2m").sum()).sort("portfolio_id")
    live = eng.portfolios().sort("portfolio_id")
    # S1: 50 + 58 + 14 = 122 (all realized); S2: 40 + 32 + 0 = 72 = 24 realized + 48 unrealized
    assert total.get_column("day_m2m").to_list() == pytest.approx([122.0, 72.0])
    assert live.get_column("total_pnl").to_list() == pytest.approx([122.0, 72.0])


def test_incremental_equals_full_replay_and_live_state(
    closed: tuple[Path, PortfolioEngine],
) -> None:
    root, eng = closed
    incremental = {t: store.read_table(root, t, D3) for t in store.TABLES}
    restored = PortfolioEngine.restore(store.read_state(root, D3))
    assert_frame_equal(restored.positions(), eng.positions())
    assert_frame_equal(restored.portfolios(), eng.portfolios())
    res = run_eod(root, D3, full=True)
    assert res.rolled == [D1, D2, D3] and res.base is None
    for table, frame in incremental.items():
        assert_frame_equal(store.read_table(root, table, D3), frame)  # type: ignore[arg-type]


def test_second_run_is_incremental_and_late_events_recompute(tmp_path: Path) -> None:
    build_book(tmp_path)
    assert run_eod(tmp_path, D2).rolled == [D1, D2]
    res = run_eod(tmp_path, D3)
    assert (res.base, res.rolled) == (D2, [D3])
    # a late S2 fill with event time on D2 arrives after D2 was closed
    with ArchiveWriter(tmp_path, fsync=False) as w:
        w.submit(batch([fill("S2", B, "BUY", 6, 95.0, at(D2, 8), fee=1.0, fill_id="late")]))
    res = run_eod(tmp_path, D3)
    assert (res.base, res.rolled) == (D1, [D2, D3])
    s2 = row(store.read_table(tmp_path, "positions", D2), portfolio_id="paper_S2")  # type: ignore[arg-type]
    check(s2, quantity=0, day_buy_quantity=10)


def test_requested_day_without_events_still_gets_a_snapshot(tmp_path: Path) -> None:
    build_book(tmp_path)
    later = D3.replace(day=28)
    res = run_eod(tmp_path, later)
    assert res.rolled == [D1, D2, D3, later]
    s2 = row(res.positions, portfolio_id="paper_S2")
    check(s2, overnight_quantity=-6, quantity=-6, m2m=0.0, prev_close=96.0, close=96.0)


def test_trip_realized_adds_up_to_the_engine_realized(tmp_path: Path) -> None:
    """Demo feed (opens, adds, reduces, flips): trips realize what the engine realized."""
    import io

    from pm_polars.demo.runner import run_demo

    res = run_demo(events=8_000, batch_size=600, seed=9, data_dir=tmp_path, refresh_s=1e9,
                   out=io.StringIO(), archive_root=tmp_path / "archive")
    eod = run_eod(tmp_path / "archive", D3)
    closed = eod.trips.group_by("portfolio_id").agg(pl.col("realized_pnl").sum())
    still_open = eod.positions.group_by("portfolio_id").agg(
        pl.col("trip_realized").fill_null(0.0).sum().alias("open"))
    both = (res.portfolios.select("portfolio_id", "total_realized_pnl")
            .join(closed, on="portfolio_id").join(still_open, on="portfolio_id"))
    assert both.height >= 10 and eod.trips.height > 100
    assert (both["realized_pnl"] + both["open"]).to_list() == pytest.approx(
        both["total_realized_pnl"].to_list(), abs=1e-6)


def test_one_trading_day_everywhere_ist(tmp_path: Path) -> None:
    """The archive's date partitions and ``eod --date`` follow the engine's roll settings:
    with Asia/Kolkata 00:00, a fill at 2026-03-02 20:00 UTC (03-03 01:30 IST) is archived
    under date=2026-03-03 and closed by the EOD of 2026-03-03, whose rows equal the live
    figures of that day (m2m = the day's P&L change)."""
    from datetime import date

    from pm_polars.archive.writer import start_local_archive
    from pm_polars.events import decode_any

    eng = PortfolioEngine(day_roll_tz="Asia/Kolkata", day_roll_time="00:00")
    ms = 1_772_481_600 * 1000  # 2026-03-02T20:00:00Z, epoch ms as on the wire
    events = [{"event_type": "order_fill", "source": "paper", "fill_id": "x", "ts": ms,
               "original_signal": {"strategy_id": "S", "instrument_token": 7,
                                   "signal_type": "BUY"}, "quantity": 2, "fill_price": 10.0},
              {"event_type": "market_tick", "instrument_token": 7, "last_price": 12.5,
               "ts": ms + 60 * 1000}]
    with start_local_archive(tmp_path, eng, "t") as writer:
        writer.submit(eng.apply_decoded(decode_any(events)))
    assert sorted(p.name for p in (tmp_path / "fills").iterdir()) == ["date=2026-03-03"]
    assert eng.trading_day == "2026-03-03"
    res = run_eod(tmp_path, date(2026, 3, 3))
    pos = res.positions.row(0, named=True)
    assert (pos["m2m"], pos["day_pnl"], pos["close"]) == (5.0, 5.0, 12.5)
    assert res.portfolios.row(0, named=True)["day_m2m"] == eng.portfolio("paper_S")["m2m"]


def test_currency_book_refused_naming_the_instruments(tmp_path: Path) -> None:
    """EOD sums positions' own figures: a book in several currencies is refused, not summed."""
    from pm_polars.eod.run import EodError

    build_book(tmp_path)
    usd = pl.DataFrame({"instrument_token": [A, B], "multiplier": [1.0, 2.0],
                        "quote_currency": ["USD", None]})
    with pytest.raises(EodError, match="instruments: .*outside the account currency"):
        run_eod(tmp_path, D1, instruments=usd)
    run_eod(tmp_path, D1, instruments=usd.with_columns(pl.lit(None, pl.String)
                                                       .alias("quote_currency")))
