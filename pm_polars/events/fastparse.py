"""Fast path: read batches of JSON messages with pyarrow's JSON reader.

1. **Routing** (``routing.one_line_objects``): the messages pyarrow may read at all.
2. **Reads**: those are cut into pieces (one for a small batch; a few thousand messages each
   for a large one, read in parallel threads) and each piece is read with the common JSON
   types (integer ``ts``, string ``fill_id``). For a clean batch this is the whole decode.
3. **Recovery**, only for a piece pyarrow rejects: its messages are grouped by the JSON types
   of ``ts``/``fill_id`` (``routing.variants``) and each group is read on its own, scanned
   for the records to leave to Python if pyarrow still rejects it (``fastread.read_piece``).
   Pieces keep the cost of a bad record to its own piece.

Integer fields are read as float64; rows whose values are not exact integers below 2**53
are re-decoded in Python too. A record pyarrow reads gives exactly the row ``pyparse`` would
give (same types, exact decimal ``ts`` text, correctly rounded floats), so routing never
changes a result.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.fastread import Tables, read_lines, read_piece
from pm_polars.events.rawschema import TS_INT, arrow_schema, table_to_raw
from pm_polars.events.routing import one_line_objects, variants

log = logging.getLogger(__name__)

Variant = tuple[str, bool]  # (ts kind, fill_id is a number)
Reads = dict[Variant, Tables]
_COMMON: Variant = (TS_INT, False)  # integer ts, string fill_id
_MIN_PIECE = 4_096  # messages: below this, one read costs less than splitting it
_POOL_LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    """The pool reading pieces in parallel (created once; pyarrow reads release the GIL)."""
    global _pool
    with _POOL_LOCK:
        if _pool is None:
            _pool = ThreadPoolExecutor(pa.cpu_count(), thread_name_prefix="pm-decode")
        return _pool


def _recover(texts: pa.Array, idx: pa.Array, error: str) -> tuple[Reads, list[int]]:
    """A piece pyarrow rejected with ``error``: read each JSON-type variant on its own."""
    kinds = variants(pl.Series(texts)).with_columns(n=pl.int_range(pl.len()))
    slow = idx.filter(kinds["python"].to_arrow()).to_pylist()
    groups = kinds.filter(~pl.col("python")).partition_by(["ts_kind", "fid_num"], as_dict=True)
    reads: Reads = defaultdict(list)
    for (ts_kind, fid_num), group in groups.items():
        variant = (str(ts_kind), bool(fid_num))
        whole = group.height == len(texts) and variant == _COMMON  # read already, failed
        take = pa.array(group["n"].to_arrow(), pa.int64())
        got, left = read_piece(
            texts.take(take), idx.take(take), arrow_schema(*variant), error if whole else None
        )
        reads[variant] += got
        slow += left
    return reads, slow


def _read(piece: tuple[pa.Array, pa.Array]) -> tuple[Reads, list[int], bool]:
    """Read one piece with the common JSON types, or recover it; the flag tells whether
    the first read took the whole piece."""
    texts, idx = piece
    result = read_lines(texts, arrow_schema(*_COMMON))
    if isinstance(result, pa.Table):
        return {_COMMON: [(result, idx)]}, [], True
    log.debug("piece of %d messages rejected: %s", len(texts), result)
    return *_recover(texts, idx, result), False


def _pieces(text: pa.Array, idx: pa.Array) -> list[tuple[pa.Array, pa.Array]]:
    """``text``/``idx`` cut into up to 2 pieces per CPU of at least ``_MIN_PIECE``."""
    count = max(1, min(len(text) // _MIN_PIECE, 2 * (pa.cpu_count() or 1)))
    size = -(-len(text) // count)
    return [(text[i : i + size], idx[i : i + size]) for i in range(0, len(text), size)]


def read_fast(text: pa.Array) -> tuple[Reads, list[int], bool]:
    """Routing and pyarrow reads of ``text`` (the batch as an Arrow ``large_string`` array,
    null = undecodable): the tables read per variant (each with its records' positions),
    the positions left for the Python decoder, and whether the batch was read whole (every
    message routed to pyarrow and every piece read in one go with the common types: then
    the ``_COMMON`` tables hold every message, in order). Tables and positions together
    cover every position exactly once."""
    fast = one_line_objects(text)
    count = pc.sum(fast).as_py() or 0
    slow: list[int] = []
    if count < len(text):
        slow = pc.indices_nonzero(pc.invert(fast)).to_pylist()
        if not count:
            return {}, slow, False
        idx = pc.indices_nonzero(fast).cast(pa.int64())
        text = text.filter(fast)
    else:
        idx = pl.int_range(len(text), dtype=pl.Int64, eager=True).to_arrow()
    pieces = _pieces(text, idx)
    results = map(_read, pieces) if len(pieces) == 1 else _threads().map(_read, pieces)
    reads: Reads = defaultdict(list)
    whole = not slow
    for got, left, in_one in results:
        for variant, tables in got.items():
            reads[variant] += tables
        slow += left
        whole = whole and in_one
    return reads, slow, whole


def whole_table(reads: Reads) -> pa.Table:
    """The ``_COMMON`` tables of a batch ``read_fast`` read whole, as one table."""
    tables = reads[_COMMON]
    return tables[0][0] if len(tables) == 1 else pa.concat_tables([t for t, _ in tables])


def to_frames(reads: Reads, slow: list[int]) -> tuple[list[pl.DataFrame], list[int]]:
    """``RAW_SCHEMA`` frames (with ``idx``) of the tables of ``read_fast``, and the positions
    for the Python decoder (``slow`` plus the rows whose integers need an exact re-read)."""
    frames: list[pl.DataFrame] = []
    for variant, tables in reads.items():
        if not tables:
            continue
        table = pa.concat_tables([table for table, _ in tables])
        read_idx = pl.Series("idx", pa.chunked_array([ix for _, ix in tables], pa.int64()))
        raw, again = table_to_raw(table, variant[0], read_idx)
        frames.append(raw)
        slow += again.to_list()
    return frames, slow
