"""Publish batches to a real Redis through the daemon's own write path (no hand-made JSON).

:class:`BookWriter` is one daemon instance without Kafka: a ``Book`` loaded from Redis (as at
a daemon start), then per batch ``decode_messages`` -> ``apply_batch`` -> ``Checkpoint.commit``
(one MULTI/EXEC with the aggregate Lua script and the ``portfolio-updates`` message) and the
after-commit bookkeeping of ``daemon.step``. Used by the serve tests and
``bench/serve.py``; offsets are the writer's own counters per partition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import redis

from pm_polars.daemon.apply import apply_batch, settle
from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint import Checkpoint, CommitOutcome, CommitPlan
from pm_polars.daemon.intake import Decoded
from pm_polars.daemon.tick_table import TickTable
from pm_polars.engine.config import EngineConfig
from pm_polars.engine.instruments import load_instruments
from pm_polars.events import decode_messages
from pm_polars.publish.keys import Keys

Event = dict[str, Any] | bytes
FILLS, TICKS = "orders.filled.all", "market.ticks"


def _raw(events: Sequence[Event]) -> list[bytes]:
    return [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]


class BookWriter:
    """Batches of fills (by partition of ``FILLS``) and ticks, committed like the daemon."""

    def __init__(self, client: redis.Redis, prefix: str = "", *, group: str = "g",
                 partitions: int = 2, starting_cash: float = 1_000_000.0,
                 tick_publish_ns: int = 0, quantity_decimals: int = 0,
                 instruments: pl.DataFrame | None = None,
                 account_currency: str = "INR") -> None:
        self.checkpoint = Checkpoint(client, Keys(prefix), group, TICKS)
        tick_offsets, prices = self.checkpoint.load_ticks()
        self.tick_offset = tick_offsets.get(0, 0)
        self.book = Book(self.checkpoint, TickTable.from_prices(prices),
                         config=EngineConfig.of(starting_cash, 86_400.0,
                                                quantity_decimals=quantity_decimals,
                                                account_currency=account_currency),
                         instruments=load_instruments(None) if instruments is None
                         else instruments, tick_publish_ns=tick_publish_ns,
                         roll=self.checkpoint.load_roll())
        self.book.load([(FILLS, p) for p in range(partitions)])

    def batch(self, fills: Mapping[int, Sequence[Event]],
              ticks: Sequence[Event] = ()) -> tuple[CommitPlan, CommitOutcome]:
        """Apply and commit one batch; raises if it is rejected or conflicts."""
        book = self.book
        values: list[bytes] = []
        parts: list[int] = []
        offsets: list[int] = []
        next_offsets: dict[tuple[str, int], int] = {}
        for partition, events in fills.items():
            first = book.parts[(FILLS, partition)].offset or 0
            values += _raw(events)
            parts += [partition] * len(events)
            offsets += range(first, first + len(events))
            next_offsets[(FILLS, partition)] = first + len(events)
        decoded_fills = decode_messages(values, topics=[FILLS] * len(values), partitions=parts,
                                        offsets=offsets,
                                        quantity_decimals=book.config.quantity_decimals)
        tvalues = _raw(ticks)
        first_tick, self.tick_offset = self.tick_offset, self.tick_offset + len(tvalues)
        decoded_ticks = decode_messages(tvalues, topics=[TICKS] * len(tvalues),
                                        partitions=[0] * len(tvalues),
                                        offsets=list(range(first_tick, self.tick_offset)),
                                        seq_start=len(values))
        decoded = Decoded(decoded_fills.fills, decoded_ticks.ticks,
                          pl.concat([decoded_fills.rejects, decoded_ticks.rejects]),
                          len(values) + len(tvalues),
                          committable={**next_offsets, (TICKS, 0): self.tick_offset})
        if decoded.rejects.height:
            raise ValueError(f"rejected events: {decoded.rejects.to_dicts()}")
        applied = apply_batch(decoded, book)
        outcome = self.checkpoint.commit(applied.plan)
        if not outcome.committed or outcome.conflicts:
            raise RuntimeError(f"commit failed: {outcome}")
        settle(book, applied, next_offsets)
        return applied.plan, outcome
