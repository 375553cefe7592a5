"""RESP-encoded commands (``pm_polars.publish.resp``) parsed back, for tests that look at
what a writer would send."""

from __future__ import annotations


def parse_commands(data: bytes) -> list[list[bytes]]:
    """RESP commands -> argument lists (the inverse of ``publish.resp``)."""
    out, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        argc, pos, args = int(data[pos + 1:end]), end + 2, []
        for _ in range(argc):
            end = data.index(b"\r\n", pos)
            size = int(data[pos + 1:end])
            args.append(data[end + 2:end + 2 + size])
            pos = end + 4 + size
        out.append(args)
    return out
