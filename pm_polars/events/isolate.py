"""One read per batch, and isolation of the records pyarrow refuses.

``read_fast`` reads the routed messages in one native call (``read.read_batch``) with the
common JSON types (integer ``ts``, string ``fill_id``). For a clean batch that is the whole
read. One bad record makes pyarrow refuse the whole read; then (``_recover``):

1. messages holding two objects (``_TWO_VALUES``) are set aside: they would shift pyarrow's
   row numbers;
2. if the error is about ``ts`` or ``fill_id`` (fields that may take several JSON types),
   the messages are grouped by those types (``variants``) and each group read on its own;
3. ``read_piece`` streams what pyarrow still refuses in blocks: each refused record (the
   row pyarrow names) is set aside and blanked in place, and the stream restarts at its
   block; an error naming no row is bisected (``_bisect``).

Records set aside go to the per-record path (``fallback``), so 1% poison costs about a block
per refused record and about 1% of the records in Python, not the whole batch.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pm_polars.events.read import (
    _WS,
    Tables,
    _joined,
    one_line_objects,
    positions,
    read_batch,
    read_lines,
    table_to_raw,
)
from pm_polars.events.schema import TS_DECIMAL, TS_INT, TS_STRING, arrow_schema

log = logging.getLogger(__name__)

_TWO_VALUES = r"\}" + _WS + r"[^ \t,}\]]"  # a value after a closing brace: maybe two objects
_TS_STRING = r'"ts"' + _WS + ":" + _WS + '"'
_TS_FRACTION = r'"ts"' + _WS + ":" + _WS + r"-?[0-9]+[.eE]"
# An exponent or 20+ integer digits: beyond what decimal128(38, 9) holds, pyarrow would wrap
# it silently (1.5e30 reads as 1.39e29), so the Python decoder reads such a ts exactly.
_TS_UNBOUNDED = r'"ts"' + _WS + ":" + _WS + r"-?(?:[0-9]{20}|[0-9]+(?:\.[0-9]*)?[eE])"
_FILL_ID_NUMBER = r'"fill_id"' + _WS + ":" + _WS + "-?[0-9]"


def variants(text: pl.Series) -> pl.DataFrame:
    """Per message: ``ts_kind`` and ``fid_num`` (the JSON types pyarrow must be told), and
    ``python``: ``ts`` seen both as a string and as a fraction (the per-record path decides)."""
    t = pl.col("text")
    string, fraction = t.str.contains(_TS_STRING), t.str.contains(_TS_FRACTION)
    frame = pl.DataFrame({"text": text}).select(
        pl.when(string)
        .then(pl.lit(TS_STRING))
        .when(fraction)
        .then(pl.lit(TS_DECIMAL))
        .otherwise(pl.lit(TS_INT))
        .alias("ts_kind"),
        t.str.contains(_FILL_ID_NUMBER).fill_null(False).alias("fid_num"),
        (string & fraction).fill_null(False).alias("python"),
    )
    if not (frame["ts_kind"] == TS_DECIMAL).any():
        return frame
    unbounded = pl.Series(text).str.contains(_TS_UNBOUNDED).fill_null(False)
    return frame.with_columns((pl.col("python") | unbounded).alias("python"))


SMALL = 16  # a failing piece this small goes record by record to the Python decoder
_BLOCK = 1 << 16  # bytes per block while streaming a refused piece
_MAX_CHUNKS = 8  # tables of one variant beyond which they are combined before conversion
_ERROR_ROW = re.compile(r"in row (\d+)")
_ROW_COUNT = " rows for "  # ``read_lines``' error when rows and lines do not align
_UNCONVERTIBLE = re.compile(r"Failed to convert JSON to [^:]+?(?:, couldn't parse)?:\s*(\S+)")


def _error_row(message: str, lines: int) -> int | None:
    found = _ERROR_ROW.search(message)
    return int(found.group(1)) if found and int(found.group(1)) < lines else None


def _bisect(texts: pa.Array, idx: pa.Array, schema: pa.Schema) -> tuple[Tables, list[int]]:
    """Read ``texts``, cutting out records pyarrow rejects: (tables with idx, slow idx)."""
    tables: Tables = []
    slow: list[int] = []
    stack = [(texts, idx)]
    first = True  # the first read is always tried, however small
    while stack:
        t, ix = stack.pop()
        if len(t) <= SMALL and not first:
            slow.extend(ix.to_pylist())
            continue
        first, result = False, read_lines(t, schema)
        if isinstance(result, pa.Table):
            tables.append((result, ix))
            continue
        row, bad_value = _error_row(result, len(t)), _UNCONVERTIBLE.search(result)
        if row is not None:
            slow.append(ix[row].as_py())
            stack += [(t[:row], ix[:row]), (t[row + 1 :], ix[row + 1 :])]
            continue
        holds = None
        if bad_value:  # no row named: records holding the value's text go to Python
            holds = pl.Series(t).str.contains(bad_value.group(1), literal=True).to_arrow()
        elif _ROW_COUNT in result:  # a record yielded two rows: maybe two objects
            holds = pl.Series(t).str.contains(_TWO_VALUES).fill_null(False).to_arrow()
        if holds is not None:
            if 0 < pc.sum(holds).as_py() <= max(SMALL, len(t) // 8):
                slow.extend(ix.filter(holds).to_pylist())
                keep = pc.invert(holds)
                stack.append((t.filter(keep), ix.filter(keep)))
                continue
        half = len(t) // 2
        stack += [(t[:half], ix[:half]), (t[half:], ix[half:])]
    return tables, slow


def _line_starts(texts: pa.Array) -> list[int]:
    """Byte offset of each line in ``_joined(texts)``, and one past the end (``len + 1``)."""
    lengths = pl.Series(pc.binary_length(pc.fill_null(texts, ""))).cast(pl.Int64) + 1
    return [0, *lengths.cum_sum().to_list()]


def _stream(
    data: pa.Buffer, schema: pa.Schema, block: int
) -> tuple[list[pa.RecordBatch], str | None]:
    """Read ``data`` block by block: the batches read before the first error, and the error."""
    batches: list[pa.RecordBatch] = []
    try:
        reader = pj.open_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=block),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
        for batch in reader:
            batches.append(batch)
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure: the records are cut out
        return batches, str(exc) or type(exc).__name__
    return batches, None


class ManyRefused(Exception):
    """Streaming a piece refused more records than its ``limit``; ``str(exc)``: the last
    error (for ``_recover`` to read the piece by JSON-type variant instead)."""


def read_piece(
    texts: pa.Array, idx: pa.Array, schema: pa.Schema, failed: str | None = None,
    limit: int | None = None,
) -> tuple[Tables, list[int]]:
    """Read one piece (one native call, ``read_batch``); if pyarrow refuses it, stream it
    (``_stream_piece``), a large piece in two halves on two threads at once (pyarrow
    parses without the GIL). ``failed``: the piece is known (or expected) to fail, no need
    to read it first; ``limit``: refusals beyond this many raise ``ManyRefused``."""
    result = read_batch(texts, schema) if failed is None else failed
    if isinstance(result, pa.Table):
        return [(result, idx)], []
    if len(texts) < _PARALLEL_MIN:
        return _stream_piece(texts, idx, schema, limit)
    half = len(texts) // 2
    share = None if limit is None else limit // 2
    other = _pool().submit(_stream_piece, texts[half:], idx[half:], schema, share)
    try:
        tables, slow = _stream_piece(texts[:half], idx[:half], schema, share)
    finally:
        more, left = other.result()  # raises the other half's ManyRefused, if any
    return tables + more, slow + left


_PARALLEL_MIN = 2048  # messages: a refused piece this large is streamed in two halves at once
_POOL: list[ThreadPoolExecutor] = []
os.register_at_fork(after_in_child=_POOL.clear)  # a forked child starts its own worker


def _pool() -> ThreadPoolExecutor:
    """One worker thread for the second half of a refused piece (started on first use)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-isolate"))
    return _POOL[0]


def _stream_piece(texts: pa.Array, idx: pa.Array, schema: pa.Schema,
                  limit: int | None = None) -> tuple[Tables, list[int]]:
    """Stream a refused piece in blocks of about ``_BLOCK`` bytes. A block that fails names
    its row: that record is set aside and its line overwritten in place with ``{}`` and
    spaces (an all-null row, so rows stay aligned with lines), and the stream restarts at
    the failing block; so each refused record costs about one block more, not a read of
    the piece. An error naming no row falls back to ``_bisect`` for the rest.
    """
    data, starts = bytearray(_joined(texts).to_pybytes()), _line_starts(texts)
    longest = (pc.max(pc.binary_length(texts)).as_py() or 0) + 1 if len(texts) else 0
    block, end = max(_BLOCK, 2 * longest + 2), len(data)
    buffer = pa.py_buffer(data)  # zero copy: the blanking below is seen by later reads
    batches: list[pa.RecordBatch] = []
    refused: list[int] = []
    pos, n = 0, len(texts)
    while pos < n:
        got, error = _stream(buffer.slice(starts[pos], end - starts[pos]), schema, block)
        batches += got
        pos += sum(b.num_rows for b in got)
        row = None if error is None else _error_row(error, n - pos)
        if error is None and pos != n:  # rows and lines do not align: trust no row numbers
            return _bisect(texts, idx, schema)
        if row is None:  # done, or no row named: halve the rest
            break
        bad = pos + row
        width = starts[bad + 1] - 1 - starts[bad]
        data[starts[bad] : starts[bad] + width] = b"{}" + b" " * (width - 2)
        refused.append(bad)
        if limit is not None and len(refused) > limit:
            raise ManyRefused(error)
    tables: Tables = []
    slow = idx.take(pa.array(refused, pa.int64())).to_pylist()
    read = [r for r in refused if r < pos]
    if pos:  # the rows between refused ones, as zero-copy slices
        table = pa.Table.from_batches(batches, schema)
        for a, b in zip([-1, *read], [*read, pos], strict=True):
            if b > a + 1:
                tables.append((table.slice(a + 1, b - a - 1), idx[a + 1 : b]))
    if pos < n:  # the rest, but for the records already refused
        rest = pl.Series([True] * (n - pos)).scatter([r - pos for r in refused if r >= pos], False)
        keep = rest.to_arrow()
        more, left = _bisect(texts[pos:].filter(keep), idx[pos:].filter(keep), schema)
        tables, slow = tables + more, slow + left
    return tables, slow


Variant = tuple[str, bool]  # (ts kind, fill_id is a number)


Reads = dict[Variant, Tables]


COMMON: Variant = (TS_INT, False)  # integer ts, string fill_id


# Errors about the JSON type of ``ts`` or ``fill_id``: those fields may legally take other
# JSON types, so the piece is read by variant rather than record by record.
_VARIANT_ERRORS = ("/ts)", "/fill_id)", "couldn't parse")


def _recover(texts: pa.Array, idx: pa.Array, error: str) -> tuple[Reads, list[int]]:
    """A piece pyarrow refused with ``error``. If the error is about a field that may take
    other JSON types, each JSON-type variant (``variants``) is read on its own; then (or
    else) ``read_piece`` cuts out the records pyarrow still refuses."""
    # A message holding two objects shifts pyarrow's row numbers: set such ones aside first.
    two = pl.Series(texts).str.contains(_TWO_VALUES).fill_null(False)
    slow: list[int] = []
    if two.any():
        slow, keep = idx.filter(two.to_arrow()).to_pylist(), (~two).to_arrow()
        texts, idx = texts.filter(keep), idx.filter(keep)
        # a row count off by their extra objects: read the rest again; any other error
        # (a record's, named or not) stands for the rest too, which is streamed at once
        error = "" if _ROW_COUNT in error else error
    if not any(key in error for key in _VARIANT_ERRORS):
        tables, left = read_piece(texts, idx, arrow_schema(*COMMON), error or None)
        return {COMMON: tables}, slow + left
    kinds = variants(pl.Series(texts)).with_columns(n=pl.int_range(pl.len()))
    slow += idx.filter(kinds["python"].to_arrow()).to_pylist()
    groups = kinds.filter(~pl.col("python")).partition_by(["ts_kind", "fid_num"], as_dict=True)
    reads: Reads = defaultdict(list)
    for (ts_kind, fid_num), group in groups.items():
        variant = (str(ts_kind), bool(fid_num))
        whole = group.height == len(texts) and variant == COMMON  # read already, failed
        take = pa.array(group["n"].to_arrow(), pa.int64())
        got, left = read_piece(
            texts.take(take), idx.take(take), arrow_schema(*variant), error if whole else None
        )
        reads[variant] += got
        slow += left
    return reads, slow


def read_fast(text: pa.Array) -> tuple[Reads, list[int], bool]:
    """Routing and pyarrow reads of ``text`` (the batch as an Arrow ``large_string`` array,
    null = undecodable): the tables read per variant (each with its records' positions),
    the positions left for the per-record path, and whether the batch was read whole in
    one native call (then the ``COMMON`` table holds every message, in order). Tables and
    positions together cover every position exactly once."""
    series = pl.Series(text)  # one conversion for the routing regexes
    fast = one_line_objects(text, series)
    count = pc.sum(fast).as_py() or 0
    slow: list[int] = []
    if count < len(text):
        slow = pc.indices_nonzero(pc.invert(fast)).to_pylist()
        if not count:
            return {}, slow, False
        idx = pc.indices_nonzero(fast).cast(pa.int64())
        text = text.filter(fast)
    else:
        idx = positions(len(text)).to_arrow()
    if slow:  # poison already: stream at once (no whole read that would likely fail)
        two = pc.fill_null(series.str.contains(_TWO_VALUES).to_arrow(), False).filter(fast)
        try:
            reads, left = _stream_at_once(text, idx, two)
            return reads, slow + left, False
        except ManyRefused as exc:  # e.g. many text ts: read by JSON-type variant
            result: pa.Table | str = str(exc)
    else:
        result = read_batch(text, arrow_schema(*COMMON))
        if isinstance(result, pa.Table):
            return {COMMON: [(result, idx)]}, slow, True
    log.debug("batch of %d messages refused: %s", len(text), result)
    reads, left = _recover(text, idx, result)
    return reads, slow + left, False


_AT_ONCE_SHARE = 32  # streaming at once gives up beyond one refusal in this many records


def _stream_at_once(text: pa.Array, idx: pa.Array, two: pa.Array) -> tuple[Reads, list[int]]:
    """A batch holding poison, streamed with the common variant without a whole read first
    (messages holding two objects, ``two``, set aside first: they would shift row numbers);
    more refusals than ``SMALL`` or one in ``_AT_ONCE_SHARE`` raise ``ManyRefused``."""
    slow: list[int] = []
    if pc.any(two).as_py():
        slow, keep = idx.filter(two).to_pylist(), pc.invert(two)
        text, idx = text.filter(keep), idx.filter(keep)
    limit = max(SMALL, len(text) // _AT_ONCE_SHARE)
    tables, left = read_piece(text, idx, arrow_schema(*COMMON), "", limit)
    return {COMMON: tables}, slow + left


def to_frames(reads: Reads, slow: list[int]) -> tuple[list[pl.DataFrame], list[int]]:
    """``RAW_SCHEMA`` frames (with ``idx``) of the tables of ``read_fast``, and the positions
    for the Python decoder (``slow`` plus the rows whose integers need an exact re-read)."""
    frames: list[pl.DataFrame] = []
    for variant, tables in reads.items():
        if not tables:
            continue
        table = pa.concat_tables([table for table, _ in tables])
        if len(tables) > _MAX_CHUNKS:  # many slices of a refused piece: one copy, then fast
            table = table.combine_chunks()
        read_idx = pl.Series("idx", pa.chunked_array([ix for _, ix in tables], pa.int64()))
        raw, again = table_to_raw(table, variant[0], read_idx)
        frames.append(raw)
        slow += again.to_list()
    return frames, slow
