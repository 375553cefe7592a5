"""Input trust (issue 11): a property-based adversarial suite over every wire field.

Hostile streams: huge and negative integers, floats at the limits, NaN/inf, empty and
non-UTF-8 strings, wrong JSON types, extreme and missing timestamps (other units, far
future, far past), colliding ids, duplicated and conflicting re-sends, re-split batches.
Invariants:

* never a crash;
* never a non-finite or wrapped number in state (positions within +-2**53 units, every
  money figure finite);
* every input record is applied, a duplicate, or in ``rejects`` with a reason;
* the accepted events give the state of the scalar reference (``tests/reference.py``);
* the same stream split differently gives the same state and the same verdicts.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ReferenceBook

from pm_polars import PortfolioEngine
from pm_polars.engine.refusals import MAX_POSITION

T = 1_795_600_550_123  # ms
DAY = 86_400_000
START = 1_000_000.0

def field(sane: st.SearchStrategy[Any], *hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly sane values (9 in 10), sometimes hostile ones."""
    bad = st.one_of(*hostile)
    return st.integers(0, 9).flatmap(lambda k: bad if k == 0 else sane)


ints = st.one_of(st.integers(-5, 10), st.sampled_from(
    [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**12, 10**12 + 1, 10**30]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    [0.0, -0.0, 5e-324, 1e-320, 1e12, 1e12 + 1, 1e307, 1.7976931348623157e308, 100.5, 99.25]))
strings = st.one_of(st.sampled_from(["", " ", "paper", "live", "a_b", "x:y", "Overall",
                                     "S_Overall", "S", "T", "\u00e9", "\ud800"]),
                    st.text(max_size=4))
wrong = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
times = field(
    st.integers(-3, 12).map(lambda k: T + k * DAY // 4),  # a few days around T
    st.none(),
    st.sampled_from([T // 1000, T * 1000, T * 10**6, 0, -T, T + 3650 * DAY, 2**63, 10**30,
                     "2026-11-25T09:55:50.123Z", "2026-02-30T00:00:00Z", "soon", 1.5e12]),
)
sane_qty = st.integers(1, 1000)
sane_price = st.sampled_from([99.5, 100.0, 101.25, 2500.0])


fills = st.fixed_dictionaries({
    "event_type": field(st.just("order_fill"), strings, wrong),
    "source": field(st.sampled_from(["paper", "live"]), strings, wrong, ints),
    "fill_id": field(st.sampled_from(["f1", "f2", "f3", "f4", None]), strings, ints, floats,
                     wrong),
    "ts": times,
    "quantity": field(sane_qty, ints, floats, wrong, strings),
    "fill_price": field(sane_price, floats, ints, wrong),
    "fee": field(st.sampled_from([0.0, 1.5, -0.5, None]), floats, wrong),
    "original_signal": field(
        st.fixed_dictionaries({
            "strategy_id": field(st.sampled_from(["S", "T"]), strings, wrong, ints),
            "instrument_token": field(st.sampled_from([1, 2]), ints, floats, wrong),
            "signal_type": field(st.sampled_from(["BUY", "SELL"]),
                                 st.sampled_from(["buy", "Sell", "HOLD", ""]), wrong),
        }),
        wrong, strings),
})
ticks = st.fixed_dictionaries({
    "event_type": st.just("market_tick"),
    "instrument_token": field(st.sampled_from([1, 2]), ints, floats, wrong),
    "last_price": field(sane_price, floats, ints, wrong),
    "ts": times,
})


def _encode(event: dict[str, Any], mangle: int) -> bytes:
    text = json.dumps(event, allow_nan=True).encode("utf-8", "surrogatepass")
    if mangle == 1:
        return text.replace(b'"paper"', b'"pa\xffper"')  # not UTF-8
    if mangle == 2:
        return text[: len(text) // 2]  # cut
    return text


records = st.lists(
    st.tuples(st.integers(0, 2).flatmap(lambda k: ticks if k == 0 else fills),
              st.integers(0, 19).map(lambda k: k if k < 3 else 0)).map(
        lambda pair: _encode(*pair)), min_size=1, max_size=24)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _state_is_sane(eng: PortfolioEngine) -> None:
    positions = eng.state.positions
    biggest = positions.get_column("quantity").abs().max()
    assert biggest is None or int(biggest) <= MAX_POSITION  # type: ignore[arg-type]
    for name, dtype in positions.schema.items():
        if dtype == pl.Float64:
            assert positions.get_column(name).is_finite().all(), name
    assert eng.state.cash.get_column("cash").is_finite().all()
    for row in eng.portfolios(aggregates=True).iter_rows(named=True):
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)


def _canonical(result: Any) -> list[dict[str, Any]]:
    """The events the engine accepted (applied, duplicate, tick), in arrival order, written
    plainly for the reference (its mark times are not compared)."""
    rows = []
    for kind in ("fills", "duplicates"):
        for r in getattr(result, kind).iter_rows(named=True):
            rows.append((r["seq"], {
                "event_type": "order_fill", "source": r["source"], "fill_id": r["fill_id"],
                "quantity": r["quantity"], "fill_price": r["fill_price"], "fee": r["fee"],
                "original_signal": {"strategy_id": r["strategy_id"], "signal_type": r["side"],
                                    "instrument_token": r["instrument_token"]}}))
    for r in result.ticks.iter_rows(named=True):
        rows.append((r["seq"], {"event_type": "market_tick", "last_price": r["last_price"],
                                "instrument_token": r["instrument_token"]}))
    return [event for _, event in sorted(rows, key=lambda pair: pair[0])]


@PROPERTY
@given(records)
def test_hostile_streams_never_crash_and_every_record_is_accounted_for(
    stream: list[bytes],
) -> None:
    eng = PortfolioEngine(starting_cash=START)
    result = eng.apply(stream)
    seqs = sorted([*result.fills["seq"], *result.duplicates["seq"], *result.ticks["seq"],
                   *result.rejects["seq"]])
    assert seqs == list(range(len(stream)))  # each record exactly once
    assert result.rejects["reason"].null_count() == 0
    assert (result.rejects["reason"].str.len_chars() > 0).all()
    engine_said = ("max_jump", "max_skew", "older than the dedupe window", "conflicts with",
                   "would pass")
    for seq, value, reason in result.rejects.select("seq", "raw", "reason").iter_rows():
        if any(word in reason for word in engine_said):  # the decoded event's JSON
            assert json.loads(value)["event_type"] in ("order_fill", "market_tick")
        else:  # decode rejects keep the record's own bytes
            assert value == stream[seq]
    _state_is_sane(eng)
    ref = ReferenceBook(starting_cash=START)
    assert ref.apply(_canonical(result)) == []  # the reference accepts what the engine did
    want = {(r["portfolio_id"], r["instrument_token"]): r for r in ref.positions()}
    got = {(r["portfolio_id"], r["instrument_token"]): r for r in eng.positions().to_dicts()}
    assert want.keys() == got.keys()
    for key, w in want.items():
        assert got[key]["quantity"] == w["quantity"], key
        for name in ("average_price", "realized_pnl", "fees"):
            assert got[key][name] == pytest.approx(w[name], rel=1e-9, abs=1e-9), (key, name)
    cash = {r["portfolio_id"]: r["cash"] for r in ref.portfolios()}
    assert {r["portfolio_id"]: r["cash"] for r in eng.portfolios().to_dicts()} == \
        pytest.approx(cash, rel=1e-9)


@PROPERTY
@given(records, st.lists(st.integers(0, 24), max_size=6), st.sampled_from([None, 86_400]))
def test_hostile_streams_give_the_same_state_and_verdicts_however_split(
    stream: list[bytes], cuts: list[int], retention: int | None,
) -> None:
    whole = PortfolioEngine(starting_cash=START, dedupe_retention=retention)
    one = whole.apply(stream)
    split = PortfolioEngine(starting_cash=START, dedupe_retention=retention)
    bounds = [0, *sorted({min(c, len(stream)) for c in cuts}), len(stream)]
    verdicts: dict[str, list[tuple[int, str]]] = {"rejects": [], "duplicates": []}
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b > a:
            part = split.apply(stream[a:b])
            verdicts["rejects"] += [(a + s, r) for s, r in
                                    zip(part.rejects["seq"], part.rejects["reason"], strict=True)]
            verdicts["duplicates"] += [(a + s, "") for s in part.duplicates["seq"]]
    assert verdicts["rejects"] == list(zip(one.rejects["seq"], one.rejects["reason"],
                                           strict=True))
    assert verdicts["duplicates"] == [(s, "") for s in one.duplicates["seq"]]
    assert whole.clock_ns == split.clock_ns
    columns = ["portfolio_id", "instrument_token", "quantity"]
    assert whole.positions().select(columns).rows() == split.positions().select(columns).rows()
    w, s = whole.portfolios(), split.portfolios()
    assert w["portfolio_id"].to_list() == s["portfolio_id"].to_list()
    assert w["cash"].to_list() == pytest.approx(s["cash"].to_list(), rel=1e-12)
    _state_is_sane(split)
