"""FIFO cost basis: hand-worked cases from public sources, the scalar reference, properties.

Sources of the hand-worked numbers (FIFO as brokers and tax guides define it):

* Greenlight, "How do I calculate my gains or losses and cost basis"
  (help.greenlight.com/hc/en-us/articles/1260801287790): buy 1 share at $10, then 2 at $15;
  sell 1 at $20 -> gain $10, the remaining shares cost $15. Second example: buy 2 at $20,
  then 2 at $25; sell 2 at $10 -> loss $20, the 2 shares at $25 stay open.
* experts123, "What is the FIFO method?": 500 shares at $10, then 500 at $15; sell 500 at
  $20 -> gain $5,000.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import EngineBook, ReferenceBook, assert_books_match, fill, tick
from test_properties import INSTRUMENTS, _chunks, event_streams

from pm_polars import PortfolioEngine
from pm_polars.engine.config import EngineConfig

T0 = 1_795_600_550_000  # epoch ms (2026-11-25), as on the wire


def _fifo(events: list[dict[str, Any]]) -> PortfolioEngine:
    eng = PortfolioEngine(cost_basis="fifo")
    eng.apply(events)
    return eng


def _row(eng: PortfolioEngine) -> dict[str, Any]:
    rows = eng.positions().to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_greenlight_gain_example() -> None:
    eng = _fifo([fill("S", 1, "BUY", 1, 10.0), fill("S", 1, "BUY", 2, 15.0),
                 fill("S", 1, "SELL", 1, 20.0)])
    row = _row(eng)
    assert row["realized_pnl"] == 10.0
    assert (row["quantity"], row["average_price"]) == (2, 15.0)
    assert eng.lots()["price"].to_list() == [15.0]


def test_greenlight_loss_example() -> None:
    eng = _fifo([fill("S", 1, "BUY", 2, 20.0), fill("S", 1, "BUY", 2, 25.0),
                 fill("S", 1, "SELL", 2, 10.0)])
    row = _row(eng)
    assert row["realized_pnl"] == -20.0
    assert (row["quantity"], row["average_price"]) == (2, 25.0)
    # average cost would have realized 2 * (10 - 22.5) = -25
    avg = PortfolioEngine()
    avg.apply([fill("S", 1, "BUY", 2, 20.0), fill("S", 1, "BUY", 2, 25.0),
               fill("S", 1, "SELL", 2, 10.0)])
    assert _row(avg)["realized_pnl"] == -25.0


def test_experts123_example() -> None:
    eng = _fifo([fill("S", 1, "BUY", 500, 10.0), fill("S", 1, "BUY", 500, 15.0),
                 fill("S", 1, "SELL", 500, 20.0)])
    assert _row(eng)["realized_pnl"] == 5_000.0
    assert _row(eng)["average_price"] == 15.0


def test_short_lots_partial_closes_and_flip() -> None:
    """Worked by hand: short 100 @ 50, short 100 @ 40; buy 150 @ 45 closes 100 @ 50 (+500)
    and 50 @ 40 (-250); buy 100 @ 30 closes 50 @ 40 (+500) and opens a long lot 50 @ 30."""
    eng = _fifo([fill("S", 7, "SELL", 100, 50.0), fill("S", 7, "SELL", 100, 40.0),
                 fill("S", 7, "BUY", 150, 45.0), fill("S", 7, "BUY", 100, 30.0),
                 tick(7, 32.0)])
    row = _row(eng)
    assert row["realized_pnl"] == 750.0
    assert (row["quantity"], row["average_price"]) == (50, 30.0)
    assert row["unrealized_pnl"] == 100.0
    lots = eng.lots().to_dicts()
    assert [(r["quantity"], r["price"]) for r in lots] == [(50, 30.0)]


def test_lots_split_over_batches_keep_their_order() -> None:
    """Lots carried in from the state are closed before the batch's own opens."""
    eng = PortfolioEngine(cost_basis="fifo")
    eng.apply([fill("S", 1, "BUY", 10, 100.0, fill_id="a", ts=T0 + 1)])
    eng.apply([fill("S", 1, "BUY", 10, 110.0, fill_id="b", ts=T0 + 2)])
    eng.apply([fill("S", 1, "BUY", 10, 120.0, fill_id="c", ts=T0 + 3),
               fill("S", 1, "SELL", 15, 130.0, fill_id="d", ts=T0 + 4)])
    assert _row(eng)["realized_pnl"] == 10 * 30.0 + 5 * 20.0
    lots = eng.lots().to_dicts()
    assert [(r["quantity"], r["price"], r["fill_id"]) for r in lots] == [
        (5, 110.0, "b"), (10, 120.0, "c")]
    assert lots[0]["lot"] < lots[1]["lot"]
    assert _row(eng)["average_price"] == pytest.approx((5 * 110 + 10 * 120) / 15, rel=1e-15)


def test_average_cost_is_the_default_and_keeps_no_lots() -> None:
    eng = PortfolioEngine()
    eng.apply([fill("S", 1, "BUY", 1, 10.0), fill("S", 1, "BUY", 2, 15.0)])
    assert eng.config.cost_basis == "average"
    assert eng.lots().height == 0


def test_unknown_cost_basis_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="average, fifo"):
        EngineConfig(cost_basis="lifo")


def test_snapshot_round_trip_keeps_lots_and_method(tmp_path: Any) -> None:
    eng = _fifo([fill("S", 1, "BUY", 1, 10.0, fill_id="x"), fill("S", 1, "BUY", 2, 15.0)])
    eng.snapshot().write(tmp_path / "snap")
    back = PortfolioEngine.restore(tmp_path / "snap")
    assert back.config.cost_basis == "fifo"
    assert back.lots().equals(eng.lots())
    back.apply([fill("S", 1, "SELL", 2, 20.0)])
    assert _row(back)["realized_pnl"] == 10.0 + 5.0


# ---------------------------------------------------------------------------- properties

def _books(events: list[dict[str, Any]]) -> tuple[EngineBook, ReferenceBook]:
    ref = ReferenceBook(instruments=INSTRUMENTS, cost_basis="fifo")
    ref.apply(events)
    eng = EngineBook.create(instruments=INSTRUMENTS, cost_basis="fifo")
    eng.apply(events)
    return eng, ref


def _lots_match(got: Any, want: Any) -> None:
    g, w = got.lots(), want.lots()
    assert [x[:3] for x in g] == [x[:3] for x in w]
    assert all(a[3] == pytest.approx(b[3], rel=1e-12) for a, b in zip(g, w, strict=True))


@settings(max_examples=150, deadline=None)
@given(events=event_streams())
def test_fifo_engine_matches_reference(events: list[dict[str, Any]]) -> None:
    eng, ref = _books(events)
    assert_books_match(eng, ref)
    _lots_match(eng, ref)


def _split_matches_reference(events: list[dict[str, Any]], cuts: list[int]) -> EngineBook:
    """The FIFO engine fed ``events`` cut at ``cuts`` equals the FIFO reference fed them
    whole (books and open lots); returns the engine."""
    ref = ReferenceBook(instruments=INSTRUMENTS, cost_basis="fifo")
    ref.apply(events)
    eng = EngineBook.create(instruments=INSTRUMENTS, cost_basis="fifo")
    for chunk in _chunks(events, cuts):
        eng.apply(chunk)
    assert_books_match(eng, ref)
    _lots_match(eng, ref)
    return eng


@settings(max_examples=80, deadline=None)
@given(data=st.data(), events=event_streams())
def test_fifo_batch_invariance(data: st.DataObject, events: list[dict[str, Any]]) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=len(events)), label="cuts")
    _split_matches_reference(events, cuts)


@settings(max_examples=80, deadline=None)
@given(events=event_streams())
def test_fifo_and_average_agree_on_total_pnl_once_flat(events: list[dict[str, Any]]) -> None:
    """Closing every position at one price: both methods realize the same total P&L."""
    ref = ReferenceBook(instruments=INSTRUMENTS)
    ref.apply(events)
    flatten = []
    for r in ref.positions():
        if r["quantity"]:
            pid = r["portfolio_id"]
            source, _, strategy = pid.partition("_")
            side = "SELL" if r["quantity"] > 0 else "BUY"
            flatten.append(fill(strategy, r["instrument_token"], side, abs(r["quantity"]),
                                123.25, source=source))
    both = []
    for basis in ("average", "fifo"):
        eng = EngineBook.create(instruments=INSTRUMENTS, cost_basis=basis)
        eng.apply(events)
        eng.apply(flatten)
        both.append(eng)
    avg, fifo = both
    assert all(r["quantity"] == 0 for r in fifo.positions())
    assert fifo.engine.lots().height == 0
    assert_books_match(fifo, avg)  # realized per position, cash, equity, aum


# ---------------------------------------------------------------------- Redis state codec

def test_lots_round_trip_through_the_redis_state_codec() -> None:
    from support.resp import parse_commands

    from pm_polars.daemon.checkpoint.codec import decode_state, encode_state
    from pm_polars.demo.feed import generate_batches

    eng = PortfolioEngine(starting_cash=1e7, cost_basis="fifo")
    applied = [eng.apply(b).fills for b in generate_batches(3, 3_000, 500, fill_rate=0.3)]
    fills = pl.concat(applied).with_columns(pl.lit("t").alias("topic"),
                                            pl.lit(0, pl.Int32).alias("partition"))
    assert eng.lots().height > 0
    writes = encode_state(eng.state, None, fills, {("t", 0): 1}, updated_ns=1,
                          key=lambda tp, table: f"{table}")
    tables = {c[1]: dict(zip(c[2::2], c[3::2], strict=True))
              for c in ([a.decode() for a in cmd] for cmd in parse_commands(b"".join(writes.commands)))
              if c[0] == "HSET"}
    back = decode_state(tables["positions"], tables["cash"], tables["marks"], [],
                        tables["meta"], instruments=eng.state.instruments)
    assert back.lots.equals(eng.lots())  # bit for bit (decoded lots are sorted)
    # a flat position's row carries no lots: rewriting it removes them
    flat = next(v for v in tables["positions"].values() if '"quantity":0,' in v)
    assert '"lots"' not in flat


def test_a_state_is_only_reloaded_under_the_method_that_booked_it() -> None:
    from pm_polars.engine.lot_state import CostBasisMismatch, check_cost_basis

    fifo = _fifo([fill("S", 1, "BUY", 3, 10.0)])
    avg = PortfolioEngine()
    avg.apply([fill("S", 1, "BUY", 3, 10.0)])
    check_cost_basis(fifo.state.positions, fifo.state.lots, "fifo", "p")
    check_cost_basis(avg.state.positions, avg.state.lots, "average", "p")
    with pytest.raises(CostBasisMismatch, match="--cost-basis is average"):
        check_cost_basis(fifo.state.positions, fifo.state.lots, "average", "partition t:0")
    with pytest.raises(CostBasisMismatch, match="booked at average cost"):
        check_cost_basis(avg.state.positions, avg.state.lots, "fifo", "partition t:0")


def test_the_archive_records_the_cost_basis_for_replay_and_eod(tmp_path: Any) -> None:
    from pm_polars.archive.config import new_engine, save_engine_config

    save_engine_config(tmp_path, PortfolioEngine(cost_basis="fifo"))
    assert new_engine(tmp_path).config.cost_basis == "fifo"
    save_engine_config(tmp_path / "avg", PortfolioEngine())
    assert new_engine(tmp_path / "avg").config.cost_basis == "average"


@st.composite
def _deep_books(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Two positions, many small fills: long lot queues, partial lot closes, flips."""
    n = draw(st.integers(1, 120))
    out = []
    for k in range(n):
        token = draw(st.sampled_from([1, 202]))  # 202: multiplier 50
        side = draw(st.sampled_from(["BUY", "BUY", "SELL"] if k % 40 < 20 else
                                    ["SELL", "SELL", "BUY"]))
        out.append(fill("S1", token, side, draw(st.integers(1, 30)),
                        draw(st.sampled_from([99.5, 100.0, 100.25, 101.0, 0.05, 1e6])),
                        fee=draw(st.sampled_from([None, 0.5])), fill_id=f"d{k}"))
    return out


@settings(max_examples=120, deadline=None)
@given(data=st.data(), events=_deep_books())
def test_fifo_long_lot_queues_split_anywhere(data: st.DataObject,
                                             events: list[dict[str, Any]]) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=6), label="cuts")
    eng = _split_matches_reference(events, cuts)
    lots = eng.engine.lots()
    assert lots.select(pl.struct("portfolio_id", "instrument_token", "lot").is_unique().all()).item()


def test_daemon_setting_reaches_the_engine_and_refuses_unknown_methods(tmp_path: Any) -> None:
    import argparse

    from pm_polars.daemon.config import ConfigError
    from pm_polars.daemon.config_sources import add_arguments, resolve

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--bootstrap-servers", "k:9092"]
    assert resolve(parser.parse_args(base), {}).engine_config().cost_basis == "average"
    fifo = resolve(parser.parse_args([*base, "--cost-basis", "fifo"]), {})
    assert fifo.engine_config().cost_basis == "fifo"
    cfg = tmp_path / "pm.toml"
    cfg.write_text('cost_basis = "fifo"\n')
    assert resolve(parser.parse_args([*base, "--config", str(cfg)]), {}).cost_basis == "fifo"
    assert resolve(parser.parse_args(base), {"PM_COST_BASIS": "fifo"}).cost_basis == "fifo"
    with pytest.raises(ConfigError, match="--cost-basis.*'lifo' is not one of average, fifo"):
        resolve(parser.parse_args([*base, "--cost-basis", "lifo"]), {})


# ------------------------------------------------------------ realized lots (tax lots)

def _match_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted((pid, tok, c or "", o or "", u, lp, cp, r) for pid, tok, c, o, u, lp, cp, r
                  in rows)


def _engine_matches(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return _match_rows(list(frame.select(
        "portfolio_id", "instrument_token", "close_fill_id", "open_fill_id", "quantity",
        "open_price", "close_price", "realized_pnl").iter_rows()))


def _same_matches(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert [g[:5] for g in got] == [w[:5] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[5:7] == w[5:7]
        assert g[7] == pytest.approx(w[7], rel=1e-12, abs=1e-9)


def test_realized_lots_by_hand() -> None:
    """The short-lots case above: buy 150 @ 45 closes 100 @ 50 and 50 @ 40; buy 100 @ 30
    closes the other 50 @ 40 (the remaining 50 open a long lot, closing nothing)."""
    from pm_polars.engine.lot_matches import realized_lots

    out = realized_lots([fill("S", 7, "SELL", 100, 50.0, fill_id="s1", ts=T0 + 1),
                         fill("S", 7, "SELL", 100, 40.0, fill_id="s2", ts=T0 + 2),
                         fill("S", 7, "BUY", 150, 45.0, fill_id="b1", ts=T0 + 3),
                         fill("S", 7, "BUY", 100, 30.0, fill_id="b2", ts=T0 + 4)])
    ns = T0 * 10**6  # open_ts in ns; the wire's ts is epoch ms
    assert out.select("close_fill_id", "open_fill_id", "side", "quantity", "open_ts",
                      "realized_pnl").rows() == [
        ("b1", "s1", "SHORT", 100, ns + 10**6, 500.0),
        ("b1", "s2", "SHORT", 50, ns + 2 * 10**6, -250.0),
        ("b2", "s2", "SHORT", 50, ns + 2 * 10**6, 500.0)]


@settings(max_examples=100, deadline=None)
@given(data=st.data(), events=event_streams())
def test_lot_matches_equal_the_reference_whole_and_per_batch(
        data: st.DataObject, events: list[dict[str, Any]]) -> None:
    from pm_polars.engine.lot_matches import lot_matches, realized_lots
    from pm_polars.events import decode_any

    ref = ReferenceBook(instruments=INSTRUMENTS, cost_basis="fifo")
    ref.apply(events)
    want = _match_rows(ref.matches)
    instruments = pl.DataFrame(INSTRUMENTS)
    _same_matches(_engine_matches(realized_lots(events, instruments)), want)
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=5), label="cuts")
    eng = PortfolioEngine(cost_basis="fifo", instruments=instruments)
    per_batch = []
    for chunk in _chunks(events, cuts):
        decoded = decode_any(chunk)
        fresh, _, _ = eng.state.seen.split(decoded.fills, None)
        per_batch.append(lot_matches(eng.state, fresh.sort("seq")))
        eng.apply_decoded(decoded)
    got = _engine_matches(pl.concat(per_batch))
    _same_matches(got, want)
    # each fill's matches sum to what the engine realized
    realized = sum(r["realized_pnl"] for r in eng.positions().to_dicts())
    assert sum(g[7] for g in got) == pytest.approx(realized, rel=1e-9, abs=1e-6)


def test_end_of_day_of_a_fifo_archive_books_fifo_and_carries_lots(tmp_path: Any) -> None:
    """The three-day book of test_eod, archived by a FIFO engine. By hand, S1 in A: buy 10
    @ 95 (D1), buy 5 @ 102, sell 8 @ 105 (D2: closes 8 of the lot @ 95, +80), sell 7 @ 106
    (D3: closes 2 @ 95 and 5 @ 102, +22 + 20)."""
    import history_helpers as hh

    from pm_polars.archive import ArchiveWriter, save_engine_config
    from pm_polars.eod.run import run_eod
    from pm_polars.eod.store import read_state

    eng = PortfolioEngine(starting_cash=hh.START, instruments=hh.INSTRUMENTS,
                          cost_basis="fifo")
    save_engine_config(tmp_path, eng)
    with ArchiveWriter(tmp_path, fsync=False) as w:
        for events in hh.DAYS.values():
            w.submit(eng.apply_decoded(hh.batch(events)))
    run_eod(tmp_path, hh.D2)
    d2 = read_state(tmp_path, hh.D2)
    assert d2.config.cost_basis == "fifo"
    assert d2.lots.filter(pl.col("portfolio_id") == "paper_S1").select(
        "quantity", "price").rows() == [(2, 95.0), (5, 102.0)]
    run_eod(tmp_path, hh.D3)  # continues from D2's state: the carried lots close first
    d3 = PortfolioEngine.restore(read_state(tmp_path, hh.D3))
    s1 = d3.positions().filter(pl.col("portfolio_id") == "paper_S1").row(0, named=True)
    assert (s1["quantity"], s1["realized_pnl"]) == (0, 80.0 + 22.0 + 20.0)
    assert d3.lots().filter(pl.col("portfolio_id") == "paper_S1").height == 0
