"""The batch reader: raw messages -> Arrow text -> one pyarrow JSON read -> typed rows.

0. ``read_clean``: the common case, a batch proved readable whole by checks over all its
   bytes at once (memchr speed, no per-message regex), read in pyarrow's threads with
   integers as exact int64 and unknown fields refused (see ``_NOT_JSON_TEXT``). Every other
   batch takes steps 1-4 (and ``isolate`` for what pyarrow refuses).
1. ``to_binary`` / ``utf8_text``: the messages as one Arrow array; invalid UTF-8 is found by
   bisection among the messages holding a non-ASCII byte (null = left to ``fallback``).
2. ``one_line_objects``: which messages pyarrow may read at all. Only those provably one JSON
   object on one line: they start with ``{``, end with ``}``, hold no raw CR/LF, no
   ``-NaN``/``Inf`` literal (which pyarrow accepts but JSON does not) and at most
   ``MAX_OPENERS`` brackets (pyarrow accepts any nesting depth, Python's recursive parser
   does not), and no integer field written with a fraction or exponent (read exactly). A
   message holding more than one value makes pyarrow fail or yield an extra row, which the
   row count of the read catches. The checks the batch as a whole proves needless
   are skipped (one ``memchr`` over all the bytes).
3. ``read_lines``: the messages joined with ``\\n``, read by pyarrow with the explicit wire
   schema (``schema.arrow_schema``; unknown fields ignored): one native call per batch.
4. ``table_to_raw``: the read as ``schema.RAW_SCHEMA`` columns (zero-copy where the types
   agree). Integer fields are read as float64; rows whose values are not exact integers
   below 2**53 are handed back for the per-record path, which reads them exactly.

Why pyarrow and not ``pl.read_ndjson``: with an explicit schema pyarrow refuses a value of
the wrong JSON type (Polars turns ``"source": 12`` into ``"12"``), names the refused row in
its error (so refused records are isolated in a few reads, see ``isolate``), reads a
fractional ``ts`` exactly as a decimal (Polars rounds it through a float) and its reads are
1:1 with lines. Measured in ``bench/decode.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pm_polars.events.schema import FIELDS, RAW_SCHEMA, SIGNAL, TS_DECIMAL, TS_INT, arrow_schema


def positions(n: int, start: int = 0, name: str = "idx") -> pl.Series:
    """Int64 ``start, start + 1, ..., start + n - 1`` (from numpy: no Polars query)."""
    return pl.Series(name, np.arange(start, start + n, dtype=np.int64))


def as_bytes(i: int, value: object) -> bytes | None:
    """Message ``i`` as bytes (``str`` encoded as UTF-8); ``TypeError`` for other types."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")  # lone surrogates -> invalid UTF-8
    raise TypeError(f"message {i}: expected bytes, str or None, got {type(value).__name__}")


def to_binary(values: Sequence[object]) -> pa.Array:
    """Messages as an Arrow ``large_binary`` array (``None`` -> null)."""
    try:
        return pa.array(values, type=pa.large_binary())
    except (pa.ArrowException, TypeError, ValueError):
        return pa.array([as_bytes(i, v) for i, v in enumerate(values)], type=pa.large_binary())


def _invalid_utf8(arr: pa.Array) -> list[int]:
    """Positions of the messages that are not valid UTF-8, found by bisection (a cast of a
    slice validates it at once)."""
    bad: list[int] = []
    stack = [(0, len(arr))]
    while stack:
        lo, hi = stack.pop()
        try:
            arr[lo:hi].cast(pa.large_string())
        except pa.ArrowInvalid:
            if hi - lo == 1:
                bad.append(lo)
            else:
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid, hi)]
    return bad


def utf8_text(arr: pa.Array) -> pa.Array:
    """The messages as Arrow ``large_string``; null for tombstones and for invalid UTF-8."""
    try:
        return arr.cast(pa.large_string())
    except pa.ArrowInvalid:
        pass
    # only messages with a byte >= 0x80 can be invalid: look for them among those alone
    ascii_only = pc.fill_null(pc.string_is_ascii(arr.view(pa.large_string())), True)
    others = pc.indices_nonzero(pc.invert(ascii_only))
    bad = others.take(pa.array(_invalid_utf8(arr.take(others)), pa.int64()))
    mask = pl.Series([False] * len(arr)).scatter(pl.Series(bad), True).to_arrow()
    return pc.if_else(mask, pa.scalar(None, pa.large_binary()), arr).cast(pa.large_string())


_WS = r"[ \t]*"
# Separate patterns, OR-ed: one regex alternation of them is ~8x slower in Polars 2.1.
_LINE_BREAK = r"[\r\n]"  # pretty-printed: breaks line splitting
_NOT_JSON = r"[:\[,]" + _WS + r"(?:-NaN|-?Inf(?:[^i]|$))"  # pyarrow accepts these, JSON not
# An integer field written with a fraction or an exponent (``75.0``, ``75.000000000000001``,
# ``7.5e1``): float64 cannot tell ``75.000000000000001`` from 75, so the exact per-record
# path decides (the same verdict however the number is written).
# One pattern per key: with its literal prefix each is ~4x faster than one alternation.
_INTEGER_FRACTIONS = tuple(
    rf'"{key}"[ \t]*:[ \t]*-?[0-9]+[.eE]'
    for key in dict.fromkeys(f.key for fs in FIELDS.values() for f in fs if f.kind == "integer")
)
# (pattern, bytes one of which a match needs): tested only if the batch holds such a byte.
_GUARDED = ((_LINE_BREAK, (b"\n", b"\r")), (_NOT_JSON, (b"I", b"N")))
# More [ or { than this: maybe nested deeper than Python's JSON parser allows (it recurses),
# so the Python decoder decides (pyarrow would accept any depth).
MAX_OPENERS = 256
_LITERAL_SEARCH_BYTES = 1 << 20


_RE2_MAX_ROWS = 4096


def _all_bytes(text: pa.Array) -> bytes:
    """Every message's bytes back to back (one copy, for memchr-speed batch-wide checks)."""
    data = text.buffers()[2]
    if data is None:
        return b""
    offsets = pa.Array.from_buffers(
        pa.int64(), len(text) + 1, [None, text.buffers()[1]], offset=text.offset
    )
    start, end = offsets[0].as_py(), offsets[len(text)].as_py()
    return bytes(data.slice(start, end - start).to_pybytes())


def _matches(text: pa.Array, series: pl.Series, pattern: str) -> pa.Array:
    """Per message: does ``pattern`` match? (``series``: ``text`` as Polars, converted once.)
    Arrow's RE2 has less overhead on a small batch, Polars' regex engine is faster on a
    large one (much faster for ``_NOT_JSON``)."""
    if pattern == _NOT_JSON or len(text) > _RE2_MAX_ROWS:
        return series.str.contains(pattern).to_arrow()
    return pc.match_substring_regex(text, pattern)


def _may_match(pattern: str, needles: tuple[bytes, ...], data: bytes) -> bool:
    """Whether some message may match ``pattern``, from the batch's bytes: not when none of
    the bytes it needs occurs; for ``_NOT_JSON`` on a small batch, not when neither literal
    ``Inf`` nor ``-NaN`` occurs (a substring search, only cheap on little data)."""
    if not any(needle in data for needle in needles):
        return False
    if pattern == _NOT_JSON and len(data) <= _LITERAL_SEARCH_BYTES:
        return b"Inf" in data or b"-NaN" in data
    return True


def one_line_objects(text: pa.Array, series: pl.Series | None = None) -> pa.Array:
    """Per message of ``text`` (Arrow ``large_string``, null = undecodable; ``series``: the
    same as Polars, if the caller has it): may pyarrow read it, as one JSON object on one
    line? Boolean, never null."""
    data = _all_bytes(text)
    fast = pc.and_(pc.starts_with(text, "{"), pc.ends_with(text, "}"))
    patterns = [p for p, needles in _GUARDED if _may_match(p, needles, data)]
    series = pl.Series(text) if series is None else series  # one conversion for all regexes
    for pattern in patterns:
        fast = pc.and_not(fast, _matches(text, series, pattern))
    for pattern in _INTEGER_FRACTIONS:
        fast = pc.and_not(fast, series.str.contains(pattern).to_arrow())
    lengths = pc.binary_length(text)
    # A message pyarrow accepts has balanced brackets, so no more openers than half its bytes.
    if (pc.max(lengths).as_py() or 0) > 2 * MAX_OPENERS:
        long = pl.Series(pc.indices_nonzero(pc.greater(lengths, 2 * MAX_OPENERS)))
        openers = pl.Series(text.take(long.to_arrow())).str.count_matches(r"[\[{]")
        deep = long.filter(openers > MAX_OPENERS)
        if len(deep):
            mask = pl.Series([False] * len(text)).scatter(deep, True)
            fast = pc.and_not(fast, mask.to_arrow())
    return pc.fill_null(fast, False)


_MAX_BLOCK = (1 << 31) - 1
_THREADED_BYTES = 1 << 19  # a batch larger than this is read in blocks of it, in threads
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


def _open(data: pa.Buffer, schema: pa.Schema, threads: bool, block: int,
          unexpected: str = "ignore") -> pa.Table:
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected)
    read = pj.ReadOptions(use_threads=threads, block_size=block)
    if threads:
        return pj.read_json(pa.BufferReader(data), read_options=read, parse_options=options)
    return pj.open_json(pa.BufferReader(data), read_options=read, parse_options=options).read_all()


def read_batch(texts: pa.Array, schema: pa.Schema) -> pa.Table | str:
    """The batch's one native read: ``texts`` joined and read with ``schema``; the table, or
    pyarrow's error. A batch over ``_THREADED_BYTES`` is read by pyarrow's own threads in
    blocks of that size (measured: 10k fills in 8 ms instead of 13 ms in one block); a
    smaller one in one block on this thread (no thread start-up per call). Row numbers in
    an error are then relative to a block: ``isolate`` does not rely on them."""
    data = _joined(texts)
    if data.size <= _THREADED_BYTES:
        return read_lines(texts, schema, data)
    try:
        table = _open(data, schema, True, _THREADED_BYTES)
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure: the records are isolated
        return str(exc) or type(exc).__name__
    if table.num_rows != len(texts):
        return f"{table.num_rows} rows for {len(texts)} lines"
    return table


def read_lines(texts: pa.Array, schema: pa.Schema, data: pa.Buffer | None = None) -> pa.Table | str:
    """Read ``texts`` (one JSON object each) with ``schema``: the table, or pyarrow's error.

    One block, so an error's ``row N`` is the record's position in ``texts``. Read with the
    streaming reader: ``pj.read_json`` starts a new OS thread per call (~100 µs of CPU, most
    of a 200-message read); ``open_json`` gives the same rows and the same errors without it
    (only an empty input's error text differs, and that is a failed read either way).
    """
    data = _joined(texts) if data is None else data
    try:
        table = _open(data, schema, False, min(data.size + 2, _MAX_BLOCK))
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure means "fall back"
        return str(exc) or type(exc).__name__
    if table.num_rows != len(texts):
        return f"{table.num_rows} rows for {len(texts)} lines"
    return table


# Integer fields are read as float64 (pyarrow's int64 conversion error names no row); values
# that are not exact integers below 2**53 are re-decoded by the Python decoder.
_EXACT_FLOAT_INT = 2**53


# pyarrow's decimal read converts a JSON string too: a batch where a quantity may be one
# (the key then a literal, as no backslash is in the batch) takes the general path
_STRING_QUANTITY = re.compile(rb'"quantity"\s*:\s*"')
_DECIMAL_WHOLE = 15  # digits of a decimal quantity's whole part kept here (more: re-decoded)


def _decimal_quantity(values: pa.ChunkedArray | pa.Array) -> tuple[
        pa.Array, dict[str, pa.Array], pa.Array]:
    """A ``quantity`` read as an exact decimal (``read_clean`` at ``quantity_decimals`` > 0)
    split as the per-record reader splits it (``fallback._fraction``): an integral value is
    ``quantity`` (int64), a fractional one ``quantity_num`` (plain text, trailing zeros
    dropped: ``0.01500000`` -> ``0.015``) with the reason an integer-only read gives it. Rows
    whose whole part has more than ``_DECIMAL_WHOLE`` digits are returned to re-decode."""
    text = pl.Series(values).cast(pl.String)
    frame = pl.DataFrame({"t": text}).select(
        whole=pl.col("t").str.extract(r"^(-?[0-9]+)"),
        frac=pl.col("t").str.extract(r"\.([0-9]+)$").str.strip_chars_end("0"),
    ).select(
        quantity=pl.when(pl.col("frac") == "").then(pl.col("whole").cast(pl.Int64, strict=False)),
        quantity_num=pl.when(pl.col("frac") != "").then(
            pl.format("{}.{}", "whole", "frac").cast(pl.String)),
        again=pl.col("whole").str.strip_chars_start("-").str.len_chars() > _DECIMAL_WHOLE,
    ).with_columns(
        quantity_error=pl.when(pl.col("quantity_num").is_not_null()).then(
            pl.format("quantity: must be an integer, got {}", "quantity_num")),
    )
    quantity = frame.get_column("quantity").to_arrow()
    strings = {name: frame.get_column(name).to_arrow().cast(pa.string_view())
               for name in ("quantity_num", "quantity_error")}
    return quantity, strings, frame.get_column("again").fill_null(False).to_arrow()


def _exact_ints(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """An integer field read as float64 -> int64, and the rows to re-decode (``None``: none).

    A value float64 cannot prove to be the exact integer sent (fraction, NaN, infinite,
    ``|x| >= 2**53``) is null here and its row is re-decoded.
    """
    if pa.types.is_integer(values.type):  # read as int64 (``read_clean``): exact already
        return values, None
    bounds = pc.min_max(values)  # NaN is skipped; the safe cast refuses it
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or (-_EXACT_FLOAT_INT < low and high < _EXACT_FLOAT_INT):
        try:
            return pc.cast(values, pa.int64()), None  # raises on a fraction, NaN or inf
        except pa.ArrowInvalid:
            pass
    exact = pc.and_(
        pc.and_(pc.is_finite(values), pc.equal(values, pc.floor(values))),
        pc.less(pc.abs(values), _EXACT_FLOAT_INT),
    )
    ints = pc.if_else(exact, values, pa.scalar(None, pa.float64())).cast(pa.int64())
    return ints, pc.and_kleene(pc.is_valid(values), pc.invert(exact))  # never null


def _ts_columns(ts: pa.ChunkedArray, ts_kind: str) -> dict[str, pa.ChunkedArray | pa.Array]:
    """``ts_int``, ``ts_num``, ``ts_str`` from the ``ts`` column of an ``ts_kind`` read."""
    n = len(ts)
    out: dict[str, pa.ChunkedArray | pa.Array] = {
        "ts_int": pa.nulls(n, pa.int64()),
        "ts_num": pa.nulls(n, pa.string_view()),
        "ts_str": pa.nulls(n, pa.string_view()),
    }
    if ts_kind == TS_INT:
        out["ts_int"] = ts
    elif ts_kind == TS_DECIMAL:  # Polars writes plain decimal text (Arrow's cast may give 1E-9)
        out["ts_num"] = pl.Series(ts).cast(pl.String).to_arrow()
    else:
        out["ts_str"] = ts
    return out


def table_to_raw(
    table: pa.Table, ts_kind: str, idx: pl.Series | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """A pyarrow read (``schema.arrow_schema`` layout) as ``RAW_SCHEMA`` columns + ``idx``.

    ``idx`` (the records' positions; default ``0..n-1``) becomes a column. Rows where an
    integer field holds a value float64 cannot prove to be the exact integer sent (fraction,
    NaN, >= 2**53) are left out; their ``idx`` is returned for the per-record path.
    """
    sig = table.column(SIGNAL)
    columns: dict[str, pa.ChunkedArray | pa.Array] = {"event_type": table.column("event_type")}
    recheck: list[pa.ChunkedArray] = []
    for fields in FIELDS.values():
        for f in fields:
            if f.column in columns or f.kind == "ts":
                continue
            values = pc.struct_field(sig, f.key) if f.in_signal else table.column(f.key)
            if f.column == "quantity" and pa.types.is_decimal(values.type):
                values, fraction, again = _decimal_quantity(values)
                columns |= fraction
                recheck += [again]
            elif f.kind == "integer":
                values, again = _exact_ints(values)
                recheck += [] if again is None else [again]
            elif f.kind == "id" and pa.types.is_integer(values.type):
                values = pc.cast(values, pa.string())
            columns[f.column] = values
    columns |= _ts_columns(table.column("ts"), ts_kind)
    columns["sig_present"] = pc.is_valid(sig)
    columns["parse_error"] = pa.nulls(table.num_rows, pa.string_view())
    for name in ("quantity_num", "quantity_error"):  # fractions: only from a decimal read
        columns.setdefault(name, pa.nulls(table.num_rows, pa.string_view()))
    position = positions(table.num_rows) if idx is None else idx
    arrow = pa.table({name: columns[name] for name in RAW_SCHEMA})
    frame = pl.from_arrow(arrow, rechunk=False)  # one conversion of every column
    assert isinstance(frame, pl.DataFrame)
    if frame.schema != RAW_SCHEMA:  # e.g. an all-null column read as Null
        frame = frame.cast(pl.Schema(RAW_SCHEMA))
    rows = frame.hstack([position.cast(pl.Int64).alias("idx")])
    if not recheck:
        return rows, pl.Series("idx", [], dtype=pl.Int64)
    flags = recheck[0]
    for more in recheck[1:]:
        flags = pc.or_kleene(flags, more)
    again_rows = pl.Series(flags).fill_null(False)
    return rows.filter(~again_rows), rows["idx"].filter(again_rows)


# Literals pyarrow reads that Python's JSON parser refuses (``Inf``, ``-Inf``, ``-NaN``). The
# clean read refuses unknown fields (``unexpected_field_behavior="error"``), so such a literal
# can only be a value of a known number field, which a finiteness check of those columns finds
# (a non-finite value sends the batch to the general path, which routes it exactly). A batch
# with unknown fields is read again ignoring them, after a byte search for the literals, and so
# are the next ``_IGNORE_BATCHES`` batches (a stream with extra fields pays one read, not two).
_NOT_JSON_TEXT = (b"Inf", b"-NaN")
# The clean read's blocks, in pyarrow's threads: a quarter of the batch each (two rounds of
# two on two cores; measured on 10k ticks, ~1 MB: 5.0-6.8 ms against 7.7-8.1 ms in pyarrow's
# default 1 MB block, one block on one thread), at least ``_MIN_BLOCK``.
_CLEAN_BLOCKS = 4
_MIN_BLOCK = 1 << 16
_IGNORE_BATCHES = 64
_NUMBERS = tuple(dict.fromkeys(f.key for fs in FIELDS.values() for f in fs if f.kind == "number"))


class _Mode:
    """How many more batches to read ignoring unknown fields (0: refuse them)."""

    ignore_left = 0


def _holds_literal(data: bytes) -> bool:
    """Whether ``data`` holds ``Inf`` or ``-NaN`` anywhere (memmem speed)."""
    whole = pl.Series([data], dtype=pl.Binary)
    return any(whole.bin.contains(text).item() for text in _NOT_JSON_TEXT)


def _clean_read(joined: pa.Buffer, data: bytes, longest: int,
                decimals: int = 0) -> pa.Table | None:
    """The threaded read of ``joined`` (``longest``: its longest line, which a block must
    hold): unknown fields refused, or (``_Mode``) ignored after a byte search of ``data``
    for the literals; ``None`` if pyarrow refuses the batch."""
    threads = joined.size > _THREADED_BYTES  # a small batch: one block on this thread
    block = max(_MIN_BLOCK, -(-joined.size // _CLEAN_BLOCKS) + 1, 2 * longest + 2)
    block = block if threads else min(joined.size + 2, _MAX_BLOCK)
    if not _Mode.ignore_left:
        try:
            return _open(joined, arrow_schema(TS_INT, False, True, decimals), threads, block,
                         "error")
        except Exception as exc:  # noqa: BLE001 - any pyarrow failure: the general path decides
            if "unexpected field" not in str(exc):
                return None
        _Mode.ignore_left = _IGNORE_BATCHES
    _Mode.ignore_left -= 1
    if _holds_literal(data):
        return None
    try:
        return _open(joined, arrow_schema(TS_INT, False, True, decimals), threads, block)
    except Exception:  # noqa: BLE001 - any pyarrow failure: the general path decides
        return None


def read_clean(arr: pa.Array, decimals: int = 0) -> pa.Table | None:
    """The whole batch in one threaded native read, or ``None`` where the general path
    (``isolate``) must decide: some message is a tombstone, not UTF-8, not one ``{...}``
    on one line, may nest deeper than ``MAX_OPENERS``, holds ``Inf``/``-NaN`` (see
    ``_NOT_JSON_TEXT``), or pyarrow refuses the read (any type or syntax error, an integer
    field written with a fraction or exponent: integers are read as int64, exactly) or
    yields other than one row per message. The guards of ``one_line_objects``, over the
    whole batch at once (memchr speed): a batch read here gives the rows the general path
    would. ``decimals`` (``quantity_decimals``) > 0: ``quantity`` read as an exact decimal
    of that many places (``table_to_raw`` splits it as the per-record reader does).
    """
    if arr.null_count or not len(arr):
        return None
    data = _all_bytes(arr)
    if b"\n" in data or b"\r" in data:
        return None
    if not data.isascii():
        try:
            arr.cast(pa.large_string())  # validates UTF-8
        except pa.ArrowInvalid:
            return None
    text = arr.view(pa.large_string())
    if not pc.all(pc.and_(pc.starts_with(text, "{"), pc.ends_with(text, "}"))).as_py():
        return None
    lengths = pc.binary_length(text)
    longest = pc.max(lengths).as_py() or 0
    if longest > 2 * MAX_OPENERS:
        long = pl.Series(text.filter(pc.greater(lengths, 2 * MAX_OPENERS)))
        if (long.str.count_matches(r"[\[{]") > MAX_OPENERS).any():
            return None
    if decimals and (b"\\" in data or _STRING_QUANTITY.search(data)):
        return None  # the decimal read takes "0.5" as 0.5: strings go to the general path
    table = _clean_read(_joined(text), data, longest, decimals)
    if table is None or table.num_rows != len(arr):
        return None
    for name in _NUMBERS:  # NaN/Inf literals: the general path routes them exactly
        if not math.isfinite(pc.sum(table.column(name)).as_py() or 0.0):
            return None
    return table
