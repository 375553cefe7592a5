"""Sinks: consumers of committed batches (e.g. the Parquet archive), one typed interface.

A :class:`Sink` is called after the batch's Redis commit succeeded, in registration order,
with the batch's :class:`~pm_polars.types.BatchResult`, which carries its ``committable``
(next offset per fill and tick partition). A sink that raises in ``submit`` is logged and
the daemon goes on: Redis is the source of truth. ``flush`` is called on shutdown before
``close``; ``maintain`` whenever the loop is idle.

A sink that must hold every committed batch exactly once (the archive, see
``pm_polars.archive.sink``) also overrides the *pre-commit* hooks: ``stage(result)`` for
every attempt to commit a batch, then ``barrier()`` right before the EXEC, which returns
once what was staged is durable, and sets ``staged = True``. Their errors are not
contained: they fail the attempt, which is retried like a Redis error (nothing was
committed).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from pm_polars.types import BatchResult

log = logging.getLogger(__name__)


class Sink(ABC):
    """What the daemon calls on a sink; see the module docstring."""

    staged: ClassVar[bool] = False  # True: stage/barrier make batches durable pre-commit

    @abstractmethod
    def submit(self, result: BatchResult) -> None:
        """A committed batch."""

    def flush(self) -> None:
        """Write out what is buffered (shutdown)."""
        return None  # optional hook: nothing to do by default

    def close(self) -> None:
        """Release resources (after ``flush``)."""
        return None  # optional hook: nothing to do by default

    def maintain(self) -> None:
        """Periodic work while the loop is idle (e.g. time-based rolls)."""
        return None  # optional hook: nothing to do by default

    def stage(self, result: BatchResult) -> None:
        """Pre-commit: start making ``result`` durable (staging sinks only)."""
        return None  # optional hook: nothing to do by default

    def barrier(self) -> None:
        """Pre-commit: return once everything staged is durable (staging sinks only)."""
        return None  # optional hook: nothing to do by default


class Sinks:
    """The registered sinks; errors of ``submit``/``flush``/``close`` are contained per sink."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = []
        for sink in sinks or []:
            self.register(sink)

    def register(self, sink: Sink) -> None:
        self.sinks.append(sink)

    @property
    def staging(self) -> list[Sink]:
        return [s for s in self.sinks if s.staged]

    def stage(self, result: BatchResult) -> None:
        """Pre-commit: start making ``result`` durable in every staging sink (raises)."""
        for sink in self.staging:
            sink.stage(result)

    def barrier(self) -> None:
        """Pre-commit: wait until every staging sink holds what was staged (raises)."""
        for sink in self.staging:
            sink.barrier()

    def submit(self, result: BatchResult) -> None:
        for sink in self.sinks:
            try:
                sink.submit(result)
            except Exception:
                log.exception("event=sink_failed sink=%s", type(sink).__name__)

    def maintain(self) -> None:
        for sink in self.sinks:
            try:
                sink.maintain()
            except Exception:
                log.exception("event=sink_maintain_failed sink=%s", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            for step in (sink.flush, sink.close):
                try:
                    step()
                except Exception:
                    log.exception("event=sink_close_failed sink=%s", type(sink).__name__)
