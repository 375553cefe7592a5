"""Day-loss and drawdown alerts per portfolio: limits, state and transitions (pure).

Limits come from the TOML config's ``[alerts]`` table, most specific first (a portfolio's,
then its source's, then the default)::

    [alerts]
    topic = "pm.alerts"          # Kafka topic (key: portfolio id), default pm.alerts
    channel = "pm-alerts"        # Redis pub/sub channel (after --key-prefix), default
    max_day_loss = 50000         # default limits (account currency), any may be left out
    max_drawdown = 20000
    hysteresis = 1000
    [alerts.source.paper]
    max_day_loss = 10000
    [alerts.portfolio.paper_Momentum_1]
    max_day_loss = 2500
    hysteresis = 250

Figures are the published ones, net of fees: ``day_net_pnl = m2m - day_fees``. A **day
loss** breach is ``day_net_pnl < -max_day_loss``; it recovers when ``day_net_pnl >
-(max_day_loss - hysteresis)``. The **drawdown** is ``peak - day_net_pnl``, ``peak`` the
highest ``day_net_pnl`` published today (0 at the roll); a breach is ``drawdown >
max_drawdown``, a recovery ``drawdown < max_drawdown - hysteresis``. A breach publishes one
alert, a recovery one more; nothing while the state stays. The state (per portfolio: day,
peak, breached limits, alerts sent) is part of the partition's checkpoint, written in the
same transaction as the figures, so alerts are exactly once across restarts; each alert's
``id`` (portfolio, day, limit, kind, sequence) is deterministic, for consumers' dedupe of
the Kafka copy (produced from a Redis outbox after the commit, so at least once there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

LIMITS = ("max_day_loss", "max_drawdown")
DEFAULT_TOPIC, DEFAULT_CHANNEL = "pm.alerts", "pm-alerts"


class AlertConfigError(ValueError):
    """An ``[alerts]`` value that cannot be used (the message names it and the fix)."""


@dataclass(frozen=True)
class Limits:
    max_day_loss: float | None = None
    max_drawdown: float | None = None
    hysteresis: float = 0.0

    def merged(self, over: Limits | None) -> Limits:
        if over is None:
            return self
        return Limits(over.max_day_loss if over.max_day_loss is not None else self.max_day_loss,
                      over.max_drawdown if over.max_drawdown is not None
                      else self.max_drawdown,
                      over.hysteresis if over.hysteresis else self.hysteresis)


@dataclass(frozen=True)
class AlertRules:
    default: Limits = field(default_factory=Limits)
    sources: Mapping[str, Limits] = field(default_factory=dict)
    portfolios: Mapping[str, Limits] = field(default_factory=dict)
    topic: str = DEFAULT_TOPIC
    channel: str = DEFAULT_CHANNEL

    def limits(self, portfolio_id: str, source: str) -> Limits:
        return self.default.merged(self.sources.get(source)).merged(
            self.portfolios.get(portfolio_id))


def _limits(table: Mapping[str, Any], where: str) -> Limits:
    values: dict[str, float] = {}
    for key in (*LIMITS, "hysteresis"):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise AlertConfigError(f"{where}.{key}={v!r} must be a number >= 0 (account "
                                       "currency). Fix: e.g. max_day_loss = 50000")
            values[key] = float(v)
    return Limits(values.get("max_day_loss"), values.get("max_drawdown"),
                  values.get("hysteresis", 0.0))


def parse_rules(table: Mapping[str, Any]) -> AlertRules:
    """The ``[alerts]`` TOML table as :class:`AlertRules` (errors name the key)."""
    known = {"topic", "channel", "source", "portfolio", *LIMITS, "hysteresis"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise AlertConfigError(f"[alerts]: unknown key(s) {unknown}. Fix: use {sorted(known)}")
    nested: dict[str, dict[str, Limits]] = {}
    for kind in ("source", "portfolio"):
        sub = table.get(kind, {})
        if not isinstance(sub, Mapping):
            raise AlertConfigError(f"[alerts.{kind}] must be a table of tables. Fix: "
                                   f"[alerts.{kind}.NAME] max_day_loss = ...")
        nested[kind] = {str(k): _limits(v, f"alerts.{kind}.{k}") for k, v in sub.items()}
    return AlertRules(_limits(table, "alerts"), nested["source"], nested["portfolio"],
                      str(table.get("topic", DEFAULT_TOPIC)),
                      str(table.get("channel", DEFAULT_CHANNEL)))


@dataclass(frozen=True)
class AlertState:
    """One portfolio's alert state (``sent``: alerts published so far, for the ids)."""

    day: str | None = None
    peak: float = 0.0
    breached: frozenset[str] = frozenset()
    sent: int = 0

    def to_json(self) -> str:
        return json.dumps({"day": self.day, "peak": self.peak,
                           "breached": sorted(self.breached), "sent": self.sent})

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        d = json.loads(text)
        return cls(d.get("day"), float(d.get("peak", 0.0)), frozenset(d.get("breached", [])),
                   int(d.get("sent", 0)))


def evaluate(rules: AlertRules, states: Mapping[str, AlertState],
             rows: Mapping[str, Mapping[str, Any]], offsets: Mapping[str, int]
             ) -> tuple[dict[str, AlertState], list[dict[str, Any]]]:
    """The new states of the published portfolio ``rows`` whose state changed, and the
    alerts of the transitions (``offsets``: the batch's next offsets, ``topic:partition``)."""
    changed: dict[str, AlertState] = {}
    alerts: list[dict[str, Any]] = []
    for pid in sorted(rows):
        row = rows[pid]
        lim = rules.limits(pid, row["source"])
        if lim.max_day_loss is None and lim.max_drawdown is None:
            continue
        old = states.get(pid, AlertState())
        net, day = float(row.get("day_net_pnl") or 0.0), row.get("trading_day")
        st = old if old.day == day else replace(old, day=day, peak=0.0)
        st = replace(st, peak=max(st.peak, net))
        drawdown = st.peak - net
        breached = set(st.breached)
        checks = [("max_day_loss", lim.max_day_loss, -net),
                  ("max_drawdown", lim.max_drawdown, drawdown)]
        for name, limit, value in checks:
            if limit is None:
                continue
            if name not in breached and value > limit:
                kind = "breach"
            elif name in breached and value < limit - lim.hysteresis:
                kind = "recovery"
            else:
                continue
            breached.symmetric_difference_update({name})
            st = replace(st, sent=st.sent + 1)
            alerts.append({
                "id": f"{pid}:{day}:{name}:{kind}:{st.sent}", "type": kind, "limit": name,
                "limit_value": limit, "hysteresis": lim.hysteresis, "value": value,
                "portfolio_id": pid, "source": row["source"], "trading_day": day,
                "day_net_pnl": net, "m2m": row.get("m2m"), "day_fees": row.get("day_fees"),
                "peak": st.peak, "drawdown": drawdown, "offsets": dict(offsets),
            })
        st = replace(st, breached=frozenset(breached))
        if st != old:
            changed[pid] = st
    return changed, alerts
