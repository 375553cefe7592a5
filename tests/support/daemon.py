"""Run ``pm-polars run`` as a subprocess (so tests can SIGTERM or SIGKILL it).

The daemon's log goes to a file (``log_path``); :meth:`DaemonProcess.log` reads it for
assertions and failure messages. Settings are passed as flags; test-friendly librdkafka
group timings are added unless overridden.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

TEST_KAFKA = (
    "session.timeout.ms=3000",
    "heartbeat.interval.ms=300",
    "topic.metadata.refresh.interval.ms=500",
)


class DaemonProcess:
    """One ``python -m pm_polars.cli run ...`` process."""

    def __init__(
        self, bootstrap: str, redis_url: str, log_path: Path, *, args: Sequence[str] = (),
        kafka: Sequence[str] = TEST_KAFKA, env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        cmd = [sys.executable, "-m", "pm_polars.cli", "run", "--bootstrap-servers", bootstrap,
               "--redis-url", redis_url, "--metrics-port", "0", *args]
        for prop in kafka:
            cmd += ["-X", prop]
        self.cmd = cmd
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PM_POLARS_LOG_LEVEL": "INFO", **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (a crash at an arbitrary instant)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; ``TimeoutError`` otherwise.

    The timeout is a safety net against a hung test, not an assertion about speed.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{diagnose()}" if diagnose else ""
    raise TimeoutError(f"timed out waiting for {what}; last={last!r}{extra}")
