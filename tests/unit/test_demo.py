"""The demo feed, runner and CLI: determinism, outputs, restore and consistent totals."""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pm_polars import PortfolioEngine
from pm_polars.cli import build_parser, command_modules, main
from pm_polars.demo.catalog import INSTRUMENT_BY_TOKEN, instruments_frame, portfolio_ids
from pm_polars.demo.feed import FeedStats, generate_batches, generate_messages
from pm_polars.demo.runner import DemoResult, run_demo

EVENTS = 5_000
SEED = 11
CASH = 1_000_000.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    out = io.StringIO()
    res = run_demo(
        events=EVENTS, batch_size=700, seed=SEED, starting_cash=CASH, refresh_s=0.0,
        data_dir=tmp_path_factory.mktemp("data"), out=out,
    )
    return res, out.getvalue()


def _valid_fill(value: bytes) -> dict[str, Any] | None:
    """The decoded event if ``value`` is a fill the engine must apply (dupes aside)."""
    try:
        ev = json.loads(value)
    except ValueError:
        return None
    if ev.get("event_type") != "order_fill" or str(ev.get("fill_id")).startswith("bad-"):
        return None
    return dict(ev)


def _reference(seed: int, n: int) -> tuple[dict[tuple[str, int], int], dict[str, float]]:
    """Independent replay of the feed: net quantity per position and cash per portfolio."""
    qty: dict[tuple[str, int], int] = defaultdict(int)
    cash: dict[str, float] = {}
    seen: set[tuple[str, str]] = set()
    for msg in generate_messages(seed, n):
        ev = _valid_fill(msg.value)
        if ev is None or (ev["source"], ev["fill_id"]) in seen:
            continue
        seen.add((ev["source"], ev["fill_id"]))
        sig = ev["original_signal"]
        pid = f"{ev['source']}_{sig['strategy_id']}"
        signed = ev["quantity"] if sig["signal_type"] == "BUY" else -ev["quantity"]
        mult = INSTRUMENT_BY_TOKEN[sig["instrument_token"]].multiplier
        qty[(pid, sig["instrument_token"])] += signed
        cash[pid] = cash.get(pid, CASH) - signed * ev["fill_price"] * mult - ev["fee"]
    return dict(qty), cash


def test_feed_is_deterministic() -> None:
    first = list(generate_messages(3, 3_000))
    assert first == list(generate_messages(3, 3_000))
    assert first != list(generate_messages(4, 3_000))
    batches = list(generate_batches(3, 3_000, 1_000))
    assert [len(b) for b in batches] == [1_000, 1_000, 1_000]
    assert [v for b in batches for v in b] == [m.value for m in first]


def test_feed_topics_keys_and_mix() -> None:
    stats = FeedStats()
    msgs = list(generate_messages(5, 20_000, stats=stats))
    assert stats.events == 20_000
    assert stats.ticks + stats.fills + stats.duplicates + stats.malformed == 20_000
    assert stats.duplicates > 0 and stats.malformed > 0
    assert {m.topic for m in msgs} == {"market.ticks", "orders.filled.paper", "orders.filled.live"}
    fill_keys = {m.key.decode() for m in msgs if m.topic.startswith("orders.filled.")}
    assert fill_keys <= set(portfolio_ids())
    tokens = set(instruments_frame()["instrument_token"].to_list())
    assert {int(m.key) for m in msgs if m.topic == "market.ticks" and m.key} <= tokens


def test_feed_opens_adds_reduces_and_flips() -> None:
    kinds: set[str] = set()
    pos: dict[tuple[str, int], int] = defaultdict(int)
    seen: set[bytes] = set()
    for msg in generate_messages(5, 20_000):
        ev = _valid_fill(msg.value)
        if ev is None or msg.value in seen:
            continue
        seen.add(msg.value)
        sig = ev["original_signal"]
        key = (ev["source"] + sig["strategy_id"], sig["instrument_token"])
        q = ev["quantity"] if sig["signal_type"] == "BUY" else -ev["quantity"]
        before, after = pos[key], pos[key] + q
        if before == 0:
            kinds.add("open")
        elif after == 0:
            kinds.add("close")
        elif (before > 0) != (after > 0):
            kinds.add("flip")
        else:
            kinds.add("add" if abs(after) > abs(before) else "reduce")
        lot = INSTRUMENT_BY_TOKEN[sig["instrument_token"]].lot_size
        assert ev["quantity"] > 0 and ev["quantity"] % lot == 0
        pos[key] = after
    assert kinds == {"open", "add", "reduce", "close", "flip"}


def test_demo_writes_outputs(demo: tuple[DemoResult, str]) -> None:
    res, table = demo
    for name in ("positions.parquet", "portfolios.parquet", "snapshot/meta.json"):
        assert (res.output_dir / name).exists(), name
    assert (res.output_dir / "rejects.parquet").exists()
    assert "paper_Overall" in table and "live_Overall" in table and "AUM" in table


def test_every_event_is_accounted_for(demo: tuple[DemoResult, str]) -> None:
    res, _ = demo
    assert res.events == EVENTS == res.feed.events
    assert res.fills_applied + res.ticks_applied + res.duplicates + res.rejects == EVENTS
    assert res.duplicates == res.feed.duplicates
    assert res.rejects == res.feed.malformed
    assert res.fills_applied == res.feed.fills
    assert res.ticks_applied == res.feed.ticks
    assert sum(res.reject_reasons.values()) == res.rejects


def test_snapshot_restores_same_portfolios(demo: tuple[DemoResult, str]) -> None:
    res, _ = demo
    eng = PortfolioEngine.restore(res.output_dir / "snapshot")
    assert_frame_equal(eng.portfolios(), pl.read_parquet(res.output_dir / "portfolios.parquet"))
    assert_frame_equal(eng.positions(), pl.read_parquet(res.output_dir / "positions.parquet"))


def test_totals_are_consistent(demo: tuple[DemoResult, str]) -> None:
    res, _ = demo
    table = res.portfolios
    strategies = table.filter(pl.col("strategy_id") != "Overall")
    assert res.aum["total"] == pytest.approx(strategies["equity"].sum(), rel=1e-12)
    for source in ("paper", "live"):
        rows = strategies.filter(pl.col("source") == source)
        overall = table.filter(pl.col("portfolio_id") == f"{source}_Overall").row(0, named=True)
        assert overall["equity"] == pytest.approx(rows["equity"].sum(), rel=1e-12)
        assert overall["net_pnl"] == pytest.approx(rows["net_pnl"].sum(), abs=1e-6)
        assert res.aum["by_source"][source] == pytest.approx(rows["equity"].sum(), rel=1e-12)


def test_positions_and_cash_match_independent_replay(demo: tuple[DemoResult, str]) -> None:
    res, _ = demo
    qty, cash = _reference(SEED, EVENTS)
    positions = pl.read_parquet(res.output_dir / "positions.parquet")
    got = {(r["portfolio_id"], r["instrument_token"]): r["quantity"]
           for r in positions.iter_rows(named=True)}
    assert got == qty
    portfolios = pl.read_parquet(res.output_dir / "portfolios.parquet")
    got_cash = dict(zip(portfolios["portfolio_id"], portfolios["cash"], strict=True))
    assert got_cash.keys() == cash.keys()
    for pid, expected in cash.items():
        assert got_cash[pid] == pytest.approx(expected, abs=1e-4), pid


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``main`` configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_cli_registry_and_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "demo" in command_modules() and "logs" not in command_modules()
    args = build_parser().parse_args(["demo", "--events", "10", "--log-level", "debug"])
    assert (args.events, args.log_level) == (10, "DEBUG")
    code = main(["demo", "--events", "1500", "--batch-size", "400", "--data-dir", str(tmp_path)])
    assert code == 0
    assert "live_Overall" in capsys.readouterr().out
    assert (tmp_path / "demo" / "snapshot" / "meta.json").exists()
