"""The instance's table of latest prices: every tick any instance needs, reduced.

A batch's ticks are reduced to one winning tick per instrument (latest by event time ``ts``,
ns UTC; on equal ``ts`` the later arrival wins: the engine's mark rule), then applied to
every partition engine. Because "latest by ts" is associative, applying the reduced rows
gives the same marks as applying the whole batch, and a newly assigned partition's engine
is brought up to date by applying this table once.

Persisted as the Redis ``prices`` hash (``token -> {"last_price", "ts"}``) in the same
MULTI as the tick offsets, so after a restart table and offsets agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import polars as pl

from pm_polars.engine.marks import latest_by_ts
from pm_polars.events.schema import TICK_SCHEMA

TABLE_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "last_price": pl.Float64(),
    "ts": pl.Int64(),
}


def as_ticks(table: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``TABLE_SCHEMA`` as a tick frame (``TICK_SCHEMA``, no provenance)."""
    return table.with_row_index("seq").select(
        [
            (pl.col(c) if c in table.columns or c == "seq" else pl.lit(None)).cast(t).alias(c)
            for c, t in TICK_SCHEMA.items()
        ]
    )


class TickTable:
    """Latest price and ``ts`` per instrument seen by this instance."""

    def __init__(self, table: pl.DataFrame | None = None) -> None:
        self.table = table if table is not None else pl.DataFrame(schema=TABLE_SCHEMA)

    @classmethod
    def from_prices(cls, prices: Mapping[str, str]) -> TickTable:
        """From the Redis ``prices`` hash."""
        rows = [
            {"instrument_token": int(tok), "last_price": d["last_price"], "ts": d.get("ts")}
            for tok, d in ((t, json.loads(v)) for t, v in prices.items())
        ]
        return cls(pl.DataFrame(rows, schema=TABLE_SCHEMA))

    def reduce(self, ticks: pl.DataFrame) -> pl.DataFrame:
        """One winning tick per instrument of a batch (``TICK_SCHEMA``), for the engines."""
        if ticks.height == 0:
            return ticks
        prior = self.table.select("instrument_token", pl.col("ts").alias("prior_ts"))
        best = latest_by_ts(ticks, "last_price", prior)
        return as_ticks(best.rename({"eff_ts": "ts"}).select(list(TABLE_SCHEMA)))

    def merge(self, reduced: pl.DataFrame) -> pl.DataFrame:
        """Fold reduced ticks in; returns the rows that won (to write to ``prices``)."""
        if reduced.height == 0:
            return pl.DataFrame(schema=TABLE_SCHEMA)
        new = reduced.select(list(TABLE_SCHEMA)).join(
            self.table.select("instrument_token", pl.col("ts").alias("old_ts")),
            on="instrument_token", how="left",
        )
        wins = new.filter(
            pl.col("old_ts").is_null() | pl.col("ts").is_null() | (pl.col("ts") >= pl.col("old_ts"))
        ).select(list(TABLE_SCHEMA))
        kept = self.table.join(wins.select("instrument_token"), on="instrument_token", how="anti")
        self.table = pl.concat([kept, wins]).sort("instrument_token")
        return wins

    def as_ticks(self) -> pl.DataFrame:
        return as_ticks(self.table)


def price_rows(wins: pl.DataFrame) -> list[tuple[str, str, str]]:
    """``(token, ts text or "", JSON)`` items for the aggregate script's ``prices``."""
    out = []
    for token, price, ts in wins.select(list(TABLE_SCHEMA)).iter_rows():
        out.append((str(token), "" if ts is None else str(ts),
                    json.dumps({"last_price": price, "ts": ts})))
    return out
