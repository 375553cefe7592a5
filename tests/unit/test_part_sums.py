"""``publish.part_sums``: incremental exact sums equal the correctly rounded sums of the rows
currently published, whatever order portfolios were republished in."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pm_polars.publish.contributions import PORTFOLIO_SUMS, POSITION_SUMS
from pm_polars.publish.model_rows import unit
from pm_polars.publish.part_sums import ATOMS, PartSums, Rendered

money = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


def _rendered(pid: str, values: list[float], qty: int) -> Rendered:
    row: dict[str, Any] = {"portfolio_id": pid, "source": "paper", "strategy_id": pid}
    for i, f in enumerate(PORTFOLIO_SUMS):
        row[f] = qty if f == "open_positions" else values[i % len(values)]
    pos: dict[str, Any] = {"portfolio_id": pid, "instrument_token": 7, "multiplier": 1.0,
                           "last_price": values[0], "average_price": values[-1],
                           "prev_close": values[0], "overnight_average_price": values[0]}
    for i, f in enumerate(POSITION_SUMS):
        if f not in ("cost", "cost0"):
            pos[f] = qty if "quantity" in f else values[(i + 1) % len(values)]
    return row, [pos]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.lists(money, min_size=1, max_size=4),
                          st.integers(-50, 50)), min_size=1, max_size=40))
def test_incremental_equals_exact_sum_of_current_rows(steps: list[tuple[int, list[float], int]]
                                                      ) -> None:
    sums, current = PartSums(), dict[str, Rendered]()
    for who, values, qty in steps:  # each step republishes one portfolio
        pid = f"p{who}"
        new = _rendered(pid, values, qty)
        sums = sums.updated([(current.get(pid), new)])
        current[pid] = new
    doc = json.loads(sums.documents()["paper"][0])
    for f in PORTFOLIO_SUMS:
        want = sum(r[0][f] for r in current.values()) if f == "open_positions" else \
            math.fsum(r[0][f] for r in current.values())
        assert doc["totals"][f] == want, f
    pos = doc["positions"]["7"]
    assert pos["quantity"] == sum(r[1][0]["quantity"] for r in current.values())
    assert pos["cost"] == math.fsum(r[1][0]["average_price"] * float(r[1][0]["quantity"])
                                    for r in current.values())
    assert pos["realized_pnl"] == math.fsum(r[1][0]["realized_pnl"] for r in current.values())
    assert pos["m2m"] == math.fsum(r[1][0]["m2m"] for r in current.values())
    assert pos["overnight_quantity"] == sum(r[1][0]["overnight_quantity"]
                                            for r in current.values())
    assert pos["cost0"] == math.fsum(r[1][0]["overnight_average_price"]
                                     * float(r[1][0]["overnight_quantity"])
                                     for r in current.values())


def test_update_leaves_the_previous_value_untouched() -> None:
    one = PartSums().updated([(None, _rendered("a", [1.5], 2))])
    two = one.updated([(_rendered("a", [1.5], 2), _rendered("a", [4.0], 3))])
    first, second = (json.loads(s.documents()["paper"][0]) for s in (one, two))
    assert first["totals"]["cash"] == 1.5 and second["totals"]["cash"] == 4.0
    assert first["positions"]["7"]["quantity"] == 2
    assert second["positions"]["7"]["quantity"] == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-2**53, 2**53)), min_size=1,
                max_size=40))
def test_fractional_quantities_sum_to_exact_atoms(steps: list[tuple[int, int]]) -> None:
    """Rows published in units (``model_rows.unit`` at 10^8 atoms per unit) carrying their
    atoms: the contribution's quantities are the exact sum of the atoms, however
    republished, even where the units' doubles cannot hold every decimal (~9 x 10^7)."""
    sums, atoms = PartSums(), dict[str, int]()
    current: dict[str, Rendered] = {}
    for who, a in steps:
        pid = f"p{who}"
        new = _rendered(pid, [1.0], 0)
        fields = ("quantity", "buy_quantity", "sell_quantity", "overnight_quantity",
                  "day_buy_quantity", "day_sell_quantity", "day_quantity")
        for f in fields:
            new[1][0][f] = unit(a, 10**8)
        new[1][0][ATOMS] = dict.fromkeys(fields, a)
        sums = sums.updated([(current.get(pid), new)])
        current[pid], atoms[pid] = new, a
    pos = json.loads(sums.documents()["paper"][0])["positions"]["7"]
    want = sum(atoms.values())
    assert pos["quantity"] == pos["buy_quantity"] == pos["overnight_quantity"] == want
    assert pos["day_quantity"] == want and type(pos["quantity"]) is int


def test_unit_renders_atoms_as_json_wants_them() -> None:
    assert [unit(a, 10**8) for a in (1_500_000, -1_500_000, 7_500_000_000, 0, 1)] == [
        0.015, -0.015, 75, 0, 1e-08]
    assert type(unit(7_500_000_000, 10**8)) is int and unit(75, 1) == 75
    assert unit(3, 10) == 0.3 and repr(unit(3, 10)) == "0.3"  # not 0.30000000000000004
