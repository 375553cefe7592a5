"""Engine configuration: a typed value passed to every step, never part of the state.

Units: ``starting_cash`` in account currency (credited to a portfolio at its first fill);
``dedupe_retention_ns`` in nanoseconds of event time (a seen fill id counts while its ``ts``
is at or after ``clock - retention``; ``None`` keeps every id forever). Settings given in
seconds (``pm-polars run --dedupe-retention 24h``) are converted once, by
:meth:`EngineConfig.of`. ``day_roll_tz``/``day_roll_time``: the trading day rule
(``engine.tradingday``); checked when the config is made (a ``ValueError`` names the
setting and the fix).
"""

from __future__ import annotations

from dataclasses import dataclass

from pm_polars.engine import tradingday

DEFAULT_STARTING_CASH = 1_000_000.0
NS_PER_S = 10**9


@dataclass(frozen=True)
class EngineConfig:
    """How the engine books (see the module docstring for units)."""

    starting_cash: float = DEFAULT_STARTING_CASH
    dedupe_retention_ns: int | None = None
    day_roll_tz: str = tradingday.DAY_ROLL_TZ
    day_roll_time: str = tradingday.DAY_ROLL_TIME
    # the cost-basis method (average cost today) will be configured here

    def __post_init__(self) -> None:
        tradingday.check_tz(self.day_roll_tz)
        tradingday.roll_minutes(self.day_roll_time)

    @property
    def roll_minutes(self) -> int:
        """``day_roll_time`` as minutes after local midnight."""
        return tradingday.roll_minutes(self.day_roll_time)

    @classmethod
    def of(cls, starting_cash: float = DEFAULT_STARTING_CASH,
           dedupe_retention_s: float | None = None,
           day_roll_tz: str = tradingday.DAY_ROLL_TZ,
           day_roll_time: str = tradingday.DAY_ROLL_TIME) -> EngineConfig:
        """From the user-facing units (retention in seconds; ``None``: forever)."""
        retention = None if dedupe_retention_s is None else int(dedupe_retention_s * NS_PER_S)
        return cls(float(starting_cash), retention, day_roll_tz, day_roll_time)
