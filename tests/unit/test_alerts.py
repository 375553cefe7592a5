"""Alert transitions (``daemon.alerts.evaluate``) on hand-worked figures, and the config.

Limits: day loss 100, drawdown 50, hysteresis 10 (account currency); each step of a
``day_net_pnl`` path is worked by hand beside it (peak, drawdown = peak - net, loss = -net).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pm_polars.daemon.alerts import AlertRules, AlertState, Limits, evaluate, parse_rules
from pm_polars.daemon.config import ConfigError
from pm_polars.daemon.config_sources import read_file

RULES = AlertRules(default=Limits(100.0, 50.0, 10.0))


def row(net: float, day: str = "2026-03-02", pid: str = "paper_S") -> dict[str, Any]:
    return {"portfolio_id": pid, "source": pid.split("_")[0], "trading_day": day,
            "day_net_pnl": net, "m2m": net + 1.0, "day_fees": 1.0}


def run(path: list[tuple[float, str]], rules: AlertRules = RULES
        ) -> list[list[tuple[str, str]]]:
    states: dict[str, AlertState] = {}
    out = []
    for net, day in path:
        changed, alerts = evaluate(rules, states, {"paper_S": row(net, day)}, {"t:0": 7})
        states.update(changed)
        out.append([(a["type"], a["limit"]) for a in alerts])
    return out


def test_breach_once_recover_once_with_hysteresis() -> None:
    d = "2026-03-02"
    got = run([(20.0, d), (-25.0, d), (-31.0, d), (-101.0, d), (-150.0, d), (-95.0, d),
               (-89.0, d), (-60.0, d), (-19.0, d), (30.0, d), (-21.0, d)])
    assert got == [
        [],                                   # peak 20
        [],                                   # drawdown 45 <= 50
        [("breach", "max_drawdown")],         # drawdown 51
        [("breach", "max_day_loss")],         # loss 101 > 100
        [],                                   # still breached: nothing
        [],                                   # loss 95: not below 100 - 10
        [("recovery", "max_day_loss")],       # loss 89 < 90
        [],                                   # drawdown 80
        [("recovery", "max_drawdown")],       # drawdown 39 < 40
        [],                                   # new peak 30
        [("breach", "max_drawdown")],         # drawdown 51 again
    ]


def test_a_new_day_restarts_the_peak_and_recovers() -> None:
    got = run([(50.0, "2026-03-02"), (-5.0, "2026-03-02"), (-5.0, "2026-03-03")])
    assert got == [[], [("breach", "max_drawdown")], [("recovery", "max_drawdown")]]


def test_alert_carries_figures_offsets_and_a_deterministic_id() -> None:
    _, alerts = evaluate(RULES, {}, {"paper_S": row(-120.0)}, {"orders:3": 42})
    assert [x["limit"] for x in alerts] == ["max_day_loss", "max_drawdown"]  # peak 0: dd 120
    a = alerts[0]
    assert alerts[1]["id"] == "paper_S:2026-03-02:max_drawdown:breach:2"
    assert a["id"] == "paper_S:2026-03-02:max_day_loss:breach:1"
    assert (a["day_net_pnl"], a["m2m"], a["limit_value"], a["offsets"]) == (
        -120.0, -119.0, 100.0, {"orders:3": 42})


def test_most_specific_limits_win(tmp_path: Path) -> None:
    cfg = tmp_path / "pm.toml"
    cfg.write_text('bootstrap_servers = "b:1"\n[alerts]\nmax_day_loss = 1000\nhysteresis = 5\n'
                   '[alerts.source.paper]\nmax_day_loss = 100\nmax_drawdown = 70\n'
                   '[alerts.portfolio.paper_S]\nmax_day_loss = 10\n')
    rules = read_file(cfg)[0]["alerts"]
    assert rules.limits("paper_S", "paper") == Limits(10.0, 70.0, 5.0)
    assert rules.limits("paper_T", "paper") == Limits(100.0, 70.0, 5.0)
    assert rules.limits("live_S", "live") == Limits(1000.0, None, 5.0)
    assert rules.topic == "pm.alerts"


def test_bad_alert_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"alerts.source.paper.max_day_loss=-1"):
        parse_rules({"source": {"paper": {"max_day_loss": -1}}})
    cfg = tmp_path / "pm.toml"
    cfg.write_text('bootstrap_servers = "b:1"\n[alerts]\nmax_loss = 5\n')
    with pytest.raises(ConfigError, match="unknown key.*max_loss"):
        read_file(cfg)
