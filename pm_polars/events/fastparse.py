"""Fast path: read batches of JSON messages with pyarrow's JSON reader, in parallel pieces.

1. **Routing** (``routing``): messages pyarrow may read, grouped by per-field JSON types.
2. **Read**: a group is cut into pieces of ``PIECE`` messages, read in parallel threads; each
   piece is joined with ``\\n`` and read with an explicit schema (unknown fields ignored).
   Every routed line starts with ``{`` and so yields at least one row: the row count must
   equal the line count, which proves rows align 1:1 with messages.
3. **Failure** (one bad record makes pyarrow reject a whole read): records whose text shows
   a field of the wrong JSON type or a stray comma (``routing.SUSPECT``) go to Python and the
   piece is read again; if it still fails it is scanned in windows, each cut at the row
   pyarrow names (that record goes to Python), or around the records holding a value pyarrow
   could not convert, or else halved; pieces of ``SMALL`` records or fewer go to Python.
   Integer fields are read as float64; rows whose values are not exact integers below 2**53
   are re-decoded in Python too.

A record pyarrow reads gives exactly the row ``pyparse`` would give (same types, exact
decimal ``ts`` text, correctly rounded floats), so routing never changes a result.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pm_polars.events.rawschema import arrow_schema, table_to_raw
from pm_polars.events.routing import SUSPECT, matches_any, route

log = logging.getLogger(__name__)

SMALL = 16  # a failing piece this small goes record by record to the Python decoder
PIECE = 16_384  # messages per pyarrow read
_FIRST_WINDOW = 256  # messages per read while scanning a piece pyarrow rejected
_MAX_BLOCK = (1 << 31) - 1

_ERROR_ROW = re.compile(r"in row (\d+)")
_UNCONVERTIBLE = re.compile(r"Failed to convert JSON to [^:]+?(?:, couldn't parse)?:\s*(\S+)")


def _read(texts: pa.Array, schema: pa.Schema) -> pa.Table | str:
    """One single-block pyarrow read of ``texts``: the table, or the error message."""
    binary = texts.cast(pa.large_binary())
    sep = pa.scalar(b"\n", pa.large_binary())
    joined = pc.binary_join_element_wise(binary, pa.scalar(b"", pa.large_binary()), sep)
    offsets = pa.Array.from_buffers(
        pa.int64(), len(joined) + 1, [None, joined.buffers()[1]], offset=joined.offset
    )
    start, end = offsets[0].as_py(), offsets[len(joined)].as_py()
    data = joined.buffers()[2].slice(start, end - start)
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(
                use_threads=False, block_size=min(end - start + 2, _MAX_BLOCK)
            ),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure means "fall back"
        return str(exc) or type(exc).__name__
    if table.num_rows != len(texts):
        return f"{table.num_rows} rows for {len(texts)} lines"
    return table


def _error_row(message: str, lines: int) -> int | None:
    found = _ERROR_ROW.search(message)
    return int(found.group(1)) if found and int(found.group(1)) < lines else None


def _bisect(
    texts: pa.Array, idx: pa.Array, schema: pa.Schema
) -> tuple[list[tuple[pa.Table, pa.Array]], list[int]]:
    """Read ``texts``, cutting out records pyarrow rejects: (tables with idx, slow idx)."""
    tables: list[tuple[pa.Table, pa.Array]] = []
    slow: list[int] = []
    stack = [(texts, idx)]
    first = True  # the first read is always tried, however small
    while stack:
        t, ix = stack.pop()
        if len(t) <= SMALL and not first:
            slow.extend(ix.to_pylist())
            continue
        first, result = False, _read(t, schema)
        if isinstance(result, pa.Table):
            tables.append((result, ix))
            continue
        row, bad_value = _error_row(result, len(t)), _UNCONVERTIBLE.search(result)
        if row is not None:
            slow.append(ix[row].as_py())
            stack += [(t[:row], ix[:row]), (t[row + 1 :], ix[row + 1 :])]
            continue
        if bad_value:  # no row named: records holding the value's text go to Python
            holds = pl.Series(t).str.contains(bad_value.group(1), literal=True).to_arrow()
            if 0 < pc.sum(holds).as_py() <= max(SMALL, len(t) // 8):
                slow.extend(ix.filter(holds).to_pylist())
                keep = pc.invert(holds)
                stack.append((t.filter(keep), ix.filter(keep)))
                continue
        half = len(t) // 2
        stack += [(t[:half], ix[:half]), (t[half:], ix[half:])]
    return tables, slow


def _read_piece(
    texts: pa.Array, idx: pa.Array, schema: pa.Schema
) -> tuple[list[tuple[pa.Table, pa.Array]], list[int]]:
    """Read one piece; if pyarrow rejects it, set the suspect records aside and retry, then
    scan what is left in windows that grow while clean.

    A failed read costs about as much as reading the whole window, so after a failure the
    window shrinks to twice the distance to the error. Rows before a named error are known
    good and are read together in one last read.
    """
    result = _read(texts, schema)
    if isinstance(result, pa.Table):
        return [(result, idx)], []
    frame = pl.DataFrame({"t": pl.Series(texts)})
    suspect = frame.select(matches_any(pl.col("t"), SUSPECT)).to_series().to_arrow()
    slow: list[int] = idx.filter(suspect).to_pylist()
    if slow:
        keep = pc.invert(suspect)
        texts, idx = texts.filter(keep), idx.filter(keep)
        result = _read(texts, schema)
        if isinstance(result, pa.Table):
            return [(result, idx)], slow
    tables: list[tuple[pa.Table, pa.Array]] = []
    good: list[tuple[pa.Array, pa.Array]] = []
    pos, window = 0, _FIRST_WINDOW
    while pos < len(texts):
        t, ix = texts[pos : pos + window], idx[pos : pos + window]
        result = _read(t, schema)
        row = None if isinstance(result, pa.Table) else _error_row(result, len(t))
        if isinstance(result, pa.Table):
            tables.append((result, ix))
            pos, window = pos + len(t), min(2 * window, PIECE)
        elif row is not None:
            good += [(t[:row], ix[:row])] if row else []
            slow.append(ix[row].as_py())
            pos, window = pos + row + 1, max(_FIRST_WINDOW // 4, 2 * row)
        else:
            got, left = _bisect(t, ix, schema)
            tables, slow, pos = tables + got, slow + left, pos + len(t)
    if good:
        got, left = _bisect(
            pa.concat_arrays([t for t, _ in good]), pa.concat_arrays([ix for _, ix in good]), schema
        )
        tables, slow = tables + got, slow + left
    return tables, slow


def _read_group(
    texts: pa.Array, idx: pa.Array, ts_kind: str, fid_num: bool, pool: ThreadPoolExecutor
) -> tuple[pl.DataFrame | None, list[int]]:
    """Read one routing variant: RAW rows (with ``idx``) and the idx left to Python."""
    schema = arrow_schema(ts_kind, fid_num)
    pieces = [(texts[i : i + PIECE], idx[i : i + PIECE]) for i in range(0, len(texts), PIECE)]
    results = pool.map(lambda piece: _read_piece(piece[0], piece[1], schema), pieces)
    tables: list[pa.Table] = []
    read_idx: list[pa.Array] = []
    slow: list[int] = []
    for got, left in results:
        tables += [table for table, _ in got]
        read_idx += [ix for _, ix in got]
        slow += left
    if not tables:
        return None, slow
    raw, recheck = table_to_raw(pa.concat_tables(tables), ts_kind)
    raw = raw.with_columns(idx=pl.Series(pa.chunked_array(read_idx, pa.int64())))
    slow += raw.filter(recheck)["idx"].to_list()
    log.debug("variant ts=%s fid_num=%s: %d records left to Python", ts_kind, fid_num, len(slow))
    return raw.filter(~recheck), slow


def parse_fast(text: pl.Series) -> tuple[list[pl.DataFrame], list[int]]:
    """Decode what pyarrow can; ``text`` is the batch as UTF-8 strings (null = undecodable).

    Returns RAW_SCHEMA frames with an ``idx`` column (position in ``text``) and the
    positions left for the Python decoder. Together they cover every position exactly once.
    """
    routes = route(text)
    frames: list[pl.DataFrame] = []
    slow = routes.filter(~pl.col("fast"))["idx"].to_list()
    fast = routes.filter(pl.col("fast"))
    workers = max(1, min(pa.cpu_count(), -(-fast.height // PIECE)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (ts_kind, fid_num), group in fast.group_by(["ts_kind", "fid_num"]):
            texts, idx = group["text"].to_arrow(), group["idx"].to_arrow()
            raw, left = _read_group(texts, idx, str(ts_kind), bool(fid_num), pool)
            frames += [raw] if raw is not None else []
            slow += left
    return frames, slow
