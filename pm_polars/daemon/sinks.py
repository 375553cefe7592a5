"""Sinks: consumers of committed batches (e.g. the Parquet archive).

A sink is called after the batch's Redis commit succeeded, in registration order, with the
batch's :class:`~pm_polars.daemon.processor.BatchResult` and its next offsets
(``{(topic, partition): next offset}`` for fills and ``{("<ticks topic>", p): ...}`` for
ticks). A sink that raises in ``submit`` is logged and the daemon goes on: Redis is the
source of truth. ``flush`` is called on shutdown before ``close``.

A sink that must hold every committed batch exactly once (the archive, see
``archive_sink``) also implements the *pre-commit* hooks: ``stage(result)`` for every
attempt to commit a batch, then ``barrier()`` right before the EXEC, which returns once what
was staged is durable. Their errors are not contained: they fail the attempt, which is
retried like a Redis error (nothing was committed). ``maintain()`` (optional) is called from
the loop when it is idle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What the daemon needs from a sink (``pm_polars.archive.ArchiveWriter`` fits)."""

    def submit(self, result: Any, offsets: Mapping[tuple[str, int], int]) -> None: ...
    def flush(self) -> Any: ...
    def close(self) -> None: ...


class StagingSink(Sink, Protocol):
    """A sink that is durable before the commit (see the module docstring)."""

    def stage(self, result: Any) -> None: ...
    def barrier(self) -> None: ...


class Sinks:
    """The registered sinks; errors of ``submit``/``flush``/``close`` are contained per sink."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = []
        for sink in sinks or []:
            self.register(sink)

    def register(self, sink: Sink) -> None:
        self.sinks.append(sink)

    @property
    def staging(self) -> list[StagingSink]:
        return [s for s in self.sinks if hasattr(s, "stage") and hasattr(s, "barrier")]  # type: ignore[misc]

    def stage(self, result: Any) -> None:
        """Pre-commit: start making ``result`` durable in every staging sink (raises)."""
        for sink in self.staging:
            sink.stage(result)

    def barrier(self) -> None:
        """Pre-commit: wait until every staging sink holds what was staged (raises)."""
        for sink in self.staging:
            sink.barrier()

    def submit(self, result: Any, offsets: Mapping[tuple[str, int], int]) -> None:
        for sink in self.sinks:
            try:
                sink.submit(result, offsets)
            except Exception:
                log.exception("event=sink_failed sink=%s", type(sink).__name__)

    def maintain(self) -> None:
        for sink in self.sinks:
            step = getattr(sink, "maintain", None)
            if step is None:
                continue
            try:
                step()
            except Exception:
                log.exception("event=sink_maintain_failed sink=%s", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            for step in (sink.flush, sink.close):
                try:
                    step()
                except Exception:
                    log.exception("event=sink_close_failed sink=%s", type(sink).__name__)
