"""Comparing published JSON documents with the engine's (``PortfolioEngine.portfolio``)."""

from __future__ import annotations

from typing import Any

import pytest


def same(got: Any, want: Any, where: str = "") -> None:
    """Equal documents: the same keys in the same order, the same types and values; floats
    equal to ~1e-12 relative (the publish path sums in its own order, so the last bits of a
    sum may differ from Polars')."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (where, got, want)
        for k in want:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert type(got) is float, (where, got, want)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (where, got, want)
    else:
        assert got == want and type(got) is type(want), (where, got, want)
