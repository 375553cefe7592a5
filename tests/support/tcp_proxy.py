"""A TCP proxy in front of redis-server that can lose the reply of a transaction.

``LossyProxy(upstream_port)`` listens on a free local port and pumps bytes both ways.
``arm(n)`` makes the next ``n`` transactions lose their reply: when a client sends
``EXEC`` (RESP ``$4\\r\\nEXEC\\r\\n``), the proxy forwards it, waits for Redis to answer --
so the transaction *has been executed* (Redis is quiet for 0.2 s after its last answer) --
then throws the answers away and resets the client's connection. The client sees a connection error for a write that was applied:
the case an exactly-once checkpoint must survive (it must not apply the batch twice).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

from .ports import free_port

EXEC = b"$4\r\nEXEC\r\n"
QUIET_S = 0.2


def _found(pattern: bytes, tail: bytes, data: bytes) -> bool:
    """``pattern`` ends inside ``data`` (possibly starting in ``tail``, the bytes before)."""
    return pattern in tail[-(len(pattern) - 1):] + data


def _recv(sock: socket.socket, link: _Link) -> bytes:
    """``recv`` that never blocks for more than 0.1 s at a time: a socket closed by the
    other pump is then really released (a thread blocked in ``recv`` would keep it open,
    and the reset would never reach the client)."""
    while not link.closed:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            return sock.recv(65536)
    return b""


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.swallow = False
        self.marked = False  # the marker was sent since the last EXEC
        self.closed = False
        self.lock = threading.Lock()

    def close(self, reset: bool) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if reset:  # RST instead of FIN: the client cannot mistake it for a clean close
            with contextlib.suppress(OSError):
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.close()


class LossyProxy:
    """See the module docstring. ``dropped`` counts the replies thrown away."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.port = free_port()
        self.armed = 0
        self.marker: bytes | None = None
        self.dropped = 0
        self.lock = threading.Lock()
        self.server = socket.create_server((host, self.port))
        self.links: list[_Link] = []
        self.running = True
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, n: int = 1, marker: bytes | None = None) -> None:
        """Lose the replies of the next ``n`` transactions (with ``marker``: only of those
        whose commands contain it; at most 64 bytes)."""
        with self.lock:
            self.armed += n
            self.marker = marker

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            self.links.append(link)
            threading.Thread(target=self._to_upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(link,), daemon=True).start()

    def _to_upstream(self, link: _Link) -> None:
        tail = b""
        try:
            while data := _recv(link.client, link):
                marker = self.marker
                link.marked = link.marked or marker is None or _found(marker, tail, data)
                if _found(EXEC, tail, data):
                    with self.lock:
                        if self.armed > 0 and link.marked:
                            self.armed -= 1
                            link.swallow = True
                    link.marked = False
                tail = (tail + data)[-64:]
                link.upstream.sendall(data)
        except OSError:
            pass
        link.close(reset=False)

    def _to_client(self, link: _Link) -> None:
        try:
            while data := _recv(link.upstream, link):
                if link.swallow:
                    self._swallow(link)
                    return
                link.client.sendall(data)
        except OSError:
            pass
        link.close(reset=False)

    def _swallow(self, link: _Link) -> None:
        """Hold back Redis's answers until it is quiet for ``QUIET_S`` (the client sends
        nothing more before it gets the EXEC reply, so by then the EXEC has run), then lose
        them and reset the client's connection."""
        link.upstream.settimeout(QUIET_S)
        with contextlib.suppress(OSError):  # socket.timeout: quiet, done
            while link.upstream.recv(65536):
                pass
        with self.lock:
            self.dropped += 1
        link.close(reset=True)

    def close(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.server.close()
        for link in self.links:
            link.close(reset=False)
