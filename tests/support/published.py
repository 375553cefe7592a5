"""Read the daemon's published Redis model and compare it with an in-process engine.

The reference is a ``PortfolioEngine`` that applied the same events in produce order; the
daemon must publish the same numbers. Quantities must be equal; money to ``rel`` relative
to ``max(|value|, 1)`` (aggregates are summed in a different order in Lua). A flat
strategy position's ``last_price`` is not compared: ticks only republish portfolios with an
open position in the ticked instrument, so it shows the mark of its last republication.
"""

from __future__ import annotations

import json
import math
from typing import Any

import redis

from pm_polars import PortfolioEngine

MONEY = ("cash", "total_realized_pnl", "total_fees", "total_unrealized_pnl", "equity",
         "market_value", "m2m", "day_pnl", "day_realized_pnl", "day_fees", "day_net_pnl",
         "day_carried_pnl", "day_trading_pnl")
POSITION_MONEY = ("average_price", "realized_pnl", "fees", "buy_value", "sell_value",
                  "unrealized_pnl", "last_price", "prev_close", "overnight_average_price",
                  "day_buy_value", "day_sell_value", "day_pnl", "m2m", "day_carried_pnl",
                  "day_trading_pnl")
POSITION_EXACT = ("quantity", "buy_quantity", "sell_quantity")
DAY_EXACT = ("overnight_quantity", "day_buy_quantity", "day_sell_quantity")
# a tick alone rolls the day: like marks, the day figures of a portfolio whose partition no
# instance owned when the rolling tick was read are republished by its next owner
DAY_FIELDS = ("m2m", "day_pnl", "day_net_pnl", "day_carried_pnl", "day_trading_pnl",
              "day_realized_pnl", "day_fees", "prev_close", "overnight_average_price",
              "day_buy_value", "day_sell_value", "overnight_quantity", "day_buy_quantity",
              "day_sell_quantity")


def documents(client: redis.Redis, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every ``portfolio:{id}`` document listed in the ``portfolios`` index."""
    ids = sorted(str(i) for i in client.smembers(f"{prefix}portfolios"))
    out: dict[str, dict[str, Any]] = {}
    for pid in ids:
        raw = client.get(f"{prefix}portfolio:{pid}")
        if raw is not None:
            out[pid] = json.loads(raw)
    return out


def _close(a: float, b: float, rel: float, scale: float = 0.0) -> bool:
    """Equal to ``rel`` of the larger of ``a``, ``b``, 1 and ``scale`` (the size of the
    terms a difference such as m2m was computed from: batches sum them in other orders)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0.0, abs_tol=rel * max(1.0, abs(a), abs(b), scale))


# day P&L figures are differences of sums (today's values, quantity x mark): compared
# relative to the size of those terms, not to their (possibly tiny) difference
DIFFERENCES = frozenset({"m2m", "day_pnl", "day_net_pnl", "day_carried_pnl",
                         "day_trading_pnl"})


def _terms(pos: dict[str, Any]) -> float:
    return float(abs(pos.get("day_buy_value") or 0.0) + abs(pos.get("day_sell_value") or 0.0)
            + abs(pos.get("market_value") or 0.0)
            + abs((pos.get("overnight_quantity") or 0) * (pos.get("prev_close") or 0.0)
                  * (pos.get("multiplier") or 1.0)))


def differences(
    client: redis.Redis, ref: PortfolioEngine, *, rel: float = 1e-9, prefix: str = "",
    with_marks: bool = True,
) -> list[str]:
    """Human-readable mismatches between Redis and ``ref`` (empty list: they agree).

    ``with_marks=False`` skips mark-dependent fields (unrealized, equity, market value).
    """
    docs = documents(client, prefix)
    ids = ref.portfolio_ids()
    sources = sorted({pid.split("_", 1)[0] for pid in ids})
    wanted = ref.portfolio_documents(ids + [f"{s}_Overall" for s in sources])
    problems = []
    mark_fields = ("total_unrealized_pnl", "equity", "market_value", "unrealized_pnl",
                   "last_price", *DAY_FIELDS)
    for pid, want in wanted.items():
        got = docs.get(pid)
        if got is None:
            problems.append(f"{pid}: missing")
            continue
        if with_marks and got.get("trading_day") != want["trading_day"]:
            problems.append(f"{pid}.trading_day: {got.get('trading_day')!r} != "
                            f"{want['trading_day']!r}")
        size = sum(_terms(p) for p in want["positions"].values())
        for f in MONEY:
            if not with_marks and f in mark_fields:
                continue
            if not _close(got[f], want[f], rel, size if f in DIFFERENCES else 0.0):
                problems.append(f"{pid}.{f}: redis {got[f]!r} != engine {want[f]!r}")
        for tok, wpos in want["positions"].items():
            gpos = got["positions"].get(tok)
            if gpos is None:
                problems.append(f"{pid}[{tok}]: position missing")
                continue
            for f in POSITION_EXACT + (DAY_EXACT if with_marks else ()):
                if gpos[f] != wpos[f]:
                    problems.append(f"{pid}[{tok}].{f}: {gpos[f]!r} != {wpos[f]!r}")
            for f in POSITION_MONEY:
                if not with_marks and f in mark_fields:
                    continue
                if f == "last_price" and wpos["quantity"] == 0 and not pid.endswith("_Overall"):
                    continue  # a flat position is not republished on ticks (documented)
                if not _close(gpos[f], wpos[f], rel, _terms(wpos) if f in DIFFERENCES else 0.0):
                    problems.append(f"{pid}[{tok}].{f}: {gpos[f]!r} != {wpos[f]!r}")
    extra = set(docs) - set(wanted)
    if extra:
        problems.append(f"unexpected portfolios {sorted(extra)}")
    if with_marks:
        aum_raw = client.get(f"{prefix}aum")
        want_aum = ref.aum()
        if aum_raw is None:
            problems.append("aum missing")
        else:
            aum = json.loads(aum_raw)
            if not _close(aum["total"], want_aum["total"], rel):
                problems.append(f"aum.total {aum['total']} != {want_aum['total']}")
            for src, v in want_aum["by_source"].items():
                if not _close(aum["by_source"].get(src), v, rel):
                    problems.append(f"aum.{src} {aum['by_source'].get(src)} != {v}")
    return problems
