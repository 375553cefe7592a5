"""A real redis-server for tests, on a free port with its own temp directory.

``stop()`` SIGKILLs by default (what a crash looks like); ``stop(graceful=True)`` SHUTDOWNs
with a save, so data survives :meth:`restart`. With ``appendonly=True`` (fsync always) even
a SIGKILL loses no acknowledged write.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from .ports import free_port, port_is_open

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server process; :meth:`restart` reuses the port and the data directory."""

    def __init__(
        self, port: int | None = None, directory: Path | None = None, appendonly: bool = True
    ) -> None:
        self.port = port if port is not None else free_port()
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="pm-redis-"))
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        """A new ``redis.Redis`` with ``decode_responses=True`` unless overridden."""
        opts: dict[str, object] = {"decode_responses": True, **kwargs}
        return redis.Redis(host="127.0.0.1", port=self.port, **opts)  # type: ignore[arg-type]

    def start(self) -> RedisServer:
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is taken")
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited rc={self.proc.returncode}")
            try:
                if self.client(socket_timeout=0.5).ping():
                    return self
            except redis.exceptions.RedisError:
                pass
            time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"redis-server on {self.port} not answering PING")

    def stop(self, graceful: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if graceful:
                with contextlib.suppress(redis.exceptions.RedisError):
                    self.client(socket_timeout=5).shutdown(nosave=not self.appendonly)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, graceful: bool = False) -> RedisServer:
        self.stop(graceful=graceful)
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def redis_server(appendonly: bool = True) -> Iterator[RedisServer]:
    """A started redis-server in a temp directory, killed and removed on exit."""
    server = RedisServer(appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
