"""The demo feed under a test's own topic names, and the in-process reference for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pm_polars import PortfolioEngine
from pm_polars.demo.feed import generate_messages

from .names import STARTING_CASH, Names

Record = tuple[str, bytes | None, bytes | None]  # (topic, key, value)


def feed(names: Names, n: int, *, seed: int = 7, fill_rate: float = 0.3,
         **kwargs: Any) -> list[Record]:
    """The demo feed with this test's topic names: ``(topic, key, value)``."""
    return [(names.topic(m.topic), m.key, m.value)
            for m in generate_messages(seed, n, fill_rate=fill_rate, **kwargs)]


def reference(records: Sequence[Record]) -> PortfolioEngine:
    """The in-process engine applied to the same records in produce order."""
    eng = PortfolioEngine(starting_cash=STARTING_CASH)
    eng.apply([value for _, _, value in records])
    return eng
