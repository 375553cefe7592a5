"""Sinks: consumers of committed batches (e.g. the Parquet archive writer).

A sink is called after the batch's Redis commit succeeded, in registration order, with the
batch's :class:`~pm_polars.daemon.processor.BatchResult` and its next offsets
(``{(topic, partition): next offset}`` for fills and ``{("<ticks topic>", p): ...}`` for
ticks). A sink that raises is logged and the daemon goes on: Redis is the source of truth,
and a sink that needs every batch must make its own progress durable (``flush``) and be
idempotent on re-delivery after a crash. ``flush`` is called on shutdown before ``close``.
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


class Sinks:
    """The registered sinks; errors are contained per sink."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])

    def register(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def submit(self, result: Any, offsets: Mapping[tuple[str, int], int]) -> None:
        for sink in self.sinks:
            try:
                sink.submit(result, offsets)
            except Exception:
                log.exception("event=sink_failed sink=%s", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            for step in (sink.flush, sink.close):
                try:
                    step()
                except Exception:
                    log.exception("event=sink_close_failed sink=%s", type(sink).__name__)
