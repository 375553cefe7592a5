"""Input trust, class 3 (issue 11): identity is unambiguous.

``portfolio_id = f"{source}_{strategy_id}"``: before, ``("a_b", "c")`` and ``("a", "b_c")``
both became ``a_b_c`` and merged silently (one source vanished from AUM), and a strategy
named ``Overall`` collided with the ``{source}_Overall`` aggregate row. Now a source is
1-64 characters of ``A-Za-z0-9.-`` (no ``_``: the first ``_`` ends it), so distinct pairs
can never give one id, in one batch or across restarts (no state is needed to keep it so);
``Overall`` and ``*_Overall`` strategies are refused; tokens are positive integers.
"""

from __future__ import annotations

import polars as pl
import pytest
from test_decode import enc, fill, tick

from pm_polars import PortfolioEngine
from pm_polars.events import decode_dicts, decode_frame, decode_messages


def test_colliding_pairs_no_longer_merge() -> None:
    eng = PortfolioEngine(starting_cash=1000.0)
    result = eng.apply([
        enc(fill(source="a_b", signal={"strategy_id": "c"}, fill_id="f-1")),
        enc(fill(source="a", signal={"strategy_id": "b_c"}, fill_id="f-2")),
    ])
    assert result.fills["portfolio_id"].to_list() == ["a_b_c"]  # only ("a", "b_c")
    assert result.fills["source"].to_list() == ["a"]
    [reason] = result.rejects["reason"].to_list()
    assert reason.startswith("source: must be 1-64 characters of A-Z a-z 0-9 . -")
    assert reason.endswith("got 'a_b'")
    assert eng.aum()["by_source"].keys() == {"a"}


@pytest.mark.parametrize("source", ["", "a_b", "x:y", "é", "a" * 65, "tab\t"])
def test_source_outside_the_character_set_is_refused(source: str) -> None:
    batch = decode_messages([enc(fill(source=source))])
    assert batch.fills.height == 0
    assert batch.rejects["reason"][0].startswith("source: must be")


@pytest.mark.parametrize("name", ["Overall", "X_Overall", "a_b_Overall"])
def test_aggregate_names_are_reserved(name: str) -> None:
    eng = PortfolioEngine()
    result = eng.apply([enc(fill(signal={"strategy_id": name}))])
    assert result.fills.height == 0
    assert result.rejects["reason"][0] == (
        "original_signal.strategy_id: 'Overall' and names ending '_Overall' are reserved for "
        f"the aggregate rows, got '{name}'")
    assert eng.portfolios(aggregates=True).height == 0


def test_names_that_only_contain_overall_are_strategies() -> None:
    eng = PortfolioEngine()
    eng.apply([enc(fill(signal={"strategy_id": "Overall_Momentum"}))])
    assert eng.portfolio_ids() == ["paper_Overall_Momentum"]
    ids = eng.portfolios(aggregates=True)["portfolio_id"].to_list()
    assert ids == ["paper_Overall_Momentum", "paper_Overall"]


def test_key_separators_in_a_strategy_stay_readable() -> None:
    eng = PortfolioEngine()
    eng.apply([enc(fill(signal={"strategy_id": "a:b|c_d"}))])
    [pid] = eng.portfolio_ids()
    source, _, strategy = pid.partition("_")  # the first "_" always ends the source
    assert (source, strategy) == ("paper", "a:b|c_d")


@pytest.mark.parametrize("token", [0, -1, -(2**63)])
def test_instrument_tokens_are_positive_integers(token: int) -> None:
    events = [fill(signal={"instrument_token": token}), tick(instrument_token=token)]
    for batch in (decode_messages([enc(e) for e in events]), decode_dicts(events)):
        assert batch.fills.height == 0 and batch.ticks.height == 0
        assert batch.rejects["reason"].to_list() == [
            f"original_signal.instrument_token: must be a positive integer, got {token}",
            f"instrument_token: must be a positive integer, got {token}",
        ]
    frame = decode_frame(pl.DataFrame([tick(instrument_token=token)]))
    assert frame.rejects["reason"].to_list() == [
        f"instrument_token: must be a positive integer, got {token}"]
