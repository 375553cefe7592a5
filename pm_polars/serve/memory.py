"""The in-process read model for ``pm-polars demo --serve``: no Redis, no Kafka.

:class:`MemorySource` holds the same JSON texts Redis would (documents of
``PortfolioEngine.portfolio_documents``, ``aum``, ``prices``) and the same update messages
(``portfolio_ids`` + ``ts``), so the app and the page cannot tell the two apart. Writers on
another thread call :meth:`MemorySource.publish_threadsafe`; every mutation runs on the
event loop's thread, so readers see whole batches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from pm_polars.client.models import Update
from pm_polars.serve.source import Updates

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def document_text(doc: Mapping[str, object]) -> str:
    """Compact JSON of a document; non-finite numbers as ``null`` (the writers' spelling)."""
    try:
        return _dumps(doc)
    except ValueError:  # nan/inf somewhere
        return _dumps(_finite(doc))


def _finite(value: object) -> object:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class _MemoryUpdates:
    def __init__(self, source: MemorySource) -> None:
        self._source = source
        self._queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=1000)

    async def start(self) -> None:
        self._source._subscribers.add(self._queue)

    async def get(self, timeout: float | None = None) -> Update | None:
        await self.start()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        self._source._subscribers.discard(self._queue)


class MemorySource:
    """Documents in dicts; see the module docstring."""

    name = "memory"

    def __init__(self) -> None:
        self.docs: dict[str, str] = {}
        self.aum_text: str | None = None
        self.price_texts: dict[int, str] = {}
        self._subscribers: set[asyncio.Queue[Update]] = set()

    def publish(self, docs: Mapping[str, str], aum: str | None, prices: Mapping[int, str],
                ts_ns: int) -> None:
        """Store one batch's documents and notify subscribers (call on the loop's thread)."""
        self.docs.update(docs)
        if aum is not None:
            self.aum_text = aum
        self.price_texts.update(prices)
        update = Update(portfolio_ids=sorted(docs), ts=ts_ns)
        for queue in list(self._subscribers):
            if not queue.full():
                queue.put_nowait(update)

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop, docs: Mapping[str, str],
                           aum: str | None, prices: Mapping[int, str], ts_ns: int) -> None:
        """:meth:`publish` from another thread."""
        loop.call_soon_threadsafe(self.publish, dict(docs), aum, dict(prices), ts_ns)

    async def ping(self) -> None:
        return None

    async def overview(self) -> tuple[list[str], str | None]:
        return [self.docs[p] for p in sorted(self.docs)], self.aum_text

    async def changed(self, portfolio_ids: list[str]) -> tuple[list[str], str | None]:
        return [self.docs[p] for p in portfolio_ids if p in self.docs], self.aum_text

    async def document(self, portfolio_id: str) -> str | None:
        return self.docs.get(portfolio_id)

    async def aum(self) -> str | None:
        return self.aum_text

    async def prices(self, tokens: list[int] | None) -> dict[int, str]:
        wanted = sorted(self.price_texts) if tokens is None else sorted(tokens)
        return {t: self.price_texts[t] for t in wanted if t in self.price_texts}

    def subscribe(self) -> Updates:
        return _MemoryUpdates(self)

    async def aclose(self) -> None:
        self._subscribers.clear()
