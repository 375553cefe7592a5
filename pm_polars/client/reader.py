"""``PortfolioReader``: the synchronous read side of the published Redis model.

Keys come from :class:`pm_polars.publish.keys.Keys` (the same layout the daemon writes,
under an optional ``key_prefix``). The daemon writes each batch in one MULTI/EXEC, so one
multi-key read (``MGET``, or the transaction of :meth:`PortfolioReader.overview`) sees a
consistent state across portfolios. On Redis Cluster (``cluster=True``) the documents live
in many slots: several are read with ``MGET`` per slot (``mget_nonatomic``), so they may
come from different batches (each document is itself whole and equal to what its
partition committed); see the README's production notes for the window.

Pub/sub is at-most-once: an update published while a subscriber is disconnected is lost.
After (re)subscribing, re-read the portfolios you show rather than relying on updates alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import RedisCluster

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
from pm_polars.publish.keys import Keys

if TYPE_CHECKING:
    import polars as pl

DEFAULT_SOCKET_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 3.0
POLL_S = 1.0


def client_options(password: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``from_url`` keyword arguments: decoded replies, bounded timeouts, optional AUTH.

    A password in the URL (``redis://user:pass@host``) takes precedence over ``password``.
    """
    opts: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
    }
    if password is not None:
        opts["password"] = password
    opts.update(overrides)
    return opts


class PortfolioReader:
    """Reads portfolios, positions, prices and aum published by ``pm-polars run``.

    Build it with :meth:`from_url` (owns and closes its client) or around an existing
    ``redis.Redis`` (left open; ``decode_responses`` may be either). Values are typed
    models (:mod:`pm_polars.client.models`); units: prices per unit, quantities signed,
    money in account currency, ts ns UTC.
    """

    def __init__(self, client: redis.Redis | RedisCluster, key_prefix: str = "", *,
                 owns_client: bool = False) -> None:
        self.client: Any = client
        self.cluster = isinstance(client, RedisCluster)
        self.keys = Keys(key_prefix, cluster=self.cluster)  # the daemon's layout (lots)
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "", *, password: str | None = None,
                 cluster: bool = False, **redis_options: Any) -> PortfolioReader:
        """Connect to ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``);
        ``cluster``: ``url`` is any one node of a Redis Cluster.

        ``redis_options`` are passed to ``from_url`` (e.g. ``ssl_ca_certs``);
        socket timeouts default to 5 s (read) and 3 s (connect).
        """
        opts = client_options(password, redis_options)
        client = RedisCluster.from_url(url, **opts) if cluster else \
            redis.Redis.from_url(url, **opts)
        return cls(client, key_prefix, owns_client=True)

    def close(self) -> None:
        """Close the client if this reader created it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> PortfolioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ portfolios
    def get_portfolio(self, portfolio_id: str) -> Portfolio | None:
        """The published portfolio (strategy or ``{source}_Overall``); None if unknown."""
        key = self.keys.portfolio(portfolio_id)
        raw: Any = self.client.get(key)
        return portfolio_from_raw(raw, key)

    def get_portfolios(self, portfolio_ids: Iterable[str] | None = None) -> dict[str, Portfolio]:
        """Several portfolios in one ``MGET`` (all listed ones when ``portfolio_ids`` is
        None), in the order asked; unknown ids are left out."""
        ids = self.list_portfolios() if portfolio_ids is None else list(portfolio_ids)
        if not ids:
            return {}
        keys = [self.keys.portfolio(p) for p in ids]
        raws: Any = self.client.mget_nonatomic(keys) if self.cluster else self.client.mget(keys)
        return portfolios_from_mget(ids, keys, raws)

    def list_portfolios(self) -> list[str]:
        """Ids in the ``portfolios`` index (strategies and ``_Overall``), sorted."""
        members: Any = self.client.smembers(self.keys.index)
        return sorted(text(m) for m in members)

    def overview(self) -> Overview:
        """Every listed portfolio and the aum, read in one MULTI/EXEC (a consistent view;
        on a cluster: per slot, see the module docstring)."""
        ids = self.list_portfolios()
        keys = [self.keys.portfolio(p) for p in ids]
        if self.cluster:
            raws = self.client.mget_nonatomic(keys) if keys else []
            aum = self.client.get(self.keys.aum)
            return Overview(portfolios_from_mget(ids, keys, raws),
                            aum_from_raw(aum, self.keys.aum))
        with self.client.pipeline(transaction=True) as pipe:
            if keys:
                pipe.mget(keys)
            pipe.get(self.keys.aum)
            replies: list[Any] = pipe.execute()
        raws = replies[0] if keys else []
        return Overview(portfolios_from_mget(ids, keys, raws), aum_from_raw(replies[-1], self.keys.aum))

    # ------------------------------------------------------------------ positions
    def positions(self, portfolio_id: str, *, open_only: bool = False) -> list[Position]:
        """The positions of the portfolio's document, in token order ([] if unknown)."""
        pf = self.get_portfolio(portfolio_id)
        return [] if pf is None else pf.position_list(open_only)

    def position(self, portfolio_id: str, token: int) -> Position | None:
        """One position from its ``position:{pid}:{token}`` hash; None if absent."""
        key = self.keys.position(portfolio_id, token)
        mapping: Any = self.client.hgetall(key)
        return position_from_hash(portfolio_id, mapping, key)

    # ------------------------------------------------------------------ market, aum
    def prices(self) -> dict[int, Price]:
        """Latest tick per instrument token: ``Price(last_price, ts, bid, ask)``, in token order."""
        mapping: Any = self.client.hgetall(self.keys.prices)
        return prices_from_hash(mapping, self.keys.prices)

    def aum(self) -> Aum | None:
        """Total and per-source equity; None if the daemon has not written it yet."""
        raw: Any = self.client.get(self.keys.aum)
        return aum_from_raw(raw, self.keys.aum)

    # ------------------------------------------------------------------ frames
    def portfolios_frame(self, portfolio_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Portfolios as a Polars frame (columns of ``PortfolioEngine.portfolios()``)."""
        from pm_polars.client import frames  # Polars: only for frames

        return frames.portfolios_frame(self.get_portfolios(portfolio_ids).values())

    def positions_frame(self, portfolio_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Positions as a Polars frame (columns of ``PortfolioEngine.positions()``)."""
        pfs = self.get_portfolios(portfolio_ids).values()
        from pm_polars.client import frames

        return frames.positions_frame(frames.all_positions(pfs))

    def lots_frame(self, portfolio_ids: Iterable[str], group: str = "pm-polars"
                   ) -> pl.DataFrame:
        """Open FIFO lots of these portfolios as the daemon of consumer ``group`` stored
        them (``--cost-basis fifo``; see :mod:`pm_polars.client.lots`)."""
        from pm_polars.client.lots import read_lots

        state_keys = Keys(self.keys.prefix, cluster=self.cluster)  # hash-tagged on a cluster
        return read_lots(self.client, state_keys, group, portfolio_ids)

    # ------------------------------------------------------------------ updates
    def subscribe(self) -> Subscription:
        """Subscribe to ``portfolio-updates`` now; iterate the returned subscription."""
        return Subscription(self.client, self.keys.updates_channel)


class Subscription:
    """A live subscription to the updates channel (subscribed when constructed).

    ``for update in sub`` blocks for the next :class:`Update` until :meth:`close`;
    :meth:`get` waits at most ``timeout`` seconds. Malformed messages are logged and
    skipped. Use as a context manager to unsubscribe.
    """

    def __init__(self, client: redis.Redis | RedisCluster, channel: str,
                 confirm_timeout: float = DEFAULT_SOCKET_TIMEOUT_S) -> None:
        self.channel = channel
        self._pubsub = client.pubsub()
        self._closed = False
        try:
            self._confirm(confirm_timeout)
        except BaseException:
            self.close()
            raise

    def _confirm(self, timeout: float) -> None:
        """Subscribe and wait for the confirmation: no publication after it is missed."""
        self._pubsub.subscribe(self.channel)
        deadline = time.monotonic() + timeout
        while True:
            msg: Any = self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if msg is not None and msg["type"] == "subscribe":
                return
            if time.monotonic() >= deadline:
                raise redis.TimeoutError(f"no SUBSCRIBE confirmation for {self.channel!r}")

    def get(self, timeout: float | None = None) -> Update | None:
        """The next update, or None after ``timeout`` seconds (None: wait until one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left < 0:
                return None
            msg: Any = self._pubsub.get_message(timeout=left)
            if msg is not None and msg["type"] == "message":
                update = update_or_none(msg["data"], self.channel)
                if update is not None:
                    return update
        return None

    def __iter__(self) -> Iterator[Update]:
        while not self._closed:
            update = self.get(timeout=None)
            if update is not None:
                yield update

    def close(self) -> None:
        """Unsubscribe and release the connection; a ``for`` loop over it then ends.

        Call it from the thread that iterates (e.g. after ``break``): the connection is not
        shared safely between threads."""
        if not self._closed:
            self._closed = True
            self._pubsub.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

