"""Intake: a :class:`RawBatch` decoded, with Kafka provenance and its ``committable``.

Records are decoded in one bulk call (fill partitions in offset order, then ticks), so
``seq`` orders fills of one partition by offset. An event on the wrong kind of topic (a tick on
a fill topic or a fill on the ticks topic) is rejected: fills must stay with the partition
that owns their portfolio, and a tick on one fill partition would reach one instance only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from pm_polars.daemon.kafka.microbatch import RawBatch
from pm_polars.events import decode_messages
from pm_polars.events.schema import REJECT_SCHEMA
from pm_polars.types import RECORD_ID, TP, Committable


@dataclass(frozen=True)
class Decoded:
    """Valid fills (fill topics only), valid ticks (ticks topic only), all rejects.

    ``values`` are the raw records by ``seq`` (to dead-letter a fill refused later);
    ``committable`` the next offset of every fill and tick partition the records cover.
    """

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame
    records: int
    values: list[Any] = field(default_factory=list)
    committable: Committable = field(default_factory=dict)

    def without(self, tps: set[TP]) -> Decoded:
        """Without the fills, rejects and offsets of fill partitions ``tps`` (ticks are
        never dropped)."""
        gone = pl.DataFrame(
            {"topic": [t for t, _ in tps], "partition": [q for _, q in tps]},
            schema={"topic": pl.String, "partition": pl.Int32},
        )
        return replace(
            self,
            fills=self.fills.join(gone, on=["topic", "partition"], how="anti"),
            rejects=self.rejects.join(gone, on=["topic", "partition"], how="anti"),
            committable={tp: o for tp, o in self.committable.items() if tp not in tps},
        )

    def refuse_rows(self, rejects: pl.DataFrame) -> Decoded:
        """Add ``rejects`` (``REJECT_SCHEMA`` rows the engine made, by ``seq``) with each
        record's own bytes as ``raw``."""
        if rejects.height == 0:
            return self
        raw = [self.values[s] for s in rejects["seq"].to_list()]
        rows = rejects.with_columns(pl.Series("raw", raw, dtype=pl.Binary))
        return replace(self, rejects=pl.concat([self.rejects, rows]).sort("seq"))

    def refuse(self, fills: pl.DataFrame, reason: pl.Expr) -> Decoded:
        """Move ``fills`` (rows of ``self.fills``) to the rejects with ``reason``."""
        if fills.height == 0:
            return self
        gone = _misplaced(fills, self.values, 0, reason)
        keep = self.fills.join(fills.select("seq"), on="seq", how="anti")
        rejects = pl.concat([self.rejects, gone]).sort("seq")
        return replace(self, fills=keep, rejects=rejects)


def _misplaced(frame: pl.DataFrame, values: list[Any], seq_start: int,
               reason: str | pl.Expr) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    raw = [values[s - seq_start] for s in frame["seq"].to_list()]
    why = pl.lit(reason) if isinstance(reason, str) else reason
    return frame.select(
        "seq",
        pl.Series("raw", raw, dtype=pl.Binary),
        why.alias("reason"),
        *RECORD_ID,
    ).cast(pl.Schema(REJECT_SCHEMA))


def decode_batch(batch: RawBatch, ticks_topic: str, quantity_decimals: int = 0,
                 positive_prices: bool = True) -> Decoded:
    """Decode every record of ``batch`` in one call; ``Decoded.records`` counts them.

    ``quantity_decimals`` (``--quantity-decimals``): decimal places a fill's quantity may
    have; fills then carry their quantity as atoms of ``10**-d`` units (see ``events.rules``).

    ``positive_prices`` False (some instrument has ``allow_negative_price``): prices <= 0
    pass the decoder and the engine step judges them per instrument.

    Fill records come first (in arrival order: each partition's in offset order), then
    ticks; ``seq`` is the position in that order.
    """
    f, t = batch.fills, batch.ticks
    values = f.values + t.values
    d = decode_messages(values, topics=f.topics + t.topics,
                        partitions=f.partitions + t.partitions, offsets=f.offsets + t.offsets,
                        kafka_timestamps_ms=f.stamps + t.stamps, seq_start=0,
                        quantity_decimals=quantity_decimals, positive_prices=positive_prices)
    on_ticks = pl.col("topic") == ticks_topic
    rejects = [d.rejects]
    fills, ticks = d.fills, d.ticks
    nf = len(f)  # records from the ticks consumer have seq >= nf: check only if any mixed
    if fills.height and (fills["seq"].max() or 0) >= nf and (  # type: ignore[operator]
            wrong := fills.filter(on_ticks)).height:
        fills = fills.filter(~on_ticks)
        rejects.append(_misplaced(wrong, values, 0, "order_fill on the ticks topic; fills "
                                  "belong on a fill topic keyed by portfolio_id"))
    if ticks.height and (ticks["seq"].min() or 0) < nf and (  # type: ignore[operator]
            wrong := ticks.filter(~on_ticks)).height:
        ticks = ticks.filter(on_ticks)
        rejects.append(_misplaced(wrong, values, 0, "market_tick on a fill topic; ticks "
                                  f"belong on {ticks_topic}"))
    all_rejects = pl.concat(rejects).sort("seq") if len(rejects) > 1 else d.rejects
    return Decoded(fills, ticks, all_rejects, len(values), values, batch.committable)
