"""pyarrow reads of routed messages, and the recovery when pyarrow rejects a read.

``read_lines`` joins messages with ``\\n`` and reads them with an explicit schema (unknown
fields ignored). Every routed line starts with ``{`` and so yields at least one row: the row
count must equal the line count, which proves rows align 1:1 with messages.

``read_piece`` handles a failure (one bad record makes pyarrow reject a whole read): records
whose text shows a likely culprit (``routing.SUSPECT``: a wrong JSON type, a stray comma, two
values, an escaped key) go to Python and the piece is read again; if it still fails it is
scanned in windows, each cut at the row pyarrow names (that record goes to Python), or around
the records holding a value pyarrow could not convert, or else halved; pieces of ``SMALL``
records or fewer go to Python.
"""

from __future__ import annotations

import re

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pm_polars.events.routing import SUSPECT, matches_any

SMALL = 16  # a failing piece this small goes record by record to the Python decoder
PIECE = 16_384  # at most this many messages per read while scanning a rejected piece
_FIRST_WINDOW = 256  # messages per read while scanning a piece pyarrow rejected
_MAX_BLOCK = (1 << 31) - 1

_ERROR_ROW = re.compile(r"in row (\d+)")
_UNCONVERTIBLE = re.compile(r"Failed to convert JSON to [^:]+?(?:, couldn't parse)?:\s*(\S+)")
_NEWLINE = pa.scalar("\n", pa.large_string())

Tables = list[tuple[pa.Table, pa.Array]]


def _joined(texts: pa.Array) -> pa.Buffer:
    """The messages joined with ``\\n`` (null ones as empty lines), as one buffer."""
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    one_list = pa.LargeListArray.from_arrays(pa.array([0, len(texts)], pa.int64()), texts)
    joined = pc.binary_join(one_list, _NEWLINE)
    offsets = pa.Array.from_buffers(pa.int64(), 2, [None, joined.buffers()[1]])
    start, end = offsets[0].as_py(), offsets[1].as_py()
    data = joined.buffers()[2]
    return pa.py_buffer(b"") if data is None else data.slice(start, end - start)


def read_lines(texts: pa.Array, schema: pa.Schema) -> pa.Table | str:
    """Read ``texts`` (one JSON object each) with ``schema``: the table, or pyarrow's error.

    One block, so an error's ``row N`` is the record's position in ``texts``. Read with the
    streaming reader: ``pj.read_json`` starts a new OS thread per call (~100 µs of CPU, most
    of a 200-message read); ``open_json`` gives the same rows and the same errors without it
    (only an empty input's error text differs, and that is a failed read either way).
    """
    data = _joined(texts)
    try:
        table = pj.open_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(
                use_threads=False, block_size=min(data.size + 2, _MAX_BLOCK)
            ),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        ).read_all()
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure means "fall back"
        return str(exc) or type(exc).__name__
    if table.num_rows != len(texts):
        return f"{table.num_rows} rows for {len(texts)} lines"
    return table


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


def read_piece(
    texts: pa.Array, idx: pa.Array, schema: pa.Schema, failed: str | None = None
) -> tuple[Tables, list[int]]:
    """Read one piece; if pyarrow rejects it, set the suspect records aside and retry, then
    scan what is left in windows that grow while clean. ``failed``: the piece is known to
    fail (with that error), no need to read it first.

    A failed read costs about as much as reading the whole window, so after a failure the
    window shrinks to twice the distance to the error. Rows before a named error are known
    good and are read together in one last read.
    """
    result = read_lines(texts, schema) if failed is None else failed
    if isinstance(result, pa.Table):
        return [(result, idx)], []
    frame = pl.DataFrame({"t": pl.Series(texts)})
    suspect = frame.select(matches_any(pl.col("t"), SUSPECT)).to_series().to_arrow()
    slow: list[int] = idx.filter(suspect).to_pylist()
    if slow:
        keep = pc.invert(suspect)
        texts, idx = texts.filter(keep), idx.filter(keep)
        result = read_lines(texts, schema)
        if isinstance(result, pa.Table):
            return [(result, idx)], slow
    tables: Tables = []
    good: list[tuple[pa.Array, pa.Array]] = []
    pos, window = 0, _FIRST_WINDOW
    while pos < len(texts):
        t, ix = texts[pos : pos + window], idx[pos : pos + window]
        result = read_lines(t, schema)
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
