"""Decode stage: Kafka JSON messages (or frames / dicts) -> validated fills, ticks, rejects.

Entry points are in ``decode``; the column contracts in ``schema``. Inside: ``pipeline``
(one batch end to end), ``routing`` + ``fastparse`` (pyarrow reads), ``pyparse`` (the
reference decoder for everything else), ``validate`` + ``timestamps``/``isotime`` (columnar
rules), ``frames`` (frame rows -> JSON), ``rawschema`` (the row layout between them).
"""

from pm_polars.events.batch import DecodedBatch
from pm_polars.events.decode import decode_any, decode_dicts, decode_frame, decode_messages

__all__ = ["DecodedBatch", "decode_any", "decode_dicts", "decode_frame", "decode_messages"]
