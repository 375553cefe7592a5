"""The daemon's apply stage: a decoded batch into the book, and its :class:`CommitPlan`.

1. Route (``owners.route``): fills on a foreign partition are refused, new portfolios
   claim the partition their first fill came on.
2. Apply fills and ticks to the engine in one columnar call (``engine.step.apply``, through
   the book): events it refuses (a price <= 0 of an instrument without
   ``allow_negative_price``, event time out of bounds, a fill too old for the dedupe
   window, a conflicting re-send, an oversized position) join the rejects with the Kafka
   record's own bytes; the admitted ticks are reduced to one winner per instrument for the
   price table (``tick_table``).
3. Choose what to publish (``read_model``): portfolios a fill touched (and new ones) at
   once, portfolios moved only by prices when due (``--tick-publish-ms``), every portfolio
   of a (re)loaded partition; render only those.
4. Plan the commit (``checkpoint.plan.build``): per partition the state rows its fills
   touched and its next offset (from the batch's ``committable``), the published documents,
   the changed partitions' Overall/aum contributions (summed over the kept published rows);
   the winning prices and tick offsets.

The book's engine state moves on here; the caller keeps ``book.state()`` from before and
restores it if the commit fails (undo = keep the previous state).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pm_polars.daemon import owners
from pm_polars.daemon.alerts import AlertState, evaluate
from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint.plan import CommitPlan, Scope, build
from pm_polars.daemon.intake import Decoded
from pm_polars.daemon.read_model import ViewUpdate
from pm_polars.daemon.tick_table import price_rows
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty
from pm_polars.publish.model_rows import render
from pm_polars.publish.part_sums import PartSums, Rendered
from pm_polars.publish.resp import command
from pm_polars.publish.state_rows import StateRows
from pm_polars.types import TP, BatchResult, Committable

NO_REJECTS = empty(REJECT_SCHEMA)
NO_FILLS = empty(FILL_SCHEMA)


@dataclass
class Applied:
    plan: CommitPlan
    result: BatchResult
    claims: dict[str, TP]  # portfolios first seen in this batch -> their partition
    refused: int  # fills refused for arriving on a foreign partition
    views: ViewUpdate  # committed to ``book.views`` after the EXEC (``settle``)
    alert_states: dict[str, AlertState] = field(default_factory=dict)  # settled after EXEC
    alerts: list[dict[str, Any]] = field(default_factory=list)  # published by this batch


def apply_batch(
    decoded: Decoded,
    book: Book,
    foreign: dict[str, TP] | None = None,
    on_applied: Callable[[BatchResult], None] | None = None,
) -> Applied:
    """Apply ``decoded`` to the book's engine and return the commit plan.

    ``on_applied`` gets the :class:`BatchResult` as soon as the engine applied the batch,
    before the plan is built (the daemon starts the archive staging there).
    """
    now = time.time_ns()
    routed, claims = owners.route(decoded, book.owner, foreign or {})
    refused_fills = decoded.fills.height - routed.fills.height
    day_before = book.engine.state.trading_day
    # the engine judges every tick's event time (in arrival order, with the fills) and books
    # each event's trading day, so it gets them all; the price table folds in the winners of
    # the admitted ones
    res = book.apply(DecodedBatch(routed.fills, routed.ticks, NO_REJECTS))
    wins = book.ticks.merge(book.ticks.reduce(res.ticks))
    refused = routed.refuse_rows(res.rejects)
    rolled = book.engine.state.trading_day != day_before
    if rolled:  # every portfolio's day figures changed: republish and rewrite them all
        for info in book.parts.values():
            info.republish = True

    def owner_of(pid: str) -> TP | None:
        return book.owner.get(pid) or claims.get(pid)

    views = book.views
    filled = set(res.fills.get_column("portfolio_id").unique().to_list()) | set(claims)
    due = views.select(set(res.changed_portfolios) - filled, now)
    republish = {tp for tp, info in book.parts.items() if info.republish}
    published = filled | due
    changed_tps = {tp for tp in map(owner_of, published) if tp is not None} | republish
    whole = republish | {tp for tp in changed_tps if tp not in views.rows}
    published |= set(book.portfolios_of(whole))
    result = BatchResult(
        fills=res.fills, ticks=res.ticks, rejects=refused.rejects, conflicts=res.conflicts,
        duplicates=res.duplicates if res.duplicates.height else NO_FILLS,
        changed_portfolios=sorted(published), committable=dict(routed.committable),
        written_ns=now,
    )
    if on_applied is not None:
        on_applied(result)
    fx = book.fx
    rows = StateRows.fetch(book.engine.state, sorted(published),
                           fx.rate_tokens if fx is not None else ())
    update = ViewUpdate(rendered={tp: {} for tp in whole}, whole=whole, at_ns=now)
    rendered = render(rows, published, book.config.quantity_scale, book.config.mark, fx)
    for pid, r in rendered.items():
        tp = owner_of(pid)
        if tp is not None:
            update.rendered.setdefault(tp, {})[pid] = r
            update.published.add(pid)
    for tp in changed_tps:
        kept = {} if tp in whole else views.rows.get(tp, {})
        base = PartSums() if tp in whole else views.sums.get(tp, PartSums())
        update.sums[tp] = base.updated((kept.get(pid), r)
                                       for pid, r in update.rendered.get(tp, {}).items())
    scope = Scope(expected={tp: info.offset for tp, info in book.parts.items()},
                  changed_tps=changed_tps, claims=claims, rows=rows, rendered=rendered,
                  sums=update.sums,
                  rolled={tp: (info.offset, book.portfolios_of({tp}))
                          for tp, info in book.parts.items()} if rolled else None)
    cp = book.checkpoint
    plan = build(book.engine.state, book.config, result, scope, price_rows(wins),
                 cp.ticks_topic, cp.keys, cp.group)
    if rolled:
        plan.roll = book.roll_record()
    states, alerts = _alerts(book, rendered, result.committable, owner_of, plan)
    return Applied(plan, result, claims, refused_fills, update, states, alerts)


def _alerts(book: Book, rendered: dict[str, Rendered], committable: Committable,
            owner_of: Callable[[str], TP | None], plan: CommitPlan
            ) -> tuple[dict[str, AlertState], list[dict[str, Any]]]:
    """Alert transitions of the published portfolios (``daemon.alerts``), queued into the
    plan: their states (the partition's ``alerts`` hash), the outbox and the channel."""
    rules = book.alert_rules
    if rules is None or not rendered:
        return {}, []
    offsets = {f"{t}:{p}": o for (t, p), o in committable.items()}
    states, alerts = evaluate(rules, book.alert_states,
                              {pid: r[0] for pid, r in rendered.items()}, offsets)
    keys = book.checkpoint.keys
    by_tp: dict[TP, list[str]] = {}
    for pid, st in states.items():
        tp = owner_of(pid)
        if tp is not None:
            by_tp.setdefault(tp, []).extend([pid, st.to_json()])
    for tp, fields in sorted(by_tp.items()):
        plan.add(command("HSET", book.checkpoint.state_key(tp, "alerts"), *fields))
    if alerts:
        texts = [json.dumps(a, sort_keys=True) for a in alerts]
        plan.add(command("RPUSH", keys.alerts_outbox(book.checkpoint.group), *texts))
        for text in texts:
            plan.add(command("PUBLISH", keys.channel(rules.channel), text))
    return states, alerts



def settle(book: Book, applied: Applied, committable: Committable) -> None:
    """After the EXEC: partitions' offsets and republish flags, new owners, kept views."""
    for pc in applied.plan.partitions:
        info = book.parts.get(pc.tp)
        if info is None:
            continue
        if pc.delta is not None:
            info.offset = committable[pc.tp]
        info.republish = False
    book.owner.update({pid: tp for pid, tp in applied.claims.items() if tp in book.parts})
    book.views.commit(applied.views)
    book.alert_states.update(applied.alert_states)
