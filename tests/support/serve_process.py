"""``pm-polars serve`` (or ``demo --serve``) as a subprocess on a free port, and an SSE reader.

:class:`ServeProcess` starts the real console script, waits for its port and is stopped with
SIGTERM (SIGKILL after 10 s); its log goes to a file the test can read. :class:`SSEReader`
follows ``/api/stream`` on a thread and hands out parsed events (``data`` decoded JSON).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .ports import free_port, port_is_open

PM_POLARS = str(Path(sys.executable).with_name("pm-polars"))


class ServeProcess:
    """``pm-polars <args> --port P``; ``url`` is its base URL."""

    def __init__(self, args: list[str], log_path: Path, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.host = host
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen([PM_POLARS, *args, "--port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pm-polars exited rc={self.proc.returncode}: {self.log()}")
            if port_is_open(self.port, self.host):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"pm-polars not listening after {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


class SSEReader:
    """Reads ``url`` (an SSE endpoint) on a daemon thread until :meth:`close`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[Event | Exception] = queue.Queue()
        self._closed = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        event, ident, data = "message", None, []
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=60)) as r:
                self._response = r
                r.raise_for_status()
                for line in r.iter_lines():
                    if self._closed.is_set():
                        return
                    if line.startswith("data: "):
                        data.append(line[6:])
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line == "":
                        if data:
                            self.events.put(Event(event, ident, json.loads("\n".join(data))))
                        event, ident, data = "message", None, []
        except Exception as exc:  # handed to the test, which decides
            if not self._closed.is_set():
                self.events.put(exc)

    def next(self, kind: str | None = None, timeout: float = 10.0) -> Event:
        """The next event (of type ``kind``, skipping others, e.g. heartbeats)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind or 'event'} within {timeout} s")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            if kind is None or item.event == kind:
                return item

    def close(self) -> None:
        self._closed.set()
        if self._response is not None:
            self._response.close()
