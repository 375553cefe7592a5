"""A TCP proxy in front of redis-server that can lose the reply of a transaction.

``LossyProxy(upstream_port)`` listens on a free local port and pumps bytes both ways,
counting RESP commands (client to server) and complete RESP replies (server to client).
``arm(n, marker)`` makes the next ``n`` transactions with a queued command (between MULTI
and EXEC) containing ``marker`` lose their reply: the proxy lets the ``EXEC`` through, waits for Redis's complete answer to it --
so the transaction *has been executed* -- drops that answer and resets the client's
connection. The client sees a connection error for a write that was applied: the case an
exactly-once checkpoint must survive (it must not apply the batch twice).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

from .ports import free_port

_LINE_TYPES = b"+-:_,#("  # simple line values (RESP2 and RESP3)
_BULK_TYPES = b"$=!"  # length-prefixed
_AGGREGATE_TYPES = b"*~>"  # n values
_PAIR_TYPES = b"%|"  # n key/value pairs (| is an attribute: one more value follows)


def _end_of_value(buf: bytes | bytearray, i: int) -> int | None:
    """End offset of the RESP value starting at ``i``, or None if ``buf`` holds only part."""
    if i >= len(buf):
        return None
    kind = buf[i:i + 1]
    eol = buf.find(b"\r\n", i)
    if eol < 0:
        return None
    head = bytes(buf[i + 1:eol])
    pos = eol + 2
    if kind in _LINE_TYPES:
        return pos
    if kind in _BULK_TYPES:
        n = int(head)
        if n < 0:
            return pos
        return pos + n + 2 if pos + n + 2 <= len(buf) else None
    count = int(head)
    if count < 0:
        return pos
    items = count * 2 if kind in _PAIR_TYPES else count
    if kind not in _AGGREGATE_TYPES and kind not in _PAIR_TYPES:
        raise ValueError(f"unknown RESP type {kind!r}")
    for _ in range(items):
        nxt = _end_of_value(buf, pos)
        if nxt is None:
            return None
        pos = nxt
    if kind == b"|":  # an attribute map decorates the value that follows it
        return _end_of_value(buf, pos)
    return pos


def _split_values(buf: bytearray) -> list[bytes]:
    """Remove and return the complete RESP values at the start of ``buf``."""
    out = []
    start = 0
    while (end := _end_of_value(buf, start)) is not None:
        out.append(bytes(buf[start:end]))
        start = end
    del buf[:start]
    return out


def _command_name(command: bytes) -> bytes:
    """``EXEC`` from ``*1\\r\\n$4\\r\\nEXEC\\r\\n``."""
    first = command.find(b"\r\n")
    second = command.find(b"\r\n", first + 2)
    third = command.find(b"\r\n", second + 2)
    return command[second + 2:third].upper()


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
        self.commands = 0  # complete commands the client sent
        self.replies = 0  # complete replies Redis sent
        self.lose: set[int] = set()  # numbers of the commands whose replies are lost
        self.marked = False  # the marker was sent inside the current MULTI
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
        with a queued command containing it)."""
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
        pending = bytearray()
        try:
            while data := _recv(link.client, link):
                pending += data
                for command in _split_values(pending):
                    link.commands += 1
                    name = _command_name(command)
                    if name == b"MULTI":
                        link.marked = self.marker is None
                    elif name == b"EXEC":
                        with self.lock:
                            if self.armed > 0 and link.marked:
                                self.armed -= 1
                                link.lose.add(link.commands)
                        link.marked = False
                    elif self.marker is not None and self.marker in command:
                        link.marked = True  # (outside MULTI it is reset at the next MULTI)
                link.upstream.sendall(data)  # forwarded as received, parsed or not
        except (OSError, ValueError):
            pass
        link.close(reset=False)

    def _to_client(self, link: _Link) -> None:
        pending = bytearray()
        try:
            while data := _recv(link.upstream, link):
                pending += data
                out = bytearray()
                for reply in _split_values(pending):
                    link.replies += 1
                    if link.replies in link.lose:  # the EXEC ran; its answer is lost
                        if out:
                            link.client.sendall(out)
                        with self.lock:
                            self.dropped += 1
                        link.close(reset=True)
                        return
                    out += reply
                if out:
                    link.client.sendall(out)
        except (OSError, ValueError):
            pass
        link.close(reset=False)

    def close(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.server.close()
        for link in self.links:
            link.close(reset=False)
