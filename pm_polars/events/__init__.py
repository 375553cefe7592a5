"""Decode stage: Kafka JSON messages (or frames / dicts) -> validated fills, ticks, rejects.

``schema``: the wire schema and the column contracts, declared once. ``read``: one pyarrow
read of a batch into typed rows; ``isolate``: the records that read refuses, set aside in a
few more reads; ``fallback``: those records (and dicts) one by one in Python; ``typed``:
frames and Arrow tables to the same typed rows, column by column; ``timestamps``: every
``ts`` form to int64 ns; ``rules``: the one rule table, judged over whole columns, and the
split into fills / ticks / rejects; ``decode``: the entry points.
"""

from pm_polars.events.decode import (
    DecodedBatch,
    decode_any,
    decode_dicts,
    decode_frame,
    decode_messages,
)

__all__ = ["DecodedBatch", "decode_any", "decode_dicts", "decode_frame", "decode_messages"]
