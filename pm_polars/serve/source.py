"""Where the server reads documents: the async interface and its Redis implementation.

A source hands out the *published JSON text* (``str``) of documents, never parsed models, so
the API copies the writer's bytes (every field, every digit) and a page of 1,000 portfolios
costs one ``MGET`` and a string join. :class:`RedisSource` reads the keys of
:class:`pm_polars.publish.keys.Keys` (read-only commands only: SMEMBERS, MGET, GET, HGETALL,
HMGET, PING, SUBSCRIBE); ``pm_polars.serve.memory`` is the in-process twin for the demo.

Errors: Redis being unreachable surfaces as ``redis.RedisError``/``OSError`` from every
method; the app maps them to 503 and the stream hub to its "down" state.
"""

from __future__ import annotations

from typing import Any, Protocol

from pm_polars.client.aio import AsyncSubscription, connect_async, read_overview
from pm_polars.client.models import Update
from pm_polars.client.reader import client_options
from pm_polars.publish.keys import Keys

# short timeouts: a request must fail fast (503) rather than hang when Redis does
SERVE_SOCKET_TIMEOUT_S = 2.0
SERVE_CONNECT_TIMEOUT_S = 1.0


class Updates(Protocol):
    """A subscription to the updates channel (``portfolio-updates``)."""

    async def start(self) -> None: ...
    async def get(self, timeout: float | None = None) -> Update | None: ...
    async def aclose(self) -> None: ...


class ReadSource(Protocol):
    """The read model as JSON texts; ``name`` says which (``redis`` or ``memory``)."""

    name: str

    async def ping(self) -> None: ...
    async def overview(self) -> tuple[list[str], str | None]:
        """Every portfolio document (sorted by id) and the aum, one consistent read."""
        ...
    async def changed(self, portfolio_ids: list[str]) -> tuple[list[str], str | None]:
        """The documents of ``portfolio_ids`` that exist, and the aum, one consistent read."""
        ...
    async def document(self, portfolio_id: str) -> str | None: ...
    async def aum(self) -> str | None: ...
    async def prices(self, tokens: list[int] | None) -> dict[int, str]: ...
    def subscribe(self) -> Updates: ...
    async def aclose(self) -> None: ...


class RedisSource:
    """The model ``pm-polars run`` publishes, read with ``redis.asyncio`` (decoded text)."""

    name = "redis"

    def __init__(self, url: str, key_prefix: str = "", *, password: str | None = None,
                 cluster: bool = False, alerts_channel: str | None = "pm-alerts",
                 **redis_options: Any) -> None:
        opts = {"socket_timeout": SERVE_SOCKET_TIMEOUT_S,
                "socket_connect_timeout": SERVE_CONNECT_TIMEOUT_S, **redis_options}
        self.client: Any = connect_async(url, cluster, client_options(password, opts))
        self.keys = Keys(key_prefix)
        # the channel the daemon publishes alerts on (``daemon.alerts``), prefixed like it
        self.alerts_channel = None if alerts_channel is None else self.keys.channel(
            alerts_channel)

    async def ping(self) -> None:
        await self.client.ping()

    async def _ids(self) -> list[str]:
        members: Any = await self.client.smembers(self.keys.index)
        return sorted(members)

    async def _read(self, ids: list[str]) -> tuple[list[str], str | None]:
        raws, aum = await read_overview(self.client, self.keys, ids)
        return [raw for raw in raws if raw is not None], aum

    async def overview(self) -> tuple[list[str], str | None]:
        return await self._read(await self._ids())

    async def changed(self, portfolio_ids: list[str]) -> tuple[list[str], str | None]:
        return await self._read(portfolio_ids)

    async def document(self, portfolio_id: str) -> str | None:
        raw = await self.client.get(self.keys.portfolio(portfolio_id))
        return _text(raw)

    async def aum(self) -> str | None:
        raw = await self.client.get(self.keys.aum)
        return _text(raw)

    async def prices(self, tokens: list[int] | None) -> dict[int, str]:
        if tokens is None:
            mapping: Any = await self.client.hgetall(self.keys.prices)
            return {int(t): v for t, v in sorted(mapping.items(), key=lambda kv: int(kv[0]))}
        values: Any = await self.client.hmget(self.keys.prices, [str(t) for t in tokens])
        return {t: v for t, v in sorted(zip(tokens, values, strict=True)) if v is not None}

    def subscribe(self) -> Updates:
        return AsyncSubscription(self.client, self.keys.updates_channel)

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(raw: bytes | str | None) -> str | None:
    """A GET reply as text (the client decodes replies; bytes only if configured not to)."""
    return raw.decode() if isinstance(raw, bytes) else raw
