"""Open FIFO lots as a daemon stored them (``pm-polars run --cost-basis fifo``).

Lots are engine state, not part of the published documents: each position's row in its
partition's ``pm:state:{group}:{topic}:{partition}:positions`` hash carries them (see
``daemon.checkpoint.codec``). The owner map ``pm:owner:{group}`` names each portfolio's
partition. One MULTI/EXEC reads the rows of all asked portfolios, so the lots are those of
one committed batch; on a Redis Cluster (``Keys(cluster=True)``) each partition's rows are
in their own slot, read in one pipeline: each partition's lots are of one committed batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import polars as pl
import redis

from pm_polars.engine.lot_state import lots_of_rows
from pm_polars.engine.views import units
from pm_polars.publish.keys import Keys


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_lots(client: redis.Redis | redis.RedisCluster, keys: Keys, group: str,
              portfolio_ids: Iterable[str]) -> pl.DataFrame:
    """``engine.lots.LOT_SCHEMA`` frame of the open lots of ``portfolio_ids`` (oldest first
    per position; portfolios unknown to ``group`` or booked at average cost: no rows).
    ``quantity`` in units: ``Int64``, or ``Float64`` for a state booked with
    ``--quantity-decimals`` > 0 (its ``meta`` says so)."""
    ids = sorted(set(portfolio_ids))
    if not ids:
        return lots_of_rows(pl.Series([], dtype=pl.String))
    owners: list[Any] = client.hmget(keys.owners(group), ids)
    by_part: dict[str, list[str]] = defaultdict(list)
    for pid, part in zip(ids, owners, strict=True):
        if part:
            by_part[_text(part)].append(pid)
    parts = sorted(by_part)
    with client.pipeline(transaction=not keys.cluster) as pipe:
        for part in parts:
            topic, _, partition = part.rpartition(":")
            pipe.hgetall(keys.partition_state(group, topic, int(partition), "positions"))
            pipe.hget(keys.partition_state(group, topic, int(partition), "meta"),
                      "quantity_decimals")
        replies: list[Any] = pipe.execute()
    rows: list[str] = []
    decimals = 0
    for i, part in enumerate(parts):
        hash_, stored = replies[2 * i], replies[2 * i + 1]
        wanted = set(by_part[part])
        rows += [_text(v) for k, v in hash_.items() if _text(k).rpartition("|")[0] in wanted]
        decimals = max(decimals, int(_text(stored)) if stored is not None else 0)
    lots = lots_of_rows(pl.Series(rows, dtype=pl.String))
    if decimals:  # the stored atoms (``10**-d`` units) as Float64 units, as engine.lots()
        lots = lots.with_columns(units(pl.col("quantity"), 10**decimals))
    return lots.sort("portfolio_id", "instrument_token", "lot")
