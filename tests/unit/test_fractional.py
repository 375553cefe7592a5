"""Fractional quantities (``quantity_decimals``): exact fixed point, average cost and FIFO.

Hand-worked numbers (arithmetic in the docstrings); the scalar reference holds quantities
as exact ``Fraction``s (``tests/reference.py``); the properties check engine = reference,
batch invariance, exact sums and exact closes on the state's atoms (``Int64``, 10**-d units).
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import EngineBook, ReferenceBook, assert_books_match, fill, same_quantity, tick

from pm_polars import PortfolioEngine
from pm_polars.engine.config import EngineConfig, SettingError
from pm_polars.events import decode_any

BTC = 1  # instrument token of the crypto-sized cases


def _row(eng: PortfolioEngine) -> dict[str, Any]:
    rows = eng.positions().to_dicts()
    assert len(rows) == 1
    return rows[0]


def _atoms(eng: PortfolioEngine, column: str = "quantity") -> list[int]:
    return eng.state.positions.get_column(column).to_list()


# ------------------------------------------------------------------------- hand-worked

BTC_TRADES = [fill("S", BTC, "BUY", 0.015, 60_000.0, fill_id="a"),
              fill("S", BTC, "BUY", 0.005, 62_000.0, fill_id="b"),
              fill("S", BTC, "SELL", 0.012, 63_000.0, fill_id="c"),
              tick(BTC, 64_000.0)]


def test_crypto_sized_trade_average_cost() -> None:
    """Buy 0.015 BTC @ 60,000 (cost 900) and 0.005 @ 62,000 (310): 0.02 at 1,210 / 0.02 =
    60,500. Sell 0.012 @ 63,000: realized 0.012 x 2,500 = 30; 0.008 left at 60,500, marked
    at 64,000: unrealized 0.008 x 3,500 = 28. Cash 1e6 - 900 - 310 + 756 = 999,546. Sell
    the last 0.008 @ 61,000: +0.008 x 500 = 4, realized 34, the position exactly 0."""
    eng = PortfolioEngine(quantity_decimals=8)
    assert eng.apply(BTC_TRADES).rejects.height == 0
    row = _row(eng)
    assert row["quantity"] == 0.008 and _atoms(eng) == [800_000]
    assert row["average_price"] == pytest.approx(60_500.0, rel=1e-12)
    assert row["realized_pnl"] == pytest.approx(30.0, abs=1e-9)
    assert row["unrealized_pnl"] == pytest.approx(28.0, abs=1e-9)
    assert row["market_value"] == pytest.approx(512.0, abs=1e-9)
    assert eng.portfolios()["cash"].item() == pytest.approx(999_546.0, abs=1e-6)
    eng.apply([fill("S", BTC, "SELL", 0.008, 61_000.0, fill_id="d")])
    row = _row(eng)
    assert _atoms(eng) == [0] and row["quantity"] == 0.0
    assert row["realized_pnl"] == pytest.approx(34.0, abs=1e-9)
    assert (row["buy_quantity"], row["sell_quantity"]) == (0.02, 0.02)
    doc = eng.portfolio("paper_S")["positions"][str(BTC)]
    assert doc["quantity"] == 0 and isinstance(doc["quantity"], int)
    assert doc["buy_quantity"] == 0.02


def test_crypto_sized_trade_fifo_partial_closes() -> None:
    """FIFO on the same trades: the sell of 0.012 closes 0.012 of the 60,000 lot (+36);
    lots 0.003 @ 60,000 and 0.005 @ 62,000 stay (average 490 / 0.008 = 61,250). The last
    sell of 0.008 @ 61,000 closes 0.003 (+3) and 0.005 (-5): realized 34, as average cost
    once flat, and no lot is left."""
    eng = PortfolioEngine(quantity_decimals=8, cost_basis="fifo")
    eng.apply(BTC_TRADES)
    row = _row(eng)
    assert row["realized_pnl"] == pytest.approx(36.0, abs=1e-9)
    assert row["average_price"] == pytest.approx(61_250.0, rel=1e-12)
    lots = eng.lots()
    assert lots["quantity"].to_list() == [0.003, 0.005]
    assert eng.state.lots["quantity"].to_list() == [300_000, 500_000]
    eng.apply([fill("S", BTC, "SELL", 0.008, 61_000.0, fill_id="d")])
    assert _row(eng)["realized_pnl"] == pytest.approx(34.0, abs=1e-9)
    assert _atoms(eng) == [0] and eng.lots().height == 0


def test_tenths_add_up_exactly_and_close_to_zero() -> None:
    """0.1 + 0.2 units is exactly 0.3 (in float64, 0.1 + 0.2 is 0.30000000000000004)."""
    eng = PortfolioEngine(quantity_decimals=8)
    eng.apply([fill("S", BTC, "BUY", 0.1, 100.0), fill("S", BTC, "BUY", 0.2, 100.0)])
    assert _atoms(eng) == [30_000_000] and _row(eng)["quantity"] == 0.3
    eng.apply([fill("S", BTC, "SELL", 0.3, 100.0)])
    assert _atoms(eng) == [0] and _row(eng)["quantity"] == 0.0
    assert _row(eng)["buy_quantity"] == 0.3


def test_aggregate_nets_strategies_exactly() -> None:
    """Three strategies hold 0.1 each: the Overall row holds exactly 0.3; a fourth short
    of 0.3 makes it exactly flat."""
    eng = PortfolioEngine(quantity_decimals=8)
    eng.apply([fill(s, BTC, "BUY", 0.1, 100.0) for s in ("A", "B", "C")])
    assert eng.portfolio("paper_Overall")["positions"][str(BTC)]["quantity"] == 0.3
    eng.apply([fill("D", BTC, "SELL", 0.3, 100.0)])
    assert eng.portfolio("paper_Overall")["positions"][str(BTC)]["quantity"] == 0


def test_integer_feed_keeps_its_integers_and_figures() -> None:
    events = [fill("S", 7, "BUY", 75, 24_510.5, fee=20.0), fill("S", 7, "SELL", 25, 24_530.0),
              fill("T", 7, "SELL", 50, 24_520.25), tick(7, 24_540.0)]
    plain, fixed = PortfolioEngine(), PortfolioEngine(quantity_decimals=8)
    plain.apply(events)
    fixed.apply(events)
    assert plain.positions()["quantity"].dtype == pl.Int64
    for pid in ("paper_S", "paper_T", "paper_Overall"):
        a, b = plain.portfolio(pid), fixed.portfolio(pid)
        for token, pos in a["positions"].items():
            other = b["positions"][token]
            for name in ("quantity", "buy_quantity", "sell_quantity", "day_quantity"):
                assert other[name] == pos[name] and type(other[name]) is int, (pid, name)
            for name in ("realized_pnl", "unrealized_pnl", "market_value", "buy_value"):
                assert other[name] == pytest.approx(pos[name], rel=1e-12, abs=1e-9)
        assert b["cash"] == pytest.approx(a["cash"], rel=1e-12)


# ------------------------------------------------------------------------------ refusals

def _reasons(events: list[Any], decimals: int) -> list[str]:
    return decode_any(events, quantity_decimals=decimals).rejects["reason"].to_list()


def test_more_places_than_allowed_are_refused_naming_the_limit() -> None:
    nine = fill("S", BTC, "BUY", 0.123456789, 100.0)
    assert _reasons([nine], 8) == [
        "quantity: at most 8 decimal places (quantity_decimals = 8; at most 8 supported), "
        "got 0.123456789"]
    assert _reasons([fill("S", BTC, "BUY", 0.015, 100.0)], 2)[0].startswith(
        "quantity: at most 2 decimal places (quantity_decimals = 2")
    # the same reason from JSON messages (the per-record path) and from a frame
    message = json.dumps(nine).encode()
    assert _reasons([message], 8) == _reasons([nine], 8)
    assert _reasons([b'{"event_type": "order_fill", "source": "paper", "quantity": 1.5e-9, '
                     b'"fill_price": 1.0, "original_signal": {"strategy_id": "S", '
                     b'"instrument_token": 1, "signal_type": "BUY"}}'], 8)[0].endswith(
        "got 1.5e-9")  # quoted as the record wrote it


def test_integers_only_by_default_as_ever() -> None:
    half = fill("S", BTC, "BUY", 0.5, 100.0)
    assert _reasons([half], 0) == ["quantity: must be an integer, got 0.5"]
    assert _reasons([json.dumps(half).encode()], 0) == ["quantity: must be an integer, got 0.5"]
    # a later field's own problem does not hide it (an integer read stops at the quantity)
    worse = {**half, "fill_price": "abc"}
    assert _reasons([worse], 0) == ["quantity: must be an integer, got 0.5"]
    assert _reasons([worse], 8)[0].startswith("fill_price:")


def test_bounds_and_sign_of_fractional_quantities() -> None:
    assert _reasons([fill("S", BTC, "BUY", -0.5, 100.0)], 8) == [
        "quantity: must be > 0, got -0.5"]
    assert _reasons([fill("S", BTC, "BUY", 100_001, 100.0)], 8) == [
        "quantity: must be at most 100000 units, got 100001"]
    assert _reasons([fill("S", BTC, "BUY", 100_000, 100.0)], 8) == []


def test_setting_is_validated() -> None:
    with pytest.raises(SettingError, match="quantity_decimals: got 9; valid: an integer from 0"):
        EngineConfig(quantity_decimals=9)
    with pytest.raises(SettingError, match="quantity_decimals"):
        PortfolioEngine(quantity_decimals=-1)


def test_frames_with_float_or_decimal_quantities() -> None:
    base = {"event_type": ["order_fill"] * 2, "source": ["paper"] * 2,
            "strategy_id": ["S"] * 2, "instrument_token": [BTC] * 2,
            "signal_type": ["BUY", "SELL"], "fill_price": [100.0, 110.0]}
    for column in (pl.Series("quantity", [0.25, 0.125]),
                   pl.Series("quantity", [Decimal("0.25"), Decimal("0.125")],
                             dtype=pl.Decimal(20, 10))):
        eng = PortfolioEngine(quantity_decimals=8)
        assert eng.apply(pl.DataFrame(base).with_columns(column)).rejects.height == 0
        assert _atoms(eng) == [12_500_000]
        assert _row(eng)["realized_pnl"] == pytest.approx(0.125 * 10.0, abs=1e-12)


def test_snapshot_round_trip_keeps_decimals_and_atoms(tmp_path: Any) -> None:
    eng = PortfolioEngine(quantity_decimals=8, cost_basis="fifo")
    eng.apply(BTC_TRADES)
    eng.snapshot().write(tmp_path / "snap")
    back = PortfolioEngine.restore(tmp_path / "snap")
    assert back.config.quantity_decimals == 8
    assert back.state.positions.equals(eng.state.positions)
    assert back.state.lots.equals(eng.state.lots)
    back.apply([fill("S", BTC, "SELL", 0.008, 61_000.0, fill_id="d")])
    assert _atoms(back) == [0]


# ---------------------------------------------------------------------------- properties

TOKENS = [1, 202]
INSTRUMENTS = [{"instrument_token": 202, "multiplier": 50.0}]


@st.composite
def fractional_streams(draw: st.DrawFn, decimals: int) -> list[dict[str, Any]]:
    """Fills with quantities of at most ``decimals`` places (a float whose repr is that
    decimal), prices on a 0.05 grid, and ticks."""
    n = draw(st.integers(1, 40))
    events: list[dict[str, Any]] = []
    for k in range(n):
        token = draw(st.sampled_from(TOKENS))
        if draw(st.integers(0, 9)) == 0:
            events.append(tick(token, draw(st.integers(1, 4000)) * 0.05))
            continue
        atoms = draw(st.integers(1, 3 * 10**decimals))
        quantity = float(Decimal(atoms).scaleb(-decimals))
        events.append(fill(draw(st.sampled_from(["A", "B"])), token,
                           draw(st.sampled_from(["BUY", "SELL"])), quantity,
                           draw(st.integers(1, 4000)) * 0.05, fee=0.01, fill_id=f"f{k}"))
    return events


def _lots_match(got: PortfolioEngine, want: ReferenceBook) -> None:
    g = got.lots().sort("portfolio_id", "instrument_token", "lot").to_dicts()
    w = want.lots()
    assert [(r["portfolio_id"], r["instrument_token"]) for r in g] == [x[:2] for x in w]
    assert all(same_quantity(r["quantity"], x[2]) for r, x in zip(g, w, strict=True))
    assert all(r["price"] == pytest.approx(x[3], rel=1e-12) for r, x in zip(g, w, strict=True))


def _exact_state(eng: PortfolioEngine, ref: ReferenceBook, decimals: int) -> None:
    """The state's atoms are the reference's exact Fractions x 10**d, every one."""
    scale = 10**decimals
    want = {(r["portfolio_id"], r["instrument_token"]): r for r in ref.positions()}
    for row in eng.state.positions.to_dicts():
        w = want[(row["portfolio_id"], row["instrument_token"])]
        for name in ("quantity", "buy_quantity", "sell_quantity"):
            assert Fraction(row[name], scale) == Fraction(w[name]), name


@pytest.mark.parametrize("cost_basis", ["average", "fifo"])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), decimals=st.sampled_from([3, 8]))
def test_engine_matches_reference(data: st.DataObject, decimals: int, cost_basis: str) -> None:
    events = data.draw(fractional_streams(decimals), label="events")
    ref = ReferenceBook(instruments=INSTRUMENTS, cost_basis=cost_basis,
                        quantity_decimals=decimals)
    ref.apply(events)
    eng = EngineBook.create(instruments=INSTRUMENTS, cost_basis=cost_basis,
                            quantity_decimals=decimals)
    eng.apply(events)
    assert_books_match(eng, ref)
    _exact_state(eng.engine, ref, decimals)
    if cost_basis == "fifo":
        _lots_match(eng.engine, ref)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), cost_basis=st.sampled_from(["average", "fifo"]))
def test_batch_invariance(data: st.DataObject, cost_basis: str) -> None:
    events = data.draw(fractional_streams(8), label="events")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=5), label="cuts"))
    whole = PortfolioEngine(instruments=pl.DataFrame(INSTRUMENTS), cost_basis=cost_basis,
                            quantity_decimals=8)
    whole.apply(events)
    split = PortfolioEngine(instruments=pl.DataFrame(INSTRUMENTS), cost_basis=cost_basis,
                            quantity_decimals=8)
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        if end > start:
            split.apply(events[start:end])
    integers = ["portfolio_id", "instrument_token", "quantity", "buy_quantity", "sell_quantity"]
    key = ["portfolio_id", "instrument_token"]
    assert split.state.positions.select(integers).sort(key).equals(
        whole.state.positions.select(integers).sort(key))
    lots = ["portfolio_id", "instrument_token", "quantity", "price"]
    assert split.state.lots.sort(*key, "lot").select(lots).equals(
        whole.state.lots.sort(*key, "lot").select(lots))
    for name in ("realized_pnl", "buy_value", "sell_value"):
        assert split.positions()[name].to_list() == pytest.approx(
            whole.positions()[name].to_list(), rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(amounts=st.lists(st.integers(1, 10**9), min_size=1, max_size=30),
       cost_basis=st.sampled_from(["average", "fifo"]))
def test_sums_exact_and_a_position_closes_to_zero(amounts: list[int], cost_basis: str) -> None:
    """Buys of any 8-place amounts, then one sell of their exact decimal sum: flat, exactly."""
    quantities = [Decimal(a).scaleb(-8) for a in amounts]
    buys = [fill("S", BTC, "BUY", float(q), 100.0 + i) for i, q in enumerate(quantities)]
    eng = PortfolioEngine(quantity_decimals=8, cost_basis=cost_basis)
    eng.apply(buys)
    assert _atoms(eng) == [sum(amounts)]
    assert _row(eng)["quantity"] == float(sum(quantities))
    eng.apply([fill("S", BTC, "SELL", float(sum(quantities)), 150.0)])
    assert _atoms(eng) == [0] and _atoms(eng, "sell_quantity") == [sum(amounts)]
    assert eng.lots().height == 0
    assert eng.portfolio("paper_S")["positions"][str(BTC)]["quantity"] == 0


def test_engine_refusals_quote_the_quantity_in_units() -> None:
    """A re-send of a fill id with other content is refused by the engine (a conflict); its
    ``raw`` (the event's wire JSON) gives the quantity as sent, not in atoms."""
    eng = PortfolioEngine(quantity_decimals=8)
    eng.apply([fill("S", BTC, "BUY", 0.015, 60_000.0, fill_id="x")])
    result = eng.apply([fill("S", BTC, "BUY", 0.02, 60_000.0, fill_id="x")])
    assert result.rejects.height == 1
    assert json.loads(result.rejects["raw"][0])["quantity"] == 0.02
    assert _atoms(eng) == [1_500_000]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), decimals=st.sampled_from([3, 8]))
def test_daemon_rendering_equals_the_views(data: st.DataObject, decimals: int) -> None:
    """The daemon's published rows (``publish.model_rows.render`` on the state's atoms)
    show the same quantities as ``positions()`` (units, ints when integral) and the same
    money up to the summation order."""
    from pm_polars.publish.model_rows import render
    from pm_polars.publish.state_rows import StateRows

    eng = PortfolioEngine(quantity_decimals=decimals, instruments=pl.DataFrame(INSTRUMENTS))
    eng.apply(data.draw(fractional_streams(decimals)))
    pids = eng.state.cash["portfolio_id"].to_list()
    rendered = render(StateRows.fetch(eng.state, pids), pids, eng.config.quantity_scale)
    got = [p for pid in sorted(rendered) for p in rendered[pid][1]]
    want = eng.positions().to_dicts()
    assert len(got) == len(want)
    quantities = ["quantity", "buy_quantity", "sell_quantity", "overnight_quantity",
                  "day_buy_quantity", "day_sell_quantity", "day_quantity"]
    for g, w in zip(got, want, strict=True):
        assert [g[c] for c in quantities] == [w[c] for c in quantities]
        assert all(type(g[c]) is int or not float(g[c]).is_integer() for c in quantities)
        for c in ("realized_pnl", "unrealized_pnl", "market_value", "m2m", "day_pnl"):
            assert g[c] == pytest.approx(w[c], rel=1e-12, abs=1e-9), c


# ------------------------------------------------------------- the batch read vs per record

EDGE_QUANTITIES = ["0.015", "75", "1e-3", "-0.5", "2.50000000", "1E2", "1.5e-7", "0.00000001",
                   "0.000000001", "-0", "0.0", "-0.0", "99999999999.99999999", "1e15",
                   "12345678901234567890", "7.5e1", "100000.00000001", "5e-9", "0.10",
                   "1.23456789e3", '"0.5"', "true", "null"]


def _edge_fill(quantity: str, i: int) -> bytes:
    return ('{"event_type":"order_fill","source":"paper","fill_id":"f' + str(i) + '","ts":'
            + str(1795600550123 + i) + ',"quantity":' + quantity + ',"fill_price":100.5,'
            '"original_signal":{"strategy_id":"S","instrument_token":1,"signal_type":"SELL"}}'
            ).encode()


@pytest.mark.parametrize("decimals", [1, 2, 8])
def test_the_batch_read_and_the_per_record_path_agree_on_every_quantity(
    decimals: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clean batch at ``quantity_decimals`` > 0 is read whole with ``quantity`` as an exact
    decimal (``read.read_clean``); the per-record reader (``fallback``) decides the same rows
    with the same reasons, so the fast path changes nothing but speed."""
    import pm_polars.events.decode as decode
    from pm_polars.events import decode_messages
    from pm_polars.events.read import read_clean, to_binary

    for q in EDGE_QUANTITIES:
        batch = [_edge_fill(q, 0), _edge_fill("1", 1)]
        fast = decode_messages(batch, quantity_decimals=decimals)
        with monkeypatch.context() as m:
            m.setattr(decode, "read_clean", lambda arr, decimals=0: None)
            slow = decode_messages(batch, quantity_decimals=decimals)
        assert fast.fills.equals(slow.fills), (q, fast.fills, slow.fills)
        assert fast.rejects.equals(slow.rejects), (q, fast.rejects, slow.rejects)
    clean = [_edge_fill("0.5", 0), _edge_fill("75", 1)]
    assert read_clean(to_binary(clean), decimals) is not None  # the batch read is taken
    stringly = [_edge_fill('"0.015"', 0)]
    assert read_clean(to_binary(stringly), decimals) is None  # a string: general path
