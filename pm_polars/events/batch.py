"""The result of decoding one micro-batch."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA, empty


@dataclass(frozen=True)
class DecodedBatch:
    """Valid fills and ticks plus every rejected record, each frame in ``seq`` order.

    ``fills`` follows ``FILL_SCHEMA``, ``ticks`` ``TICK_SCHEMA``, ``rejects`` ``REJECT_SCHEMA``.
    Every input record lands in exactly one of the three frames, so ``size`` equals the
    number of records that were decoded.
    """

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame

    @property
    def size(self) -> int:
        """Total number of records: fills + ticks + rejects."""
        return self.fills.height + self.ticks.height + self.rejects.height

    @classmethod
    def empty(cls) -> DecodedBatch:
        """A batch of zero records (all three frames empty, with their schemas)."""
        return cls(empty(FILL_SCHEMA), empty(TICK_SCHEMA), empty(REJECT_SCHEMA))
