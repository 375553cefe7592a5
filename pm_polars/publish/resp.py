"""Redis commands encoded in bulk (RESP) by Polars, and a raw MULTI/EXEC over one connection.

A batch writes thousands of hash fields and sorted-set members. redis-py packs every
argument in Python (about a microsecond each) and parses every reply; here the commands of a
whole batch are encoded by a few Polars expressions into one byte string, sent in one write,
and only one reply per *command* (one per key, not per field) is read back.

RESP (the Redis protocol): a command is ``*<argc>\\r\\n`` followed by each argument as a
bulk string ``$<byte length>\\r\\n<bytes>\\r\\n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import redis
from redis.connection import Connection


def bulk(expr: pl.Expr) -> pl.Expr:
    """Each value as a RESP bulk string (text; ``len_bytes`` counts UTF-8 bytes)."""
    text = expr.cast(pl.String)
    return pl.concat_str(pl.lit("$"), text.str.len_bytes().cast(pl.String), pl.lit("\r\n"),
                         text, pl.lit("\r\n"))


def arg(value: Any) -> bytes:
    """One argument as a RESP bulk string (``repr`` of floats, ``str`` of others, UTF-8)."""
    data = value if isinstance(value, bytes) else (
        repr(value) if isinstance(value, float) else str(value)).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def header(name: str, key: str, nargs: int) -> bytes:
    """The start of ``name key`` followed by ``nargs`` more arguments (encoded by the caller)."""
    return b"*%d\r\n" % (2 + nargs) + arg(name) + arg(key)


def command(*args: Any) -> bytes:
    """One command (Python formatting: ``str`` of text and ints, ``repr`` of floats)."""
    texts = [a if type(a) is str else repr(a) if type(a) is float else  # noqa: E721
             a.decode() if type(a) is bytes else str(a) for a in args]  # noqa: E721
    body = "".join([f"${len(t)}\r\n{t}\r\n" for t in texts])
    if body.isascii():  # byte length == character length
        return b"*%d\r\n" % len(texts) + body.encode()
    return b"*%d\r\n" % len(texts) + b"".join(arg(t) for t in texts)


def per_key(frame: pl.DataFrame, name: str, pairs: Sequence[str]) -> tuple[bytes, int]:
    """``name key a1 b1 a2 b2 ...`` once per distinct ``key`` of ``frame``.

    ``pairs`` names the two columns repeated per row (``["field", "value"]`` for HSET,
    ``["score", "member"]`` for ZADD). Returns the encoded commands and their count.
    """
    if frame.height == 0:
        return b"", 0
    head = f"${len(name)}\r\n{name}\r\n"
    out = (
        frame.group_by("key", maintain_order=True)
        .agg(pl.concat_str([bulk(pl.col(c)) for c in pairs]).str.join("").alias("body"),
             pl.len().alias("n"))
        .select(pl.concat_str(
            pl.lit("*"), (pl.col("n") * len(pairs) + 2).cast(pl.String), pl.lit("\r\n" + head),
            bulk(pl.col("key")), pl.col("body")).str.join("").alias("cmds"),
            pl.len().alias("count"))
    )
    text, count = out.row(0)
    return str(text).encode(), int(count)


def flat(name: str, parts: pl.DataFrame, per_row: int) -> bytes:
    """``name`` then, row by row, the already bulk-encoded columns of ``parts`` (MSET)."""
    body = parts.select(pl.concat_str(pl.all()).str.join("")).item()
    return b"*%d\r\n" % (1 + per_row * parts.height) + arg(name) + str(body).encode()


def one_command(name: str, key: str, values: pl.Series) -> bytes:
    """``name key v1 v2 ...`` with the values of a column (e.g. SADD index ids...)."""
    if values.len() == 0:
        return b""
    body = pl.select(bulk(pl.lit(values)).str.join("")).item()
    return b"*%d\r\n" % (2 + values.len()) + arg(name) + arg(key) + str(body).encode()


@dataclass
class Batch:
    """Encoded commands to queue inside one MULTI/EXEC, in order."""

    chunks: list[bytes] = field(default_factory=list)
    count: int = 0

    def add(self, data: bytes, count: int = 1) -> int:
        """Append; returns the index of the first added command's result."""
        index = self.count
        if data:
            self.chunks.append(data)
            self.count += count
        return index


MULTI, EXEC, UNWATCH = command("MULTI"), command("EXEC"), command("UNWATCH")


class RawConnection:
    """One pooled connection used directly; broken (unread replies) -> disconnected."""

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.conn: Connection = self.pool.get_connection()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.conn.disconnect()  # replies may be pending: never reuse it
        self.pool.release(self.conn)

    def call(self, commands: Sequence[bytes], replies: int) -> list[Any]:
        """Send ``commands`` in one write and read ``replies`` replies (errors raise)."""
        self.conn.send_packed_command(list(commands), check_health=False)
        return [self.conn.read_response() for _ in range(replies)]

    def send(self, commands: Sequence[bytes]) -> None:
        """Send ``commands`` in one write; read their replies later (``read``)."""
        self.conn.send_packed_command(list(commands), check_health=False)

    def read(self, replies: int) -> list[Any]:
        """The next ``replies`` replies (an error reply raises)."""
        return [self.conn.read_response() for _ in range(replies)]

    def exec(self, batch: Batch) -> list[Any] | None:
        """MULTI, the batch, EXEC; the EXEC reply (None if a WATCHed key changed)."""
        self.call([MULTI, *batch.chunks, EXEC], 0)
        return self.read_exec(batch)

    def read_exec(self, batch: Batch) -> list[Any] | None:
        """The replies of ``MULTI``, ``batch``, ``EXEC`` sent earlier: the EXEC reply."""
        for _ in range(batch.count + 1):  # +OK, then +QUEUED per command
            self.conn.read_response()
        result = self.conn.read_response()
        if result is None:
            return None
        for item in result:
            if isinstance(item, redis.ResponseError):
                raise item
        return list(result)
