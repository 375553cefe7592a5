"""Redis clients of the daemon and the readers: one node or a Redis Cluster.

``connect(url, cluster=...)``: ``redis.Redis`` or ``redis.RedisCluster`` (any one node of
the cluster in ``url``, database 0), decoded replies, bounded timeouts, and **no hidden
retries**: redis-py's cluster client re-sends a timed-out transaction by default (measured:
one transaction applied 11 times), so every retry is the caller's own (the daemon's
``Backoff``, each transaction guarded by the stored offsets or idempotent). After a failure
the caller refreshes the slot map (:func:`refresh`): with retries off redis-py does not,
and kept dialling a dead master for 12 s after its replica was promoted.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

log = logging.getLogger(__name__)

SyncClient = redis.Redis | RedisCluster


def options(password: str | None = None, *, socket_timeout: float = 5.0,
            connect_timeout: float = 3.0, **extra: Any) -> dict[str, Any]:
    """``from_url`` keyword arguments shared by both kinds of client."""
    opts: dict[str, Any] = {"decode_responses": True, "socket_timeout": socket_timeout,
                            "socket_connect_timeout": connect_timeout,
                            "retry": Retry(NoBackoff(), 0)}
    if password is not None:
        opts["password"] = password
    opts.update(extra)
    return opts


def connect(url: str, *, cluster: bool, password: str | None = None,
            **extra: Any) -> SyncClient:
    """A client for ``url``; ``cluster``: a ``RedisCluster`` bootstrapped from that node."""
    opts = options(password, **extra)
    if cluster:
        return RedisCluster.from_url(url, **opts)
    return redis.Redis.from_url(url, **opts)


def refresh(client: Any) -> None:
    """After a failed call on a cluster: reload the slot map (a no-op for one node).
    Errors are logged, not raised (the cluster may still be electing a master)."""
    if not isinstance(client, RedisCluster):
        return
    try:
        client.nodes_manager.initialize()
    except redis.RedisError as exc:
        log.info("event=slot_map_refresh_failed error=%r", exc)
