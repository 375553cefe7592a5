"""``pm-polars run``: Kafka fills/ticks -> micro-batches -> Polars engine -> Redis.

Flow of one batch (``step.BatchStep``; each stage its own module)::

    kafka.fills / kafka.ticks -> kafka.microbatch (RawBatch: columns + committable)
      -> intake (one decode_messages call; wrong-topic events rejected)
      -> owners (fills on a foreign partition refused) -> book (engine.step.apply)
      -> kafka.dlq (dead letters flushed) -> archive.sink.stage (checkpoint.staging)
      -> checkpoint (plan, codec, store: state + offsets in ONE MULTI/EXEC)
      -> sinks (committed batches) -> Kafka offset commit (monitoring), metrics

``app`` is the thin loop, ``book`` the engine of the owned partitions, ``config`` the
settings. Redis is the source of truth for state and offsets; see ``checkpoint``.
Attributes of this package are imported lazily (``pm-polars --help`` stays light).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pm_polars.daemon.app import Daemon
    from pm_polars.daemon.config import ConfigError, Settings
    from pm_polars.daemon.sinks import Sink

_FACE = {"Daemon": "app", "ConfigError": "config", "Settings": "config", "Sink": "sinks"}
__all__ = ["ConfigError", "Daemon", "Settings", "Sink"]


def __getattr__(name: str) -> Any:
    if name in _FACE:
        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
