"""The names every stage shares, defined once: partitions, offsets, record kinds, results.

* :data:`TP` ``(topic, partition)`` of a Kafka partition.
* :data:`Committable` ``{TP: next offset}``: for each partition a batch covers, the first
  offset it does NOT hold (last offset + 1), as in arroyo. Every batch object carries its
  own (``RawBatch.committable``, ``Decoded.committable``, ``BatchResult.committable``);
  nothing passes offsets alongside a batch.
* :data:`RECORD_ID` the columns that name a Kafka record (``topic, partition, offset``):
  dead-letter keys, archive file names and staging de-duplication all use it.
* :data:`KINDS` the four kinds of rows a batch produces (and the archive keeps).
* :class:`EventFrames` any batch of fill/tick/reject frames (decoded or applied).
* :class:`BatchResult` what applying one batch did.

Importing this module costs nothing (Polars is imported for type checking only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:
    import polars as pl

TP = tuple[str, int]
Committable = Mapping[TP, int]
Kind = Literal["fills", "ticks", "rejects", "duplicates"]
KINDS: Final[tuple[Kind, ...]] = ("fills", "ticks", "rejects", "duplicates")
RECORD_ID: Final[tuple[str, str, str]] = ("topic", "partition", "offset")


class EventFrames(Protocol):
    """Fills, ticks and rejects frames following ``pm_polars.events.schema``
    (``DecodedBatch`` and ``BatchResult`` both fit)."""

    @property
    def fills(self) -> pl.DataFrame: ...
    @property
    def ticks(self) -> pl.DataFrame: ...
    @property
    def rejects(self) -> pl.DataFrame: ...


@dataclass(frozen=True)
class BatchResult:
    """What one batch did. Frames follow the schemas in ``pm_polars.events.schema``.

    ``committable``: the next offset per partition the batch covered (fills and ticks
    partitions; empty for a batch that did not come from Kafka). ``written_ns``: ns UTC
    when the daemon built the batch's commit (0 outside the daemon).
    """

    fills: pl.DataFrame  # fills applied (duplicates excluded), arrival order
    ticks: pl.DataFrame  # ticks received (including ones older than the stored mark)
    rejects: pl.DataFrame  # invalid (or refused) records with a ``reason``
    duplicates: pl.DataFrame  # fills ignored as already seen
    changed_portfolios: list[str] = field(default_factory=list)
    committable: Committable = field(default_factory=dict)
    conflicts: int = 0  # fills refused (in ``rejects``) as a re-used fill_id with new content
    written_ns: int = 0

    @property
    def fills_applied(self) -> int:
        return self.fills.height

    @property
    def ticks_applied(self) -> int:
        return self.ticks.height


# The engine's name for it (``pm_polars.ApplyResult``): the same type.
ApplyResult = BatchResult
