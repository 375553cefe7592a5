"""``AsyncPortfolioReader``: the asyncio twin of :class:`pm_polars.client.PortfolioReader`.

Same methods, same models and units, awaited (``redis.asyncio``). See
:mod:`pm_polars.client.reader` for consistency and pub/sub notes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_polars.client.models import (
    Aum,
    Overview,
    Portfolio,
    Position,
    Price,
    Update,
    aum_from_raw,
    portfolio_from_raw,
    portfolios_from_mget,
    position_from_hash,
    prices_from_hash,
    text,
    update_or_none,
)
from pm_polars.client.reader import (
    DEFAULT_SOCKET_TIMEOUT_S,
    POLL_S,
    client_options,
)
from pm_polars.publish.keys import Keys

if TYPE_CHECKING:
    import polars as pl



async def read_overview(client: aioredis.Redis | AsyncRedisCluster, keys: Keys,
                        ids: list[str]) -> tuple[list[Any], Any]:
    """The raw replies of the ``portfolio:{id}`` documents of ``ids`` (None where missing)
    and of ``aum``, read in one MULTI/EXEC (so they are of one committed batch); on a
    Redis Cluster one ``MGET`` per slot, then ``aum`` (see ``reader``)."""
    names = [keys.portfolio(p) for p in ids]
    if isinstance(client, AsyncRedisCluster):
        raws = await client.mget_nonatomic(names) if names else []
        return list(raws), await client.get(keys.aum)
    async with client.pipeline(transaction=True) as pipe:
        if names:
            pipe.mget(names)
        pipe.get(keys.aum)
        replies: list[Any] = await pipe.execute()
    return (replies[0] if names else []), replies[-1]

def connect_async(url: str, cluster: bool, options: dict[str, Any]
                  ) -> aioredis.Redis | AsyncRedisCluster:
    """An asyncio client for ``url``: one node, or a Redis Cluster bootstrapped from it."""
    if cluster:
        return AsyncRedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


class AsyncPortfolioReader:
    """Reads the published model with ``redis.asyncio``; see ``PortfolioReader``."""

    def __init__(self, client: aioredis.Redis | AsyncRedisCluster, key_prefix: str = "", *,
                 owns_client: bool = False) -> None:
        self.client: Any = client
        self.cluster = isinstance(client, AsyncRedisCluster)
        self.keys = Keys(key_prefix)
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "", *, password: str | None = None,
                 cluster: bool = False, **redis_options: Any) -> AsyncPortfolioReader:
        """Client for ``url`` (``redis://``, ``rediss://``, ``unix://``; ``cluster``: any
        one node of a Redis Cluster); see the sync one."""
        client = connect_async(url, cluster, client_options(password, redis_options))
        return cls(client, key_prefix, owns_client=True)

    async def aclose(self) -> None:
        """Close the client if this reader created it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncPortfolioReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ portfolios
    async def get_portfolio(self, portfolio_id: str) -> Portfolio | None:
        """The published portfolio; None if unknown."""
        key = self.keys.portfolio(portfolio_id)
        return portfolio_from_raw(await self.client.get(key), key)

    async def get_portfolios(
        self, portfolio_ids: Iterable[str] | None = None
    ) -> dict[str, Portfolio]:
        """Several portfolios in one ``MGET`` (all listed ones when None); unknown left out."""
        ids = await self.list_portfolios() if portfolio_ids is None else list(portfolio_ids)
        if not ids:
            return {}
        keys = [self.keys.portfolio(p) for p in ids]
        raws = await (self.client.mget_nonatomic(keys) if self.cluster
                      else self.client.mget(keys))
        return portfolios_from_mget(ids, keys, raws)

    async def list_portfolios(self) -> list[str]:
        """Ids in the ``portfolios`` index, sorted."""
        members: Any = await self.client.smembers(self.keys.index)
        return sorted(text(m) for m in members)

    async def overview(self) -> Overview:
        """Every listed portfolio and the aum, read in one MULTI/EXEC."""
        ids = await self.list_portfolios()
        raws, aum = await read_overview(self.client, self.keys, ids)
        return Overview(portfolios_from_mget(ids, [self.keys.portfolio(p) for p in ids], raws),
                        aum_from_raw(aum, self.keys.aum))

    # ------------------------------------------------------------------ positions
    async def positions(self, portfolio_id: str, *, open_only: bool = False) -> list[Position]:
        """The positions of the portfolio's document, in token order ([] if unknown)."""
        pf = await self.get_portfolio(portfolio_id)
        return [] if pf is None else pf.position_list(open_only)

    async def position(self, portfolio_id: str, token: int) -> Position | None:
        """One position from its ``position:{pid}:{token}`` hash; None if absent."""
        key = self.keys.position(portfolio_id, token)
        mapping: Any = await self.client.hgetall(key)
        return position_from_hash(portfolio_id, mapping, key)

    # ------------------------------------------------------------------ market, aum
    async def prices(self) -> dict[int, Price]:
        """Latest tick per instrument token, in token order."""
        mapping: Any = await self.client.hgetall(self.keys.prices)
        return prices_from_hash(mapping, self.keys.prices)

    async def aum(self) -> Aum | None:
        """Total and per-source equity; None if not written yet."""
        return aum_from_raw(await self.client.get(self.keys.aum), self.keys.aum)

    # ------------------------------------------------------------------ frames
    async def portfolios_frame(self, portfolio_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Portfolios as a Polars frame (columns of ``PortfolioEngine.portfolios()``)."""
        from pm_polars.client import frames  # Polars: only for frames

        return frames.portfolios_frame((await self.get_portfolios(portfolio_ids)).values())

    async def positions_frame(self, portfolio_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Positions as a Polars frame (columns of ``PortfolioEngine.positions()``)."""
        pfs = (await self.get_portfolios(portfolio_ids)).values()
        from pm_polars.client import frames

        return frames.positions_frame(frames.all_positions(pfs))

    # ------------------------------------------------------------------ updates
    def subscribe(self) -> AsyncSubscription:
        """A subscription to ``portfolio-updates``; it subscribes on ``async with``,
        :meth:`AsyncSubscription.start` or the first read, whichever comes first."""
        return AsyncSubscription(self.client, self.keys.updates_channel)


class AsyncSubscription:
    """``async for update in sub`` until :meth:`aclose`; :meth:`get` with a timeout.

    Messages published before the subscription started are not received: enter it (or
    ``await sub.start()``) before anything you want to hear about happens.
    """

    def __init__(self, client: aioredis.Redis, channel: str,
                 confirm_timeout: float = DEFAULT_SOCKET_TIMEOUT_S) -> None:
        self.channel = channel
        self._pubsub = client.pubsub()
        self._confirm_timeout = confirm_timeout
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Subscribe and wait for the server's confirmation (idempotent)."""
        if self._started or self._closed:
            return
        self._started = True
        try:
            await self._pubsub.subscribe(self.channel)
            deadline = time.monotonic() + self._confirm_timeout
            while True:
                left = max(0.0, deadline - time.monotonic())
                msg: Any = await self._pubsub.get_message(timeout=left)
                if msg is not None and msg["type"] == "subscribe":
                    return
                if time.monotonic() >= deadline:
                    raise RedisTimeoutError(f"no SUBSCRIBE confirmation for {self.channel!r}")
        except BaseException:
            await self.aclose()
            raise

    async def get(self, timeout: float | None = None) -> Update | None:
        """The next update, or None after ``timeout`` seconds (None: wait until one)."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._closed:
            left = POLL_S if deadline is None else min(POLL_S, deadline - loop.time())
            if left < 0:
                return None
            msg: Any = await self._pubsub.get_message(timeout=left)
            if msg is not None and msg["type"] == "message":
                update = update_or_none(msg["data"], self.channel)
                if update is not None:
                    return update
        return None

    def __aiter__(self) -> AsyncIterator[Update]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Update]:
        while not self._closed:
            update = await self.get(timeout=None)
            if update is not None:
                yield update

    async def aclose(self) -> None:
        """Unsubscribe and release the connection; ``async for`` over it then ends."""
        if not self._closed:
            self._closed = True
            await self._pubsub.aclose()

    async def __aenter__(self) -> AsyncSubscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
