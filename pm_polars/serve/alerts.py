"""The daemon's alerts, followed live: ``/api/alerts`` and ``alert`` stream events.

``pm-polars run`` with an ``[alerts]`` table publishes each alert (a JSON object with
``id``, ``type`` ``breach``/``recovery``, ``limit``, ``portfolio_id``, the figures; see
``pm_polars.daemon.alerts``) on its alerts channel, in the same transaction as the figures
that caused it. :class:`AlertFollower` subscribes to that channel once per server and hands
every alert to the stream hub (:meth:`StreamHub.alert`), which keeps the last
``stream.RECENT_ALERTS`` for new clients and ``/api/alerts`` and pushes each to every open stream.

Pub/sub is at most once: alerts published while the server was down or disconnected are
not replayed here (the Kafka topic ``pm.alerts`` is the durable record). Messages that are
not a JSON object with an ``id`` are logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from pm_polars.serve.stream import SOURCE_ERRORS, StreamHub

log = logging.getLogger(__name__)


def alert_or_none(data: Any) -> str | None:
    """The alert's JSON text, or ``None`` if ``data`` is not an alert object."""
    text = data.decode() if isinstance(data, bytes) else str(data)
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(value) if isinstance(value, dict) and "id" in value else None


class AlertFollower:
    """One subscription to ``channel`` on ``client`` (``redis.asyncio``), re-made after an
    error every ``retry_s``; each alert goes to ``hub``."""

    def __init__(self, client: Any, channel: str, hub: StreamHub, retry_s: float = 1.0) -> None:
        self.client, self.channel, self.hub, self.retry_s = client, channel, hub, retry_s
        self._stopped = False

    async def run(self) -> None:
        """Follow the channel until :meth:`stop`; never raises on source errors."""
        while not self._stopped:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while not self._stopped:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    text = alert_or_none(msg["data"])
                    if text is None:
                        log.warning("event=alert_ignored channel=%s reason=not_an_alert "
                                    "data=%.200r", self.channel, msg["data"])
                        continue
                    self.hub.alert(text)
            except SOURCE_ERRORS as exc:
                log.debug("event=alerts_channel_error error=%r", exc)
                await asyncio.sleep(self.retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def stop(self) -> None:
        self._stopped = True
