"""Input trust, class 5 (issue 11): every setting of the engine and of the daemon is
validated at construction; the error names the setting, the value and the valid range.

Before: ``PortfolioEngine(starting_cash=nan)`` and ``dedupe_retention=-5`` were accepted
(cash NaN in every portfolio, every id expired at once), ``dedupe_retention=inf`` crashed
with an ``OverflowError`` naming nothing, and the daemon accepted ``--starting-cash inf``,
``--max-wait-ms inf`` and ``--dedupe-retention inf``.
"""

from __future__ import annotations

import math

import pytest

from pm_polars import PortfolioEngine
from pm_polars.daemon.config import ConfigError, Settings
from pm_polars.engine.config import EngineConfig, SettingError


@pytest.mark.parametrize("cash", [math.nan, math.inf, -math.inf, -1.0, 1e16])
def test_engine_starting_cash_outside_its_range_is_refused(cash: float) -> None:
    with pytest.raises(SettingError) as err:
        PortfolioEngine(starting_cash=cash)
    text = str(err.value)
    assert "starting_cash" in text and repr(cash) in text and "from 0 to 1e+15" in text


@pytest.mark.parametrize("retention", [math.nan, math.inf, -5.0, 0.0])
def test_engine_retention_outside_its_range_is_refused(retention: float) -> None:
    with pytest.raises(SettingError) as err:
        PortfolioEngine(dedupe_retention=retention)
    text = str(err.value)
    assert "dedupe_retention" in text and repr(retention) in text and "> 0" in text


@pytest.mark.parametrize(
    "kwargs",
    [{"dedupe_retention_ns": -1}, {"dedupe_retention_ns": 0}, {"max_jump_ns": 0},
     {"max_skew_ns": -10}, {"max_jump_ns": 1.5}, {"starting_cash": math.nan}],
)
def test_engine_config_is_validated_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(SettingError, match=f"setting {next(iter(kwargs))}: got"):
        EngineConfig(**kwargs)  # type: ignore[arg-type]


def test_engine_defaults_and_no_bounds_are_valid() -> None:
    config = EngineConfig.of(0.0, None, None, None)
    assert (config.dedupe_retention_ns, config.max_jump_ns, config.max_skew_ns) == (None,) * 3
    assert EngineConfig().max_jump_ns == 7 * 86_400 * 10**9 and EngineConfig().max_skew_ns is None


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("starting_cash", math.inf, "from 0 to 1e15"),
        ("starting_cash", math.nan, "from 0 to 1e15"),
        ("starting_cash", -1.0, "from 0 to 1e15"),
        ("dedupe_retention", math.inf, "at most 100 years"),
        ("dedupe_retention", -1.0, "seconds > 0"),
        ("max_wait_ms", math.inf, "at most 3,600,000"),
        ("max_wait_ms", math.nan, "milliseconds > 0"),
        ("tick_publish_ms", -1.0, "from 0"),
        ("health_timeout", math.inf, "at most 24h"),
        ("archive_roll_s", 0.0, "seconds > 0"),
        ("max_event_jump", -1.0, "from 0 (off)"),
        ("max_clock_skew", math.nan, "seconds > 0"),
        ("max_reject_ratio", math.nan, "(0, 1]"),
        ("max_events", 0, "from 1 to 10,000,000"),
        ("reject_window", -3, "from 1 to 10,000,000"),
    ],
)
def test_daemon_numeric_settings_name_setting_value_and_range(
    name: str, value: float, valid: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings(bootstrap_servers="b:1", **{name: value})  # type: ignore[arg-type]
    text = str(err.value)
    flag = "--" + name.replace("_", "-")
    assert flag in text and f"got {value!r}" in text and valid in text and "Fix" in text


def test_daemon_settings_reach_the_engine_config() -> None:
    s = Settings(bootstrap_servers="b:1", max_event_jump=3600.0, max_clock_skew=60.0)
    config = s.engine_config()
    assert config.max_jump_ns == 3600 * 10**9 and config.max_skew_ns == 60 * 10**9
    default = Settings(bootstrap_servers="b:1").engine_config()
    assert default.max_jump_ns is None and default.max_skew_ns == 300 * 10**9  # 0 = off
    assert config.dedupe_retention_ns == 86_400 * 10**9
