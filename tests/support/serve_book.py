"""The hand-worked book of the serve tests, published through :class:`BookWriter`.

Same events and figures as ``tests/integration/test_client.py`` (A = 256265, B = 738561,
starting cash 1,000,000): after both batches paper_S1 has cash 999,478, realized 80,
unrealized 90, fees 2, equity 1,000,168; aum 3,000,246.5.
"""

from __future__ import annotations

from pathlib import Path

import redis
from reference import T0, fill, tick

from .book_writer import BookWriter
from .serve_process import ServeProcess

PREFIX = "desk1:"
A, B = 256265, 738561
BATCH1 = {0: [fill("S1", A, "BUY", 100, 10.0, fee=1.0, ts=T0 + 1, fill_id="f1"),
              fill("S1", A, "SELL", 40, 12.0, fee=1.0, ts=T0 + 2, fill_id="f2"),
              fill("S2", B, "SELL", 10, 50.0, fee=0.5, ts=T0 + 3, fill_id="f3"),
              fill("S2", B, "BUY", 10, 45.0, fee=0.5, ts=T0 + 4, fill_id="f4"),
              fill("S2", A, "BUY", 20, 11.0, ts=T0 + 5, fill_id="f5")],
          1: [fill("S3", B, "SELL", 10, 50.0, fee=0.5, ts=T0 + 6, fill_id="f6",
                   source="live")]}
IDS = ["live_Overall", "live_S3", "paper_Overall", "paper_S1", "paper_S2"]


def publish_book(client: redis.Redis) -> BookWriter:
    """Both batches of the hand-worked book; the writer can publish more."""
    writer = BookWriter(client, PREFIX)
    writer.batch(BATCH1, [tick(B, 48.0, ts=T0 + 10)])
    writer.batch({}, [tick(A, 11.5, ts=T0 + 20)])
    return writer


def serve(redis_url: str, tmp: Path, *extra: str) -> ServeProcess:
    """`pm-polars serve` over the book (1 s heartbeats), listening."""
    return ServeProcess(["serve", "--redis-url", redis_url, "--key-prefix", PREFIX,
                         "--heartbeat-s", "1", *extra], tmp / "serve.log").wait_ready()
