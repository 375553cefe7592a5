"""The published read model of strategy portfolios in Redis, and the update message.

Written by the daemon's checkpoint inside its MULTI/EXEC, once per batch per changed
portfolio (never per event). Keys come from :mod:`pm_polars.publish.keys`; the rows are
built column-wise by :mod:`pm_polars.publish.model_rows`:

* ``portfolio:{pid}``          JSON of the engine's published model (same shape as
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
from collections.abc import Iterable


def update_message(portfolio_ids: Iterable[str], ts_ns: int) -> str:
    """The ``portfolio-updates`` payload."""
    return json.dumps({"portfolio_ids": sorted(portfolio_ids), "ts": ts_ns})
