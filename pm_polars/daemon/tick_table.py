"""The instance's table of latest prices: every tick any instance needs, reduced.

A batch's ticks are reduced to one winning tick per instrument (latest by event time ``ts``,
ns UTC; on equal ``ts`` the later arrival wins: the engine's mark rule), then applied to
the book's engine. Because "latest by ts" is associative, applying the reduced rows gives
the same marks as applying the whole batch, and a newly assigned partition's engine is
brought up to date by applying this table once.

Persisted as the Redis ``prices`` hash (``token -> {"last_price", "ts"}``, plus ``"bid"``
and ``"ask"`` when the winning tick quoted them: one tick wins for all three) in the same
MULTI as the tick offsets, so after a restart table and offsets agree.

The table is a plain dict (one entry per instrument): folding a batch's few winners into
it costs microseconds, where a Polars join/concat/sort costs a fraction of a millisecond
per call. A fold builds a new dict, so the old one is a free snapshot for ``Book.restore``.
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
    "bid": pl.Float64(),  # the winning tick's quote (null: none)
    "ask": pl.Float64(),
}
Quote = tuple[float, int | None, float | None, float | None]  # (last price, ts, bid, ask)
Prices = dict[int, Quote]  # token -> the winning tick
_NO_PRIOR = pl.DataFrame(schema={"instrument_token": pl.Int64, "prior_ts": pl.Int64})
# ``latest_by_ts`` winners (instrument_token, last_price, eff_ts, bid, ask) as TICK_SCHEMA
_REDUCED = [
    (pl.int_range(pl.len(), dtype=pl.Int64) if c == "seq" else
     pl.col("eff_ts" if c == "ts" else c).cast(t) if c in TABLE_SCHEMA else
     pl.lit(None, dtype=t)).alias(c)
    for c, t in TICK_SCHEMA.items()
]


def as_ticks(table: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``TABLE_SCHEMA`` as a tick frame (``TICK_SCHEMA``, no provenance)."""
    return table.select(
        [
            (pl.int_range(pl.len(), dtype=pl.Int64) if c == "seq" else
             pl.col(c) if c in table.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in TICK_SCHEMA.items()
        ]
    )


def _frame(prices: Prices) -> pl.DataFrame:
    return pl.DataFrame([(tok, *quote) for tok, quote in sorted(prices.items())],
                        schema=TABLE_SCHEMA, orient="row")


class TickTable:
    """Latest price, ``ts``, bid and ask per instrument seen by this instance."""

    def __init__(self, prices: Prices | None = None) -> None:
        self.prices: Prices = dict(prices or {})

    @classmethod
    def from_prices(cls, prices: Mapping[str, str]) -> TickTable:
        """From the Redis ``prices`` hash."""
        out: Prices = {}
        for tok, text in prices.items():
            d = json.loads(text)
            bid, ask = d.get("bid"), d.get("ask")
            out[int(tok)] = (float(d["last_price"]), d.get("ts"),
                             None if bid is None else float(bid),
                             None if ask is None else float(ask))
        return cls(out)

    @property
    def table(self) -> pl.DataFrame:
        """The table as a frame (``TABLE_SCHEMA``, by token)."""
        return _frame(self.prices)

    def reduce(self, ticks: pl.DataFrame) -> pl.DataFrame:
        """One winning tick per instrument of a batch (``TICK_SCHEMA``), for the engine."""
        if ticks.height == 0:
            return ticks
        prior = _NO_PRIOR
        if ticks.get_column("ts").null_count():  # ts-less ticks count from the stored ts
            prior = _frame(self.prices).select("instrument_token", pl.col("ts").alias("prior_ts"))
        return latest_by_ts(ticks, "last_price", prior, ("bid", "ask")).select(_REDUCED)

    def merge(self, reduced: pl.DataFrame) -> list[tuple[int, Quote]]:
        """Fold reduced ticks in; returns the ``(token, quote)`` that won (for ``prices``).

        A tick wins unless both it and the stored one have a ``ts`` and its is older.
        """
        if reduced.height == 0:
            return []
        table, wins = dict(self.prices), []
        columns = (reduced.get_column(c).to_list() for c in TABLE_SCHEMA)  # no query
        for tok, price, ts, bid, ask in zip(*columns, strict=True):
            old = table.get(tok)
            if old is None or ts is None or old[1] is None or ts >= old[1]:
                table[tok] = (price, ts, bid, ask)
                wins.append((tok, (price, ts, bid, ask)))
        self.prices = table
        return wins

    def as_ticks(self) -> pl.DataFrame:
        return as_ticks(_frame(self.prices))


def price_rows(wins: list[tuple[int, Quote]]) -> list[tuple[str, str, str]]:
    """``(token, ts text or "", JSON)`` items for the aggregate script's ``prices``
    (``bid``/``ask`` only when quoted: a feed without them writes what it always did)."""
    out = []
    for tok, (price, ts, bid, ask) in wins:
        doc: dict[str, float | int | None] = {"last_price": price, "ts": ts}
        doc |= {k: v for k, v in (("bid", bid), ("ask", ask)) if v is not None}
        out.append((str(tok), "" if ts is None else str(ts), json.dumps(doc)))
    return out
