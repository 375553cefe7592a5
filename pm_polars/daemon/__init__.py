"""``pm-polars run``: Kafka fills/ticks -> micro-batches -> Polars engine -> Redis.

Flow of one batch (each step its own module)::

    fills_source / ticks_source -> batching (RawBatch columns, explicit next offsets)
      -> decoding (one decode_messages call)
      -> processor (route, apply, plan: state_codec + publish.model_rows, RESP-encoded)
      -> dlq (dead letters, reject ratio) -> archive_sink.stage (durable, before EXEC)
      -> checkpoint (state + offsets, ONE MULTI/EXEC) -> Kafka commit, metrics, sinks

``app`` is the thin loop, ``book`` the engine of the owned partitions, ``config`` the
settings. Redis is the source of truth for state and offsets; see ``checkpoint``.
"""

from pm_polars.daemon.app import Daemon
from pm_polars.daemon.config import ConfigError, Settings
from pm_polars.daemon.sinks import Sink

__all__ = ["ConfigError", "Daemon", "Settings", "Sink"]
