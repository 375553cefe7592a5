"""What one batch writes: the :class:`CommitPlan`, built from the book after the apply.

Per partition: the state rows its fills touched and its next offset (``codec``); the
documents of the portfolios the batch publishes (once per batch, never per event; which
ones: ``daemon.read_model``) and its Overall/aum contribution (``publish.model_rows``); plus the winning prices and tick offsets. A
:class:`CommitOutcome` says whether the commit happened (see ``store.Checkpoint.commit``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pm_polars.daemon.checkpoint.codec import encode_state
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.state import EngineState
from pm_polars.publish.keys import Keys, part_name
from pm_polars.publish.model_rows import publish_rows
from pm_polars.publish.part_sums import PartSums, Rendered
from pm_polars.publish.state_rows import StateRows
from pm_polars.types import TP, BatchResult


@dataclass
class PartitionCommit:
    """What one batch changes for one owned fill partition (the rows are plan-wide)."""

    tp: TP
    expected_offset: int | None  # stored next_offset the engine state corresponds to
    delta: dict[str, str] | None  # its new ``meta``; None: it consumed nothing (tick-only)
    new_portfolios: list[str] = field(default_factory=list)  # owner check


@dataclass
class CommitPlan:
    """Everything one batch writes.

    ``commands`` (``count`` of them): state and read-model writes already encoded (RESP,
    see ``publish.resp``), queued first; ``documents``: strategy portfolios they rewrite;
    ``sources`` whose ``{source}_Overall`` and ``aum`` the aggregate script recomputes;
    ``prices`` items ``(token, ts text, price JSON)``; ``tick_offsets`` next offset per
    ticks partition; ``roll``: the trading day this batch rolled to and the prices at the
    roll (kept in ``pm:day:{group}``, only ever moved to a later day).
    """

    partitions: list[PartitionCommit]
    commands: list[bytes] = field(default_factory=list)
    count: int = 0
    documents: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    aum: bool = False
    prices: list[tuple[str, str, str]] = field(default_factory=list)
    tick_offsets: dict[int, int] = field(default_factory=dict)
    ts_ns: int = 0
    roll: tuple[int, str] | None = None  # a roll: (trading day, roll prices JSON)
    quantity_decimals: int = 0  # the contributions' quantities are atoms of 10**-d units

    def add(self, data: bytes) -> None:
        """Queue one more encoded command (after the state and read-model writes)."""
        self.commands.append(data)
        self.count += 1

    def is_empty(self) -> bool:
        return not (self.partitions or self.prices or self.tick_offsets or self.roll)

    @property
    def updated(self) -> list[str]:
        """Portfolios this plan rewrites (strategies and ``{source}_Overall``)."""
        return sorted({*self.documents, *(f"{s}_Overall" for s in self.sources)})


@dataclass
class CommitOutcome:
    """``stale``: partitions another owner moved on (TP -> stored offset); nothing written.

    ``writers``: for those, the stored ``updated_ns`` (the ``ts_ns`` of the plan that wrote
    them: one of our own earlier attempts when only its EXEC reply was lost).
    """

    stale: dict[TP, int | None] = field(default_factory=dict)
    writers: dict[TP, int | None] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return not self.stale


@dataclass(frozen=True)
class Scope:
    """Where a batch writes: the owned partitions (stored offsets), the partitions whose
    portfolios it publishes, the new claims, the state rows of the published portfolios
    (``rows``: at least every portfolio the fills touched), their ``rendered`` rows and,
    per changed partition, the sums of its rows as published after the batch (``sums``,
    see ``publish.part_sums`` and ``daemon.read_model``)."""

    expected: Mapping[TP, int | None]  # owned partition -> stored next_offset
    changed_tps: Collection[TP]
    claims: Mapping[str, TP]
    rows: StateRows
    rendered: Mapping[str, Rendered]
    sums: Mapping[TP, PartSums]
    # a batch that rolled the trading day: every owned partition's stored offset and
    # portfolios, all of whose state rows are rewritten (``codec.encode_state``)
    rolled: Mapping[TP, tuple[int | None, list[str]]] | None = None


def build(state: EngineState, config: EngineConfig, result: BatchResult, scope: Scope,
          prices: list[tuple[str, str, str]], ticks_topic: str, keys: Keys,
          group: str) -> CommitPlan:
    """The plan writing ``result`` (applied to ``state``) for ``scope``.

    ``result.committable`` gives the next offsets (fill partitions outside ``scope.expected``
    are not ours and are ignored; ticks partitions go to ``tick_offsets``).
    """
    offsets = {tp: o for tp, o in result.committable.items() if tp in scope.expected}
    ticks = {p: o for (t, p), o in result.committable.items() if t == ticks_topic}
    rows = scope.rows  # fetched once: state and read model

    def state_key(tp: TP, table: str) -> str:
        return keys.partition_state(group, tp[0], tp[1], table)

    encoded = encode_state(state, config.dedupe_retention_ns, result.fills, offsets,
                           result.written_ns, state_key, rows, scope.rolled,
                           config.quantity_decimals,
                           account_currency=config.account_currency, mark=config.mark)
    published = publish_rows(scope.rendered,
                             {part_name(*tp): sums for tp, sums in scope.sums.items()}, keys,
                             group)
    plan = CommitPlan(
        partitions=[], commands=encoded.commands + published.commands,
        count=encoded.count + published.count, documents=published.documents,
        sources=published.sources, aum=published.aum, prices=prices,
        tick_offsets=ticks, ts_ns=result.written_ns,
        quantity_decimals=config.quantity_decimals,
    )
    for tp in sorted(set(offsets) | set(scope.changed_tps)):
        plan.partitions.append(PartitionCommit(
            tp=tp, expected_offset=scope.expected[tp],
            delta={"next_offset": str(offsets[tp])} if tp in offsets else None,
            new_portfolios=sorted(pid for pid, c in scope.claims.items() if c == tp),
        ))
    return plan
