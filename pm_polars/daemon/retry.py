"""Retrying an operation against Redis or Kafka with capped exponential backoff.

Nothing is lost while retrying: the caller holds the uncommitted batch and Kafka offsets do
not move. During the wait the loop's heartbeat keeps going (``on_wait``). If a stop was
requested and the dependency stays down for ``grace_s``, :class:`Abandoned` is raised: the
daemon exits without writing, and the batch is simply read again by the next owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
SHUTDOWN_GRACE_S = 10.0


class Abandoned(RuntimeError):
    """Stop requested while a dependency stayed unreachable; nothing was written."""


class Backoff:
    """``wait()`` sleeps 0.1 s, 0.2 s, 0.4 s ... up to ``max_s``, in short heartbeat slices."""

    def __init__(
        self, stopping: Callable[[], bool], on_wait: Callable[[], None],
        max_s: float = MAX_DELAY_S, grace_s: float = SHUTDOWN_GRACE_S,
    ) -> None:
        self.stopping, self.on_wait = stopping, on_wait
        self.max_s, self.grace_s = max_s, grace_s

    def call(self, what: str, fn: Callable[[], T], retry_on: tuple[type[BaseException], ...]) -> T:
        """``fn()`` until it does not raise one of ``retry_on``."""
        attempt = 0
        stop_seen: float | None = None
        while True:
            try:
                result = fn()
            except retry_on as exc:
                attempt += 1
                delay = min(self.max_s, FIRST_DELAY_S * 2 ** (attempt - 1))
                log.warning("event=retry what=%s attempt=%d next_in_s=%.1f error=%r",
                            what, attempt, delay, exc)
                if self.stopping():
                    stop_seen = stop_seen if stop_seen is not None else time.monotonic()
                    if time.monotonic() - stop_seen >= self.grace_s:
                        raise Abandoned(f"{what}: still failing {self.grace_s:.0f} s after "
                                        f"the stop request ({exc!r})") from exc
                self.sleep(delay)
                continue
            if attempt:
                log.info("event=recovered what=%s attempts=%d", what, attempt)
            return result

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.on_wait()
            time.sleep(min(left, 0.1))
