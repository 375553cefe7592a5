"""Writes of the published read model (strategy portfolios), queued on a Redis pipeline.

Called by the daemon's checkpoint inside its MULTI/EXEC, once per batch per changed
portfolio (never per event). Keys come from :mod:`pm_polars.publish.keys`:

* ``portfolio:{pid}``          JSON of ``PortfolioEngine.portfolio_documents`` (same shape as
  ``pm_polars.engine.documents``; existing readers parse it unchanged);
* ``position:{pid}:{token}``   HASH of the position's fields as text (``""`` for null);
* ``portfolios``               SET index of portfolio ids.

A portfolio is rewritten when a fill touches it or a tick moves the mark of an instrument
it holds an *open* position in; a flat position's ``last_price`` therefore shows the mark
as of the portfolio's last rewrite (its money fields are 0 and stay exact).

The ``{source}_Overall`` documents, ``aum`` and ``prices`` are written by the aggregate Lua
script (they span instances). The ``portfolio-updates`` message is
``{"portfolio_ids": [...], "ts": ns}`` where ``ts`` is the writer's clock at the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from redis.client import Pipeline

from pm_polars.publish.keys import Keys


def field_text(value: Any) -> str:
    """How a position field is stored in its hash: ``repr`` of numbers, ``""`` for null."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def queue_documents(
    pipe: Pipeline, keys: Keys, documents: Mapping[str, Mapping[str, Any]]
) -> None:
    """Queue SET of each document, HSET of each of its positions and SADD to the index."""
    if not documents:
        return
    for pid, doc in documents.items():
        pipe.set(keys.portfolio(pid), json.dumps(doc))
        for token, pos in doc.get("positions", {}).items():
            pipe.hset(keys.position(pid, token),
                      mapping={k: field_text(v) for k, v in pos.items()})
    pipe.sadd(keys.index, *documents.keys())


def update_message(portfolio_ids: Iterable[str], ts_ns: int) -> str:
    """The ``portfolio-updates`` payload."""
    return json.dumps({"portfolio_ids": sorted(portfolio_ids), "ts": ts_ns})
