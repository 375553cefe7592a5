"""Routing: which messages pyarrow may read, and with which per-field JSON types.

Only messages that are provably one JSON object on one line go to pyarrow
(``one_line_objects``): they start with ``{``, end with ``}``, hold no raw CR/LF, no
``-NaN``/``Inf`` literal (which pyarrow accepts but JSON does not) and at most
``MAX_OPENERS`` brackets (pyarrow accepts any nesting depth, Python's recursive parser does
not; a message of at most ``2 * MAX_OPENERS`` bytes that pyarrow accepts has balanced
brackets, so it nests no deeper). Everything else is left to the Python decoder
(``pyparse``). A message holding more than one value makes pyarrow fail or yield an extra
row, which the row count of the read catches. The checks the batch as a whole proves
needless are skipped: one ``memchr`` over all messages' bytes shows that no message holds a
line break or the first letter of ``Inf``/``NaN``, the longest message whether any needs its
brackets counted.

Only when a read with the common types (integer ``ts``, string ``fill_id``) failed,
``variants`` tells the JSON type of ``ts`` (integer / fraction / string) and ``fill_id``
(string / number) per message, because pyarrow needs one explicit type per field; and only
in a piece pyarrow still rejects, ``SUSPECT`` picks the likely culprits to leave to Python.
All checks are Arrow or Polars string kernels over the whole batch (or piece).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pm_polars.events.rawschema import TS_DECIMAL, TS_INT, TS_STRING

_WS = r"[ \t]*"
# Separate patterns, OR-ed: one regex alternation of them is ~8x slower in Polars 2.1.
_LINE_BREAK = r"[\r\n]"  # pretty-printed: breaks line splitting
_TWO_VALUES = r"\}" + _WS + r"[^ \t,}\]]"  # a value after a closing brace: maybe two objects
_ESCAPED_KEY = r'\\[^"]*"' + _WS + ":"  # pyarrow would unescape it, the type regexes not
_NOT_JSON = r"[:\[,]" + _WS + r"(?:-NaN|-?Inf(?:[^i]|$))"  # pyarrow accepts these, JSON not
# (pattern, bytes one of which a match needs): tested only if the batch holds such a byte.
_GUARDED = ((_LINE_BREAK, (b"\n", b"\r")), (_NOT_JSON, (b"I", b"N")))
# More [ or { than this: maybe nested deeper than Python's JSON parser allows (it recurses),
# so the Python decoder decides (pyarrow would accept any depth).
MAX_OPENERS = 256
_LITERAL_SEARCH_BYTES = 1 << 20
_RE2_MAX_ROWS = 4096
_TS_STRING = r'"ts"' + _WS + ":" + _WS + '"'
_TS_FRACTION = r'"ts"' + _WS + ":" + _WS + r"-?[0-9]+[.eE]"
# An exponent or 20+ integer digits: beyond what decimal128(38, 9) holds, pyarrow would wrap
# it silently (1.5e30 reads as 1.39e29), so the Python decoder reads such a ts exactly.
_TS_UNBOUNDED = r'"ts"' + _WS + ":" + _WS + r"-?(?:[0-9]{20}|[0-9]+(?:\.[0-9]*)?[eE])"
_FILL_ID_NUMBER = r'"fill_id"' + _WS + ":" + _WS + "-?[0-9]"
# Text showing a wrong JSON type or a syntax error pyarrow would trip over, a value after a
# closing brace (maybe two objects) or an escaped key (pyarrow would unescape it, the type
# regexes not); used only on a piece pyarrow rejected, to take the likely culprits out
# before reading it again.
SUSPECT = (
    _TWO_VALUES,
    _ESCAPED_KEY,
    r'"(?:quantity|fill_price|fee|instrument_token|last_price)"'
    + _WS
    + ":"
    + _WS
    + r"[^-0-9nNI \t]",
    r'"(?:event_type|source|strategy_id|signal_type)"' + _WS + ":" + _WS + r'[^" \tn]',
    r'"original_signal"' + _WS + ":" + _WS + r"[^{ \tn]",
    r'"ts"' + _WS + ":" + _WS + r"[tf\[{NI]",
    r",[ \t]*[}\]]",
)


def matches_any(expr: pl.Expr, patterns: tuple[str, ...] | list[str]) -> pl.Expr:
    """True where the string matches at least one of ``patterns`` (regexes)."""
    return pl.any_horizontal([expr.str.contains(p) for p in patterns])


def _all_bytes(text: pa.Array) -> bytes:
    """Every message's bytes back to back (one copy, for memchr-speed batch-wide checks)."""
    data = text.buffers()[2]
    if data is None:
        return b""
    offsets = pa.Array.from_buffers(
        pa.int64(), len(text) + 1, [None, text.buffers()[1]], offset=text.offset
    )
    start, end = offsets[0].as_py(), offsets[len(text)].as_py()
    return data.slice(start, end - start).to_pybytes()


def _matches(text: pa.Array, pattern: str) -> pa.Array:
    """Per message: does ``pattern`` match? Arrow's RE2 has less overhead on a small batch,
    Polars' regex engine is faster on a large one (much faster for ``_NOT_JSON``)."""
    if pattern == _NOT_JSON or len(text) > _RE2_MAX_ROWS:
        return pl.Series(text).str.contains(pattern).to_arrow()
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


def one_line_objects(text: pa.Array) -> pa.Array:
    """Per message of ``text`` (Arrow ``large_string``, null = undecodable): may pyarrow read
    it, as one JSON object on one line? Boolean, never null."""
    data = _all_bytes(text)
    fast = pc.and_(pc.starts_with(text, "{"), pc.ends_with(text, "}"))
    patterns = [p for p, needles in _GUARDED if _may_match(p, needles, data)]
    for pattern in patterns:
        fast = pc.and_not(fast, _matches(text, pattern))
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


def variants(text: pl.Series) -> pl.DataFrame:
    """Per message: ``ts_kind`` and ``fid_num`` (the JSON types pyarrow must be told), and
    ``python``: ``ts`` seen both as a string and as a fraction (the Python decoder decides)."""
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
