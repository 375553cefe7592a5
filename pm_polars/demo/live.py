"""``pm-polars demo --serve``: the synthetic feed, paced, served live from memory.

No Redis and no Kafka: a thread runs the demo feed through a :class:`PortfolioEngine` at
``rate`` events per second in batches of ``batch_size``; after each batch the documents that
changed (same JSON as the daemon publishes: ``portfolio_documents``, ``aum``, ``prices`` from
the tick marks) go to a :class:`~pm_polars.serve.memory.MemorySource`, which the same app as
``pm-polars serve`` reads. The feed is endless (a new seed when one runs out); the server
runs until interrupted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

from pm_polars import PortfolioEngine
from pm_polars.demo.feed import generate_batches
from pm_polars.serve.app import create_app
from pm_polars.serve.auth import ServeSettings
from pm_polars.serve.memory import MemorySource, document_text
from pm_polars.serve.runner import serve_app

log = logging.getLogger(__name__)

FEED_CHUNK = 1_000_000  # events per generated feed before the next seed


def _prices(eng: PortfolioEngine) -> dict[int, str]:
    marks = eng.snapshot().marks.drop_nulls("tick_price")
    return {tok: document_text({"last_price": price, "ts": ts}) for tok, price, ts in
            marks.select("instrument_token", "tick_price", "tick_ts").iter_rows()}


class PacedFeed:
    """The engine loop on its own thread; publishes into ``source`` on ``loop``."""

    def __init__(self, source: MemorySource, *, seed: int, rate: float, batch_size: int,
                 starting_cash: float) -> None:
        self.source = source
        self.seed, self.rate, self.batch_size = seed, rate, batch_size
        self.engine = PortfolioEngine(starting_cash=starting_cash)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = threading.Event()
        self.batches = 0
        self._texts: dict[str, str] = {}

    def step(self, values: list[bytes]) -> tuple[dict[str, str], str, dict[int, str]]:
        """Apply one batch; the documents whose JSON changed, the aum and the prices."""
        eng = self.engine
        result = eng.apply(values)
        changed = list(result.changed_portfolios)
        sources = sorted({p.split("_", 1)[0] for p in changed})
        docs = eng.portfolio_documents(changed + [f"{s}_Overall" for s in sources])
        out = {}
        for pid, doc in docs.items():
            text = document_text(doc)
            if self._texts.get(pid) != text:
                self._texts[pid] = out[pid] = text
        self.batches += 1
        return out, document_text(eng.aum()), _prices(eng)

    def run(self) -> None:
        """Until :attr:`stopped`: one batch every ``batch_size / rate`` seconds."""
        period = self.batch_size / self.rate
        next_at = time.monotonic()
        for seed in itertools.count(self.seed):
            for values in generate_batches(seed, FEED_CHUNK, self.batch_size):
                if self.stopped.wait(max(0.0, next_at - time.monotonic())):
                    return
                next_at = max(next_at + period, time.monotonic() - period)
                docs, aum, prices = self.step(values)
                if self.loop is not None and not self.loop.is_closed():
                    self.source.publish_threadsafe(self.loop, docs, aum, prices, time.time_ns())


def run_live_demo(settings: ServeSettings, *, seed: int, rate: float, batch_size: int,
                  starting_cash: float) -> None:
    """Serve the paced demo on ``settings.host:port`` until interrupted."""
    source = MemorySource()
    feed = PacedFeed(source, seed=seed, rate=rate, batch_size=batch_size,
                     starting_cash=starting_cash)

    def start_feed(loop: asyncio.AbstractEventLoop) -> None:  # the feed publishes into it
        feed.loop = loop
        threading.Thread(target=feed.run, name="pm-demo-feed", daemon=True).start()

    app = create_app(source, auth_token=settings.auth_token, cors_origins=settings.cors_origins,
                     heartbeat_s=settings.heartbeat_s, on_start=start_feed)

    log.info("event=demo_serve rate=%s batch_size=%d open=http://%s:%d/", rate, batch_size,
             settings.host, settings.port)
    try:
        serve_app(app, settings.host, settings.port)
    finally:
        feed.stopped.set()
