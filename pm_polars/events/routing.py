"""Routing: which messages pyarrow may read, and with which per-field JSON types.

Only messages that are provably one JSON object on one line go to pyarrow: they start with
``{``, end with ``}``, hold no raw CR/LF, no ``}`` followed by another value, no escaped key,
no ``-NaN``/``Inf`` literal (which pyarrow accepts but JSON does not) and at most
``MAX_OPENERS`` brackets (pyarrow accepts any nesting depth, Python's recursive parser does
not). Everything else is left to the Python decoder (``pyparse``). Messages are grouped by
the JSON type of ``ts`` (integer / fraction / string) and ``fill_id`` (string / number),
because pyarrow needs one explicit type per field. All checks are Polars string ops over the
whole batch.
"""

from __future__ import annotations

import polars as pl

from pm_polars.events.rawschema import TS_DECIMAL, TS_INT, TS_STRING

_WS = r"[ \t]*"
# Separate patterns, OR-ed: one regex alternation of them is ~8x slower in Polars 2.1.
_NOT_ONE_LINE_OBJECT = (
    r"[\r\n]",  # pretty-printed: breaks line splitting
    r"\}" + _WS + r"[^ \t,}\]]",  # a value after a closing brace: maybe two objects
    r'\\[^"]*"' + _WS + ":",  # an escaped key: pyarrow would unescape it, regexes not
    r"[:\[,]" + _WS + r"(?:-NaN|-?Inf(?:[^i]|$))",  # pyarrow accepts these, JSON does not
)
# More [ or { than this: maybe nested deeper than Python's JSON parser allows (it recurses),
# so the Python decoder decides (pyarrow would accept any depth).
MAX_OPENERS = 256
_TS_STRING = r'"ts"' + _WS + ":" + _WS + '"'
_TS_FRACTION = r'"ts"' + _WS + ":" + _WS + r"-?[0-9]+[.eE]"
_FILL_ID_NUMBER = r'"fill_id"' + _WS + ":" + _WS + "-?[0-9]"
# Text showing a wrong JSON type or a syntax error pyarrow would trip over; used only on a
# piece pyarrow rejected, to take the likely culprits out before reading it again.
SUSPECT = (
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


def matches_any(expr: pl.Expr, patterns: tuple[str, ...]) -> pl.Expr:
    """True where the string matches at least one of ``patterns`` (regexes)."""
    return pl.any_horizontal([expr.str.contains(p) for p in patterns])


def route(text: pl.Series) -> pl.DataFrame:
    """Per message: ``idx``, ``text``, ``fast`` (pyarrow may read it), ``ts_kind``, ``fid_num``."""
    t = pl.col("text")
    flags = (
        pl.DataFrame({"text": text})
        .with_row_index("idx")
        .select(
            pl.col("idx").cast(pl.Int64),
            t,
            (
                t.str.starts_with("{")
                & t.str.ends_with("}")
                & ~matches_any(t, _NOT_ONE_LINE_OBJECT)
                & (t.str.count_matches(r"[\[{]") <= MAX_OPENERS)
            )
            .fill_null(False)
            .alias("fast"),
            t.str.contains(_TS_STRING).fill_null(False).alias("ts_string"),
            t.str.contains(_TS_FRACTION).fill_null(False).alias("ts_fraction"),
            t.str.contains(_FILL_ID_NUMBER).fill_null(False).alias("fid_num"),
        )
    )
    string, fraction = pl.col("ts_string"), pl.col("ts_fraction")
    return flags.select(
        "idx",
        "text",
        pl.col("fast") & ~(string & fraction),  # both kinds in one message: Python decides
        pl.when(string)
        .then(pl.lit(TS_STRING))
        .when(fraction)
        .then(pl.lit(TS_DECIMAL))
        .otherwise(pl.lit(TS_INT))
        .alias("ts_kind"),
        "fid_num",
    )
