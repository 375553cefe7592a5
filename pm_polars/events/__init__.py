"""Decode stage: Kafka JSON messages (or frames / dicts) -> validated fills, ticks, rejects.

See ``decode`` for the pipeline and ``schema`` for the column contracts.
"""

from pm_polars.events.batch import DecodedBatch
from pm_polars.events.decode import decode_any, decode_dicts, decode_frame, decode_messages

__all__ = ["DecodedBatch", "decode_any", "decode_dicts", "decode_frame", "decode_messages"]
