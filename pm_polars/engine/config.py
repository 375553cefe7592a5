"""Engine configuration: a typed value passed to every step, never part of the state.

Units: ``starting_cash`` in account currency (credited to a portfolio at its first fill);
``dedupe_retention_ns`` in nanoseconds of event time (a seen fill id counts while its ``ts``
is at or after ``clock - retention``; ``None`` keeps every id forever). Settings given in
seconds (``pm-polars run --dedupe-retention 24h``) are converted once, by
:meth:`EngineConfig.of`. ``cost_basis``: ``"average"`` (default) or ``"fifo"`` (a reducing
fill realizes against the oldest open lots first, see ``engine.lots``).
"""

from __future__ import annotations

from dataclasses import dataclass

COST_BASES = ("average", "fifo")

DEFAULT_STARTING_CASH = 1_000_000.0
NS_PER_S = 10**9


@dataclass(frozen=True)
class EngineConfig:
    """How the engine books (see the module docstring for units)."""

    starting_cash: float = DEFAULT_STARTING_CASH
    dedupe_retention_ns: int | None = None
    cost_basis: str = "average"  # "average" | "fifo" (see ``engine.lots``)

    def __post_init__(self) -> None:
        if self.cost_basis not in COST_BASES:
            raise ValueError(f"cost_basis must be one of {', '.join(COST_BASES)}; got "
                             f"{self.cost_basis!r}")

    @classmethod
    def of(cls, starting_cash: float = DEFAULT_STARTING_CASH,
           dedupe_retention_s: float | None = None,
           cost_basis: str = "average") -> EngineConfig:
        """From the user-facing units (retention in seconds; ``None``: forever)."""
        retention = None if dedupe_retention_s is None else int(dedupe_retention_s * NS_PER_S)
        return cls(float(starting_cash), retention, cost_basis)
