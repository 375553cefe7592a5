"""Apply a decoded batch to the book and build its :class:`CommitPlan`.

1. Route: every fill must arrive on its portfolio's partition. A portfolio's partition is the
   one its first fill came on (``pm:owner``); a fill of it on another partition is refused
   with a reason (dead-lettered, counted as a partition conflict), never merged.
2. Apply fills and the batch's reduced ticks (one winner per instrument) to the engine in
   one columnar call.
3. Plan, per partition: the state rows its fills touched and its next offset; the documents
   of its changed portfolios (once per batch, never per event); its Overall/aum
   contribution; plus the winning prices and tick offsets.

The engine is mutated here; the caller takes ``book.state()`` before and restores it if
the commit fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint import TP, CommitPlan, PartitionCommit
from pm_polars.daemon.decoding import Decoded
from pm_polars.daemon.state_codec import SMALL_BATCH, encode_state
from pm_polars.daemon.tick_table import price_rows
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, empty
from pm_polars.publish.keys import part_name
from pm_polars.publish.model_rows import publish_rows
from pm_polars.publish.state_rows import StateRows

NO_REJECTS = empty(REJECT_SCHEMA)
NO_FILLS = empty(FILL_SCHEMA)


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch did (handed to sinks). Frames follow ``events.schema``."""

    fills: pl.DataFrame  # applied fills
    ticks: pl.DataFrame  # valid ticks received
    rejects: pl.DataFrame  # invalid or refused records (all dead-lettered)
    duplicates: pl.DataFrame
    changed_portfolios: list[str] = field(default_factory=list)
    written_ns: int = 0


@dataclass
class Applied:
    plan: CommitPlan
    result: BatchResult
    claims: dict[str, TP]  # portfolios first seen in this batch -> their partition
    refused: int  # fills refused for arriving on a foreign partition


def route(decoded: Decoded, book: Book, foreign: dict[str, TP]) -> tuple[Decoded, dict[str, TP]]:
    """Refuse fills on the wrong partition; claim partitions for new portfolios."""
    fills = decoded.fills
    claims: dict[str, TP] = {}
    wrong: list[tuple[str, str, int, str]] = []
    if fills.height == 0:
        return decoded, claims
    names = ("portfolio_id", "topic", "partition")
    keys = fills.select(names).unique(maintain_order=True) if fills.height > SMALL_BATCH \
        else fills  # small: the columns as lists (no query), deduplicated below
    columns = [keys.get_column(c).to_list() for c in names]
    for pid, topic, partition in dict.fromkeys(zip(*columns, strict=True)):
        tp = (topic, partition)
        owner = book.owner.get(pid) or claims.get(pid) or foreign.get(pid)
        if owner is None:
            claims[pid] = tp
        elif owner != tp:
            wrong.append((pid, topic, partition, part_name(*owner)))
    if not wrong:
        return decoded, claims
    bad = pl.DataFrame(wrong, schema={"portfolio_id": pl.String, "topic": pl.String,
                                      "partition": pl.Int32, "owner": pl.String}, orient="row")
    refused = fills.join(bad, on=["portfolio_id", "topic", "partition"], how="inner")
    reason = pl.format("portfolio {} belongs to partition {}: fills must be keyed by "
                       "portfolio_id (refused, not merged)", "portfolio_id", "owner")
    return decoded.refuse(refused, reason), claims


def apply_batch(
    decoded: Decoded,
    book: Book,
    next_offsets: dict[TP, int],
    tick_offsets: dict[int, int],
    foreign: dict[str, TP] | None = None,
    on_applied: Callable[[BatchResult], None] | None = None,
) -> Applied:
    """Apply ``decoded`` to the book's engine and return the commit plan.

    ``on_applied`` gets the :class:`BatchResult` as soon as the engine applied the batch,
    before the plan is built (the daemon starts the archive staging there).
    """
    now = time.time_ns()
    routed, claims = route(decoded, book, foreign or {})
    refused = decoded.fills.height - routed.fills.height
    reduced = book.ticks.reduce(routed.ticks)
    wins = book.ticks.merge(reduced)
    res, snap = book.apply(DecodedBatch(routed.fills, reduced, NO_REJECTS))

    def owner_of(pid: str) -> TP | None:
        return book.owner.get(pid) or claims.get(pid)

    offsets = {tp: o for tp, o in next_offsets.items() if tp in book.parts}
    republish = {tp for tp, info in book.parts.items() if info.republish}
    changed = set(res.changed_portfolios) | set(book.portfolios_of(republish))
    result = BatchResult(
        fills=res.fills, ticks=routed.ticks, rejects=routed.rejects,
        duplicates=res.duplicates if res.duplicates.height else NO_FILLS,
        changed_portfolios=sorted(changed), written_ns=now,
    )
    if on_applied is not None:
        on_applied(result)
    changed_tps = {tp for tp in map(owner_of, changed) if tp is not None} | republish
    members = {pid: tp for pid in set(book.owner) | set(claims)
               if (tp := owner_of(pid)) in changed_tps}
    cp = book.checkpoint
    rows = StateRows.fetch(snap, sorted(members))  # once for both: state and read model
    state = encode_state(snap, res.fills, offsets, now, cp.state_key, rows)
    published = publish_rows(rows, {pid: part_name(*tp) for pid, tp in members.items()},
                             changed, cp.keys, cp.group)
    plan = CommitPlan(
        partitions=[], commands=state.commands + published.commands,
        count=state.count + published.count, documents=published.documents,
        sources=published.sources, aum=published.aum, prices=price_rows(wins),
        tick_offsets=dict(tick_offsets), ts_ns=now,
    )
    for tp in sorted(set(offsets) | changed_tps):
        plan.partitions.append(PartitionCommit(
            tp=tp, expected_offset=book.parts[tp].offset,
            delta={"next_offset": str(offsets[tp])} if tp in offsets else None,
            new_portfolios=sorted(pid for pid, c in claims.items() if c == tp),
        ))
    return Applied(plan, result, claims, refused)
