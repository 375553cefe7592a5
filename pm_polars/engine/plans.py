"""Collecting the engine's per-batch query plans.

Every eager Polars call builds a plan and collects it, and at micro-batch sizes (a few
hundred rows) that fixed cost is most of the work. The accounting functions therefore chain
their steps lazily and collect once per chain, with the flags Polars' own eager methods use
(no optimizer passes: on a handful of rows they cost more than they save). Results are the
same frames the eager calls would give.
"""

from __future__ import annotations

import polars as pl

# Polars' eager methods collect with ``QueryOptFlags._eager()``; without it, no optimizations
_FLAGS = getattr(pl.QueryOptFlags, "_eager", pl.QueryOptFlags.none)()


def run(plan: pl.LazyFrame) -> pl.DataFrame:
    """Collect a per-batch plan (see the module docstring)."""
    return plan.collect(engine="in-memory", optimizations=_FLAGS)
