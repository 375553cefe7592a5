"""Which partition owns a portfolio, and refusing fills that arrive on another one.

A portfolio's partition is the one its first fill came on (``pm:owner`` in Redis, written
in the batch's commit); a fill of it on another partition is refused with a reason
(dead-lettered, counted as a partition conflict), never merged: partitions' state rows
never mix.
"""

from __future__ import annotations

import polars as pl

from pm_polars.daemon.checkpoint.codec import SMALL_BATCH
from pm_polars.daemon.intake import Decoded
from pm_polars.publish.keys import part_name
from pm_polars.types import TP


def route(decoded: Decoded, owner: dict[str, TP], foreign: dict[str, TP]
          ) -> tuple[Decoded, dict[str, TP]]:
    """Refuse fills on the wrong partition; claim partitions for new portfolios.

    ``owner``: portfolios of this instance's partitions; ``foreign``: of other instances'.
    Returns the routed batch and the claims ``{portfolio: partition}`` of new portfolios.
    """
    fills = decoded.fills
    claims: dict[str, TP] = {}
    wrong: list[tuple[str, str, int, str]] = []
    if fills.height == 0:
        return decoded, claims
    names = ("portfolio_id", "topic", "partition")
    keys = fills.select(names).unique(maintain_order=True) if fills.height > SMALL_BATCH \
        else fills  # small: the columns as lists (no query), deduplicated below
    columns = [keys.get_column(c).to_list() for c in names]
    for pid, topic, partition in dict.fromkeys(zip(*columns, strict=True)):
        tp = (topic, partition)
        known = owner.get(pid) or claims.get(pid) or foreign.get(pid)
        if known is None:
            claims[pid] = tp
        elif known != tp:
            wrong.append((pid, topic, partition, part_name(*known)))
    if not wrong:
        return decoded, claims
    bad = pl.DataFrame(wrong, schema={"portfolio_id": pl.String, "topic": pl.String,
                                      "partition": pl.Int32, "owner": pl.String}, orient="row")
    refused = fills.join(bad, on=["portfolio_id", "topic", "partition"], how="inner")
    reason = pl.format("portfolio {} belongs to partition {}: fills must be keyed by "
                       "portfolio_id (refused, not merged)", "portfolio_id", "owner")
    return decoded.refuse(refused, reason), claims


def unknown(decoded: Decoded, owner: dict[str, TP], foreign: dict[str, TP]) -> list[str]:
    """Portfolios of ``decoded``'s fills this instance knows no owner of (rare)."""
    if decoded.fills.height == 0:
        return []
    column = decoded.fills.get_column("portfolio_id")
    pids = column.unique().to_list() if column.len() > SMALL_BATCH else \
        dict.fromkeys(column.to_list())  # small: no query
    return [p for p in pids if p not in owner and p not in foreign]
