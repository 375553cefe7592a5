"""``/api/stream``: one reader of the updates channel, Server-Sent Events to every client.

The :class:`StreamHub` subscribes to ``portfolio-updates`` once per server. Per message it
reads the changed documents and the aum in one transaction and queues one ``update`` event
to every client, so 50 clients cost one Redis read, not 50. Events (``data`` is JSON):

* ``snapshot`` (``id`` = sequence) ``{"seq", "heartbeat_s", "portfolios": [every document],
  "aum"}``: first
  event of every connection (a reconnect, with or without ``Last-Event-ID``, is a full
  refresh: pub/sub is at-most-once, so the missed updates are not replayable), and again to
  everyone when the source comes back after an outage;
* ``update`` (``id`` = sequence) ``{"seq", "ts", "portfolios": [changed documents], "aum"}``,
  ``ts`` the writer's batch clock (ns UTC) from the update message;
* ``alert`` (no id) one daemon alert as published (``serve.alerts``); the snapshot's
  ``alerts`` holds the last ones received, oldest first;
* ``status`` ``{"source": "up"|"down", "since": ms, "detail"}`` when readability changes;
* ``heartbeat`` ``{"ts": ms, "source": ...}`` after ``heartbeat_s`` without another event.

A quiet channel is checked with a PING every ``heartbeat_s``: a Redis that hangs (no
error, no reply) is reported ``down`` after the socket timeout like one that is gone.

Ordering: snapshots and updates are built under one lock, so no client sees an older
document after a newer one. A client whose queue fills (it reads slower than batches come)
is cut off and reconnects to a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

import redis

from pm_polars.serve.metrics import ServeMetrics
from pm_polars.serve.source import ReadSource

log = logging.getLogger(__name__)

SOURCE_ERRORS = (redis.RedisError, OSError)
DEFAULT_HEARTBEAT_S = 5.0
QUEUE_FRAMES = 64
RECENT_ALERTS = 200  # kept for new clients and /api/alerts


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE frame, encoded once for every client (``data`` is single-line JSON:
    newlines in it are only ever whitespace)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data.replace(chr(10), ' ')}\n\n".encode()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamClient:
    """One open stream: frames queued by the hub, ``None`` ends the response."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_FRAMES)

    def put(self, text: bytes | None) -> bool:
        """Queue a frame; False (and the stream ends) if the client fell behind."""
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class StreamHub:
    """See the module docstring. ``run`` is the background task; ``events`` serves one client."""

    def __init__(self, source: ReadSource, metrics: ServeMetrics, *,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S, retry_s: float = 1.0) -> None:
        self.source = source
        self.metrics = metrics
        self.heartbeat_s = heartbeat_s
        self.retry_s = retry_s
        self.seq = 0
        self.up = True
        self.since_ms = _now_ms()
        self.detail = ""
        self.clients: set[StreamClient] = set()
        self.alerts: deque[str] = deque(maxlen=RECENT_ALERTS)  # JSON texts, oldest first
        self._lock = asyncio.Lock()
        self._stopped = False

    # ------------------------------------------------------------------ frames
    def _status(self) -> bytes:
        return frame("status", json.dumps({"source": "up" if self.up else "down",
                                           "since": self.since_ms, "detail": self.detail}))

    async def _snapshot(self) -> bytes:
        docs, aum = await self.source.overview()
        data = (f'{{"seq":{self.seq},"heartbeat_s":{self.heartbeat_s},'
                f'"portfolios":[{",".join(docs)}],"aum":{aum or "null"},'
                f'"alerts":[{",".join(self.alerts)}]}}')
        return frame("snapshot", data, self.seq)

    def alert(self, text: str) -> None:
        """One alert (JSON text) from the alerts channel: kept and pushed to every client."""
        self.alerts.append(text)
        self._broadcast(frame("alert", text), "alert")

    def _broadcast(self, text: bytes, event: str) -> None:
        for client in list(self.clients):
            if client.put(text):
                self.metrics.stream_events.labels(event).inc()
            else:
                self.metrics.dropped.inc()
                self.clients.discard(client)
                log.warning("event=stream_client_dropped reason=queue_full")

    def _set_state(self, up: bool, detail: str = "") -> None:
        if up != self.up:
            self.up, self.since_ms, self.detail = up, _now_ms(), detail
            log.log(logging.INFO if up else logging.WARNING,
                    "event=source_%s source=%s detail=%s", "up" if up else "down",
                    self.source.name, detail)
            self._broadcast(self._status(), "status")
        self.metrics.source_up.set(1 if up else 0)

    # ------------------------------------------------------------------ hub loop
    async def run(self) -> None:
        """Follow the updates channel until :meth:`stop`; never raises on source errors."""
        was_down = False
        while not self._stopped:
            sub = self.source.subscribe()
            try:
                await sub.start()
                async with self._lock:
                    snapshot = await self._snapshot()  # readable again?
                    self._set_state(True)
                    if was_down:  # updates were lost while down: everyone refreshes
                        self._broadcast(snapshot, "snapshot")
                    was_down = False
                idle_since = time.monotonic()
                while not self._stopped:
                    update = await sub.get(timeout=1.0)
                    if update is None:  # quiet: is Redis still answering (not hung)?
                        if time.monotonic() - idle_since >= self.heartbeat_s:
                            await self.source.ping()
                            idle_since = time.monotonic()
                        continue
                    idle_since = time.monotonic()
                    async with self._lock:
                        docs, aum = await self.source.changed(update.portfolio_ids)
                        self.seq += 1
                        data = (f'{{"seq":{self.seq},"ts":{update.ts},'
                                f'"portfolios":[{",".join(docs)}],"aum":{aum or "null"}}}')
                        self._broadcast(frame("update", data, self.seq), "update")
                        self.metrics.push_latency.observe(
                            max(0.0, (time.time_ns() - update.ts) / 1e9))
            except SOURCE_ERRORS as exc:
                was_down = True
                self._set_state(False, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await sub.aclose()

    async def stop(self) -> None:
        """End the loop and every open stream."""
        self._stopped = True
        for client in list(self.clients):
            client.put(None)
        self.clients.clear()

    # ------------------------------------------------------------------ one client
    async def _connect(self) -> StreamClient:
        client = StreamClient()
        async with self._lock:
            try:
                client.put(await self._snapshot() if self.up else self._status())
            except SOURCE_ERRORS as exc:
                self._set_state(False, f"{type(exc).__name__}: {exc}")
                client.put(self._status())
            self.clients.add(client)
        return client

    async def events(self, last_event_id: str | None) -> AsyncIterator[bytes]:
        """The frames of one connection: retry hint, full refresh, then live events."""
        if last_event_id:
            log.debug("event=stream_reconnect last_event_id=%s seq=%d", last_event_id, self.seq)
        client = await self._connect()
        self.metrics.stream_clients.inc()
        try:
            yield b"retry: 1000\n\n"
            while True:
                try:
                    text = await asyncio.wait_for(client.queue.get(), self.heartbeat_s)
                except TimeoutError:
                    text = frame("heartbeat", json.dumps(
                        {"ts": _now_ms(), "source": "up" if self.up else "down"}))
                if text is None:
                    return
                yield text
        finally:
            self.clients.discard(client)
            self.metrics.stream_clients.dec()
