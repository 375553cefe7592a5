"""Decode a :class:`RawBatch`: fill topics and the ticks topic, with Kafka provenance.

Records are decoded in two bulk calls (fill topics, then ticks with ``seq`` continuing),
so ``seq`` is arrival order within the batch. An event on the wrong kind of topic (a tick on
a fill topic or a fill on the ticks topic) is rejected: fills must stay with the partition
that owns their portfolio, and a tick on one fill partition would reach one instance only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
from confluent_kafka import Message

from pm_polars.daemon.batching import RawBatch
from pm_polars.events import decode_messages
from pm_polars.events.schema import REJECT_SCHEMA


@dataclass(frozen=True)
class Decoded:
    """Valid fills (fill topics only), valid ticks (ticks topic only), all rejects."""

    fills: pl.DataFrame
    ticks: pl.DataFrame
    rejects: pl.DataFrame
    records: int


def _columns(msgs: list[Message]) -> dict[str, list[Any]]:
    values: list[Any] = []
    topics: list[Any] = []
    partitions: list[Any] = []
    offsets: list[Any] = []
    stamps: list[Any] = []
    for m in msgs:
        values.append(m.value())
        topics.append(m.topic())
        partitions.append(m.partition())
        offsets.append(m.offset())
        kind, ms = m.timestamp()
        stamps.append(ms if kind and ms >= 0 else None)
    return {"values": values, "topics": topics, "partitions": partitions, "offsets": offsets,
            "kafka_timestamps_ms": stamps}


def _misplaced(frame: pl.DataFrame, values: list[Any], seq_start: int,
               reason: str) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    raw = [values[s - seq_start] for s in frame["seq"].to_list()]
    return frame.select(
        "seq",
        pl.Series("raw", raw, dtype=pl.Binary),
        pl.lit(reason).alias("reason"),
        "topic", "partition", "offset",
    ).cast(pl.Schema(REJECT_SCHEMA))


def decode_batch(batch: RawBatch, ticks_topic: str) -> Decoded:
    """Decode every record of ``batch``; ``Decoded.records`` counts them."""
    fill_msgs = [m for msgs in batch.fills.values() for m in msgs]
    cols = _columns(fill_msgs)
    fill_values = cols.pop("values")
    f = decode_messages(fill_values, **cols, seq_start=0)
    tcols = _columns(batch.ticks)
    tick_values = tcols.pop("values")
    t = decode_messages(tick_values, **tcols, seq_start=len(fill_msgs))
    rejects = [f.rejects, t.rejects]
    if f.ticks.height:
        rejects.append(_misplaced(f.ticks, fill_values, 0,
                                  f"market_tick on a fill topic; ticks belong on {ticks_topic}"))
    if t.fills.height:
        rejects.append(_misplaced(t.fills, tick_values, len(fill_msgs),
                                  "order_fill on the ticks topic; fills belong on a fill topic "
                                  "keyed by portfolio_id"))
    all_rejects = pl.concat([r.cast(pl.Schema(REJECT_SCHEMA)) for r in rejects]).sort("seq")
    return Decoded(f.fills, t.ticks, all_rejects, len(fill_msgs) + len(batch.ticks))
