"""Analytics and the report: hand-worked figures and agreement with the engine's state.

Most cases use the three-day book of ``history_helpers`` (worked by hand in test_eod.py):
S1 (A, multiplier 1) nets 49, 56 and 13 on D1..D3 (equity 1,000,049 / 1,000,105 /
1,000,118); S2 (short B, multiplier 2) nets 39, 31 and 0 (1,000,039 / 1,000,070 / 1,000,070).
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from history_helpers import D1, D2, D3, DAYS, START, at, batch, build_book, fill, tick

from pm_polars import PortfolioEngine
from pm_polars import analytics as an
from pm_polars.analytics.report import eod_report
from pm_polars.archive import ArchiveWriter
from pm_polars.cli import main
from pm_polars.demo.runner import run_demo
from pm_polars.eod import run_eod

A = 256265


@pytest.fixture()
def book(tmp_path: Path) -> tuple[Path, PortfolioEngine]:
    eng = build_book(tmp_path)
    for day in DAYS:
        run_eod(tmp_path, day)
    return tmp_path, eng


def col(frame: pl.DataFrame, name: str) -> list[object]:
    return frame.get_column(name).to_list()


def test_daily_pnl_and_compounded_equity_curve(book: tuple[Path, PortfolioEngine]) -> None:
    root, _ = book
    con = an.connect(root)
    s1 = an.equity_curve(con, by="portfolio").filter(pl.col("key") == "paper_S1")
    assert col(s1, "date") == [D1, D2, D3]
    assert col(s1, "net") == pytest.approx([49.0, 56.0, 13.0])  # D3: m2m 742 - 728 = 14, fee 1
    assert col(s1, "equity") == pytest.approx([1_000_049.0, 1_000_105.0, 1_000_118.0])
    assert col(s1, "daily_return") == pytest.approx(
        [49 / 1e6, 56 / 1_000_049, 13 / 1_000_105], rel=1e-12)
    # no flows: compounding the returns gives equity / starting cash exactly
    assert col(s1, "nav")[-1] == pytest.approx(1_000_118 / START, rel=1e-12)
    assert col(s1, "drawdown") == [0.0, 0.0, 0.0]
    total = an.daily_pnl(con, by="all")
    # both books: D1 net 49 + 39 on prev equity 2,000,000; D2 56 + 31 on 2,000,088
    assert col(total, "daily_return")[:2] == pytest.approx([88 / 2e6, 87 / 2_000_088])
    by_strategy = an.daily_pnl(con, by="strategy", start=D2, end=D2)
    assert col(by_strategy, "key") == ["S1", "S2"]
    assert col(by_strategy, "realized") == pytest.approx([8 * (105 - 1460 / 15), 24.0])
    assert col(by_strategy, "fees") == [2.0, 1.0]


def test_curve_drawdown_and_sharpe_by_hand() -> None:
    daily = pl.DataFrame({"key": ["x"] * 3, "date": [D1, D2, D3],
                          "daily_return": [0.10, -0.20, 0.05], "net": [10.0, -22.0, 4.4]})
    curve = an.with_curve(daily)
    assert col(curve, "nav") == pytest.approx([1.1, 0.88, 0.924])  # 1.1 x 0.8 x 1.05
    assert col(curve, "drawdown") == pytest.approx([0.0, -0.2, -0.16])  # 0.924 / 1.1 - 1
    # mean -0.016667, sample std sqrt(0.0516667 / 2) = 0.160728; x sqrt(252)
    assert an.sharpe(curve.get_column("daily_return")) == pytest.approx(-1.6461098, rel=1e-6)
    perf = an.performance(curve).row(0, named=True)
    assert perf["total_return"] == pytest.approx(-0.076)
    assert perf["max_drawdown"] == pytest.approx(-0.2)
    assert perf["annualised_return"] == pytest.approx(0.924 ** 84 - 1)  # 252 / 3 periods
    assert an.sharpe(pl.Series([0.01])) is None  # one observation: undefined


def test_trip_statistics_by_hand() -> None:
    trips = pl.DataFrame({"portfolio_id": ["p"] * 4, "net_pnl": [10.0, -5.0, 20.0, 0.0],
                          "holding_s": [1.0, 2.0, 3.0, 4.0]})
    got = an.trip_stats(trips, by="portfolio").row(0, named=True)
    assert (got["round_trips"], got["wins"], got["losses"]) == (4, 2, 1)
    assert got["win_rate"] == 0.5
    assert got["profit_factor"] == 6.0  # 30 / 5
    assert (got["average_win"], got["average_loss"], got["expectancy"]) == (15.0, -5.0, 6.25)


def test_slippage_against_the_next_tick(tmp_path: Path) -> None:
    t = at(D3)
    with ArchiveWriter(tmp_path, fsync=False) as w:
        w.submit(batch([tick(A, 99.0, t - 1), fill("S1", A, "BUY", 2, 101.0, t),
                        tick(A, 100.0, t + 1), fill("S1", A, "SELL", 1, 100.0, t + 2),
                        tick(A, 101.0, t + 3)]))
    got = an.slippage(an.connect(tmp_path))
    # BUY 101 vs next 100: +100 bps, 2 x 1 = 2; SELL 100 vs next 101: -(100/101 - 1) = 99 bps
    assert col(got, "next_price") == [100.0, 101.0]
    assert col(got, "slippage_bps") == pytest.approx([100.0, 1e4 / 101])
    assert col(got, "slippage_value") == pytest.approx([2.0, 1.0])


def test_exposures_blotter_and_turnover(book: tuple[Path, PortfolioEngine]) -> None:
    root, _ = book
    con = an.connect(root)
    ex = an.exposures(con, by="all", start=D2, end=D2).row(0, named=True)
    # S1 long 7 x 104 = 728; S2 short -6 x 96 x 2 = -1152
    assert (ex["long"], ex["short"], ex["gross"], ex["net"]) == (728.0, -1152.0, 1880.0, -424.0)
    assert ex["open_positions"] == 2
    blot = an.blotter(con)
    assert col(blot, "fill_id") == ["a1", "b1", "a2", "a3", "b2", "a4"]
    assert col(blot, "value") == [950.0, 2000.0, 510.0, 840.0, 776.0, 742.0]
    turn = an.turnover(con, by="portfolio").filter(pl.col("date") == D2)
    assert col(turn, "turnover") == [1350.0, 776.0]
    trips = an.round_trips(con)
    assert col(trips, "net_pnl") == pytest.approx([118.0]) and col(trips, "strategy_id") == ["S1"]


def test_intraday_equity_ends_at_the_close(book: tuple[Path, PortfolioEngine]) -> None:
    root, _ = book
    curve = an.intraday_equity(root, D2, every="5m")
    first = curve.filter(pl.col("portfolio_id") == "paper_S1").row(0, named=True)
    # 04:05 UTC: S1 bought 5 @ 102 (cash 999,049 - 511); A is still marked at D1's tick 100
    assert first["equity"] == pytest.approx(998_538.0 + 15 * 100.0)
    last = curve.filter(pl.col("time") == pl.col("time").max()).sort("portfolio_id")
    assert col(last, "equity") == pytest.approx([1_000_105.0, 1_000_070.0])


def test_report_equals_engine_state_for_the_demo(tmp_path: Path) -> None:
    res = run_demo(events=8_000, batch_size=900, seed=3, data_dir=tmp_path, refresh_s=1e9,
                   out=io.StringIO(), archive_root=tmp_path / "archive")
    live = res.portfolios.filter(~pl.col("portfolio_id").str.ends_with("_Overall"))
    day = run_eod(tmp_path / "archive", D3).day  # the demo feed runs on 2026-11-25
    report = eod_report(an.connect(tmp_path / "archive"), day)
    rows = report.filter(pl.col("portfolio_id") != "ALL").sort("portfolio_id")
    assert col(rows, "portfolio_id") == col(live.sort("portfolio_id"), "portfolio_id")
    for mine, theirs in [("equity", "equity"), ("total_net_pnl", "net_pnl"),
                         ("realized", "total_realized_pnl"), ("fees", "total_fees"),
                         ("gross_exposure", "gross_exposure")]:
        assert col(rows, mine) == pytest.approx(col(live.sort("portfolio_id"), theirs))
    assert int(rows.get_column("fills").sum()) == res.fills_applied
    everything = report.filter(pl.col("portfolio_id") == "ALL").row(0, named=True)
    assert everything["equity"] == pytest.approx(res.aum["total"])
    assert everything["day_return"] == pytest.approx(
        everything["net"] / everything["prev_equity"])


def test_report_cli_formats(book: tuple[Path, PortfolioEngine], capsys: pytest.CaptureFixture[str]
                            ) -> None:
    root, _ = book
    args = ["report", "--date", D2.isoformat(), "--archive-root", str(root)]
    assert main([*args, "--format", "csv"]) == 0
    csv = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert col(csv, "portfolio_id") == ["paper_S1", "paper_S2", "ALL"]
    assert col(csv, "net") == pytest.approx([56.0, 31.0, 87.0])
    assert main([*args, "--portfolio", "paper_S2"]) == 0
    table = capsys.readouterr().out
    assert "paper_S2" in table and "paper_S1" not in table and "ALL" in table
    assert main([*args, "--format", "parquet"]) == 2  # needs --output
    out = root / "r.html"
    assert main([*args, "--format", "html", "--output", str(out)]) == 0
    page = out.read_text()
    assert page.count("<svg") == 2 and "paper_S2" in page
    assert "src=" not in page and "<link" not in page  # self-contained
    assert main(["report", "--date", "2026-01-01", "--archive-root", str(root)]) == 1
