"""Fast path: read batches of JSON messages with pyarrow's JSON reader.

1. **Routing** (``routing.one_line_objects``): the messages pyarrow may read at all.
2. **One read**: those are read together with the common JSON types (integer ``ts``, string
   ``fill_id``); large reads are parsed in parallel blocks inside pyarrow. For a clean batch
   this is the whole decode.
3. **Recovery**, only when that read fails: records whose text shows a wrong JSON type or a
   stray comma go to Python, the others are grouped by the JSON types of ``ts``/``fill_id``
   (``routing.variants``) and each group is read at once; a group pyarrow still rejects is
   cut into pieces of ``PIECE`` messages read in threads, each scanned for the records to
   leave to Python (``fastread.read_piece``).

Integer fields are read as float64; rows whose values are not exact integers below 2**53
are re-decoded in Python too. A record pyarrow reads gives exactly the row ``pyparse`` would
give (same types, exact decimal ``ts`` text, correctly rounded floats), so routing never
changes a result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.fastread import PIECE, Tables, read_lines, read_piece
from pm_polars.events.rawschema import TS_INT, arrow_schema, table_to_raw
from pm_polars.events.routing import one_line_objects, variants

log = logging.getLogger(__name__)

_COMMON = (TS_INT, False)  # integer ts, string fill_id


Piece = tuple[pa.Array, pa.Array]
Read = tuple[Tables, list[int]]
Mapper = Callable[[Callable[[Piece], Read], list[Piece]], Iterable[Read]]


@contextmanager
def _mapper(pieces: int) -> Iterator[Mapper]:
    """``map`` over pieces: in threads, or in the calling thread for a single piece (a
    pool costs more than it saves then)."""
    if pieces <= 1:
        yield map
        return
    with ThreadPoolExecutor(max_workers=min(pa.cpu_count(), pieces)) as pool:
        yield pool.map


def _read_group(
    texts: pa.Array,
    idx: pa.Array,
    variant: tuple[str, bool],
    mapper: Mapper,
    failed: str | None = None,
) -> tuple[pl.DataFrame | None, list[int]]:
    """Read one routing variant: RAW rows (with ``idx``) and the idx left to Python."""
    schema = arrow_schema(*variant)
    pieces = [(texts[i : i + PIECE], idx[i : i + PIECE]) for i in range(0, len(texts), PIECE)]
    known = failed if len(pieces) == 1 else None  # the error of a failed read of them all
    results = mapper(lambda piece: read_piece(piece[0], piece[1], schema, known), pieces)
    tables: Tables = []
    slow: list[int] = []
    for got, left in results:
        tables += got
        slow += left
    if not tables:
        return None, slow
    table = pa.concat_tables([table for table, _ in tables])
    read_idx = pl.Series("idx", pa.chunked_array([ix for _, ix in tables], pa.int64()))
    raw, again = table_to_raw(table, variant[0], read_idx)
    slow += again.to_list()
    log.debug("variant %s: %d records left to Python", variant, len(slow))
    return raw, slow


def _by_variant(texts: pa.Array, idx: pa.Array) -> tuple[list[pl.DataFrame], list[int]]:
    """The recovery path, once the one read failed: the records ``routing.variants`` leaves
    to Python go there; the others are read per JSON-type variant, one read each, and a
    variant pyarrow still rejects is read in pieces (``fastread.read_piece``), in threads."""
    kinds = variants(pl.Series(texts)).with_columns(idx=pl.Series(idx), n=pl.int_range(pl.len()))
    slow = kinds.filter("python")["idx"].to_list()
    groups = kinds.filter(~pl.col("python")).partition_by(["ts_kind", "fid_num"], as_dict=True)
    frames: list[pl.DataFrame] = []
    failing: list[tuple[pa.Array, pa.Array, tuple[str, bool], str]] = []
    for (ts_kind, fid_num), group in groups.items():
        variant = (str(ts_kind), bool(fid_num))
        take = pa.array(group["n"].to_arrow(), pa.int64())
        group_texts, group_idx = texts.take(take), idx.take(take)
        result = read_lines(group_texts, arrow_schema(*variant), threads=True)
        if isinstance(result, str):
            failing.append((group_texts, group_idx, variant, result))
            continue
        raw, again = table_to_raw(result, variant[0], pl.Series("idx", group_idx))
        frames.append(raw)
        slow += again.to_list()
    pieces = sum(-(-len(group_texts) // PIECE) for group_texts, *_ in failing)
    with _mapper(pieces) as mapper:
        for group_texts, group_idx, variant, error in failing:
            recovered, left = _read_group(group_texts, group_idx, variant, mapper, error)
            frames += [recovered] if recovered is not None else []
            slow += left
    return frames, slow


def parse_fast(text: pa.Array) -> tuple[list[pl.DataFrame], list[int]]:
    """Decode what pyarrow can; ``text`` is the batch as an Arrow ``large_string`` array
    (null = undecodable).

    Returns RAW_SCHEMA frames with an ``idx`` column (position in ``text``) and the
    positions left for the Python decoder. Together they cover every position exactly once.
    """
    fast = one_line_objects(text)
    count = pc.sum(fast).as_py() or 0
    idx: pl.Series | None = None
    slow: list[int] = []
    if count < len(text):
        slow = pc.indices_nonzero(pc.invert(fast)).to_pylist()
        if not count:
            return [], slow
        idx = pl.Series("idx", pc.indices_nonzero(fast)).cast(pl.Int64)
        text = text.filter(fast)
    result = read_lines(text, arrow_schema(*_COMMON), threads=True)
    if isinstance(result, pa.Table):
        raw, again = table_to_raw(result, TS_INT, idx)
        return [raw], slow + again.to_list()
    if idx is None:
        idx = pl.int_range(len(text), dtype=pl.Int64, eager=True)
    frames, left = _by_variant(text, idx.to_arrow())
    return frames, slow + left
