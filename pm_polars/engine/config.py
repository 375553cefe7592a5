"""Engine configuration: a typed value passed to every step, never part of the state.

Units: ``starting_cash`` in account currency (credited to a portfolio at its first fill);
``dedupe_retention_ns`` in nanoseconds of event time (a seen fill id counts while its ``ts``
is at or after ``clock - retention``; ``None`` keeps every id forever); ``max_jump_ns``: how
far ahead of the accepted high-water mark of event time one event may be (``None``: no
bound); ``max_skew_ns``: how far ahead of the wall clock (``None``: not checked, the
default outside the daemon, so backtests of any date work). Settings given in seconds
(``pm-polars run --dedupe-retention 24h``) are converted once, by :meth:`EngineConfig.of`.

``day_roll_tz``/``day_roll_time``: the trading day rule (``engine.tradingday``).
``cost_basis``: ``"average"`` (default) or ``"fifo"`` (a reducing fill realizes against the
oldest open lots first, see ``engine.lots``).
``quantity_decimals``: 0 (default: integer quantities, as always) to ``MAX_QUANTITY_DECIMALS``
(8). With ``d > 0`` every quantity the state holds (positions, day counters, FIFO lots) is a
signed ``Int64`` count of *atoms* of ``10**-d`` units (``engine.fixedpoint``): sums are exact
integers, a position closes to exactly 0; views show units as ``Float64``.
``account_currency``: the ISO 4217 code every portfolio total is reported in (default
``"INR"``); instruments quoted or settled in another currency are converted on read at the
latest rate (``engine.currencies``).
``mark``: ``"last"`` (default: every position at its instrument's last price) or
``"bid_ask"`` (a long's unrealized P&L and market value at the latest tick's ``bid``, a
short's at its ``ask``, each falling back to the last price when that side is missing;
see ``engine.marks``).

Every setting is validated at construction: :class:`SettingError` names the setting, the
value and the valid range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pm_polars.engine import tradingday

COST_BASES = ("average", "fifo")
MARKS = ("last", "bid_ask")
MAX_QUANTITY_DECIMALS = 8

DEFAULT_STARTING_CASH = 1_000_000.0
NS_PER_S = 10**9
DEFAULT_MAX_JUMP_S = 7 * 86_400.0  # a week: longer than any exchange closure
DEFAULT_ACCOUNT_CURRENCY = "INR"
MAX_CASH = 1e15  # account currency; above it money sums lose the paisa in float64


class SettingError(ValueError):
    """An engine setting is invalid; the message names the setting, the value and the
    valid range."""


class QuantityDecimalsMismatch(ValueError):
    """Stored quantities (a daemon's Redis state, an archive) are atoms of another
    ``quantity_decimals`` than the one configured: reading them would rescale them."""


def _check(name: str, value: object, ok: bool, valid: str) -> None:
    if not ok:
        raise SettingError(f"setting {name}: got {value!r}; valid: {valid}")


def is_currency(value: object) -> bool:
    """A three-letter currency code in capitals (``"INR"``, ``"USD"``, ``"BTC"``)."""
    return isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha() \
        and value.isupper()


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _ns(name: str, value: object) -> None:
    """``None`` or a positive integer number of nanoseconds."""
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
    _check(name, value, ok, "None (no bound) or an integer number of nanoseconds > 0")


def seconds_to_ns(name: str, seconds: float | None) -> int | None:
    """A duration in seconds (``None``: no bound) as ns; refused unless finite and > 0."""
    if seconds is None:
        return None
    ok = _real(seconds) and seconds > 0 and seconds * NS_PER_S < 2**62
    _check(name, seconds, ok, "None (no bound) or a finite number of seconds > 0, below 146 years")
    return max(1, int(seconds * NS_PER_S))


@dataclass(frozen=True)
class EngineConfig:
    """How the engine books (see the module docstring for units)."""

    starting_cash: float = DEFAULT_STARTING_CASH
    dedupe_retention_ns: int | None = None
    max_jump_ns: int | None = int(DEFAULT_MAX_JUMP_S) * NS_PER_S
    max_skew_ns: int | None = None
    day_roll_tz: str = tradingday.DAY_ROLL_TZ
    day_roll_time: str = tradingday.DAY_ROLL_TIME
    cost_basis: str = "average"  # "average" | "fifo" (see ``engine.lots``)
    quantity_decimals: int = 0  # 0: integer units; d: atoms of 10**-d units
    account_currency: str = DEFAULT_ACCOUNT_CURRENCY  # ISO 4217, e.g. "INR", "USD"
    mark: str = "last"  # "last" | "bid_ask" (see ``engine.marks``)

    @property
    def quantity_scale(self) -> int:
        """Atoms per unit, ``10 ** quantity_decimals`` (1: quantities are units)."""
        return int(10**self.quantity_decimals)

    def __post_init__(self) -> None:
        cash = self.starting_cash
        _check("starting_cash", cash, _real(cash) and 0 <= cash <= MAX_CASH,
               f"a finite amount from 0 to {MAX_CASH:g} (account currency)")
        _ns("dedupe_retention_ns", self.dedupe_retention_ns)
        _ns("max_jump_ns", self.max_jump_ns)
        _ns("max_skew_ns", self.max_skew_ns)
        tradingday.check_tz(self.day_roll_tz)
        tradingday.roll_minutes(self.day_roll_time)
        _check("cost_basis", self.cost_basis, self.cost_basis in COST_BASES,
               "one of " + ", ".join(COST_BASES))
        d = self.quantity_decimals
        _check("quantity_decimals", d,
               isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_QUANTITY_DECIMALS,
               f"an integer from 0 (integer quantities) to {MAX_QUANTITY_DECIMALS} "
               "(decimal places of a fill's quantity)")
        _check("account_currency", self.account_currency, is_currency(self.account_currency),
               "a three-letter ISO 4217 code in capitals, e.g. INR or USD")
        _check("mark", self.mark, self.mark in MARKS, "one of " + ", ".join(MARKS))

    @property
    def roll_minutes(self) -> int:
        """``day_roll_time`` as minutes after local midnight."""
        return tradingday.roll_minutes(self.day_roll_time)

    @classmethod
    def of(cls, starting_cash: float = DEFAULT_STARTING_CASH,
           dedupe_retention_s: float | None = None,
           max_jump_s: float | None = DEFAULT_MAX_JUMP_S,
           max_skew_s: float | None = None, *,
           day_roll_tz: str = tradingday.DAY_ROLL_TZ,
           day_roll_time: str = tradingday.DAY_ROLL_TIME,
           cost_basis: str = "average", quantity_decimals: int = 0,
           account_currency: str = DEFAULT_ACCOUNT_CURRENCY, mark: str = "last") -> EngineConfig:
        """From the user-facing units (durations in seconds; ``None``: no bound)."""
        _check("starting_cash", starting_cash, _real(starting_cash),
               f"a finite amount from 0 to {MAX_CASH:g} (account currency)")
        return cls(float(starting_cash), seconds_to_ns("dedupe_retention", dedupe_retention_s),
                   seconds_to_ns("max_jump", max_jump_s), seconds_to_ns("max_skew", max_skew_s),
                   day_roll_tz, day_roll_time, cost_basis, quantity_decimals,
                   account_currency, mark)
