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
         "market_value")
POSITION_MONEY = ("average_price", "realized_pnl", "fees", "buy_value", "sell_value",
                  "unrealized_pnl", "last_price")
POSITION_EXACT = ("quantity", "buy_quantity", "sell_quantity")


def documents(client: redis.Redis, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every ``portfolio:{id}`` document listed in the ``portfolios`` index."""
    ids = sorted(str(i) for i in client.smembers(f"{prefix}portfolios"))
    out: dict[str, dict[str, Any]] = {}
    for pid in ids:
        raw = client.get(f"{prefix}portfolio:{pid}")
        if raw is not None:
            out[pid] = json.loads(raw)
    return out


def _close(a: float, b: float, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0.0, abs_tol=rel * max(1.0, abs(a), abs(b)))


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
                   "last_price")
    for pid, want in wanted.items():
        got = docs.get(pid)
        if got is None:
            problems.append(f"{pid}: missing")
            continue
        for f in MONEY:
            if not with_marks and f in mark_fields:
                continue
            if not _close(got[f], want[f], rel):
                problems.append(f"{pid}.{f}: redis {got[f]!r} != engine {want[f]!r}")
        for tok, wpos in want["positions"].items():
            gpos = got["positions"].get(tok)
            if gpos is None:
                problems.append(f"{pid}[{tok}]: position missing")
                continue
            for f in POSITION_EXACT:
                if gpos[f] != wpos[f]:
                    problems.append(f"{pid}[{tok}].{f}: {gpos[f]!r} != {wpos[f]!r}")
            for f in POSITION_MONEY:
                if not with_marks and f in mark_fields:
                    continue
                if f == "last_price" and wpos["quantity"] == 0 and not pid.endswith("_Overall"):
                    continue  # a flat position is not republished on ticks (documented)
                if not _close(gpos[f], wpos[f], rel):
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
