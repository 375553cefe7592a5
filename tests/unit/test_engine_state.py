"""Engine state invariants the read path relies on.

* positions are kept sorted by instrument_token (ticks find holders by binary search);
* ``changed_portfolios`` equals a brute-force recomputation: portfolios with applied fills
  plus every portfolio holding an open position in an instrument whose mark changed.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from reference import fill, tick

from pm_polars import PortfolioEngine


def _random_batch(rng: random.Random, ts: int, tick_share: float) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for _ in range(rng.randint(1, 40)):
        token = rng.choice([11, 22, 33, 44, 55])
        if rng.random() < tick_share:
            events.append(tick(token, round(rng.uniform(90, 110), 2), ts=ts + rng.randint(-5, 5)))
        else:
            events.append(
                fill(
                    rng.choice(["S1", "S2", "S3"]), token, rng.choice(["BUY", "SELL"]),
                    rng.randint(1, 5), round(rng.uniform(90, 110), 2),
                    source=rng.choice(["paper", "live"]), ts=ts,
                )
            )
    return events


def _marks(eng: PortfolioEngine) -> dict[int, float]:
    pos = eng.positions()
    return dict(zip(pos["instrument_token"].to_list(), pos["last_price"].to_list(), strict=False))


@pytest.mark.parametrize("tick_share", [0.5, 0.0])  # 0.0: marks are the latest fill prices
def test_positions_sorted_and_changed_portfolios_exact(tick_share: float) -> None:
    rng = random.Random(5)
    eng = PortfolioEngine()
    for k in range(60):
        before_marks = _marks(eng)
        result = eng.apply(_random_batch(rng, 1_795_600_000_000 + 10 * k, tick_share))
        tokens = eng.snapshot().positions["instrument_token"]
        assert tokens.is_sorted(), "positions must stay sorted by instrument_token"
        after = eng.positions()
        after_marks = _marks(eng)
        moved = {t for t, p in after_marks.items() if before_marks.get(t) != p}
        holders = after.filter(
            pl.col("instrument_token").is_in(sorted(moved)) & (pl.col("quantity") != 0)
        )["portfolio_id"].to_list()
        expected = set(result.fills["portfolio_id"].to_list()) | set(holders)
        assert set(result.changed_portfolios) == expected
