"""The wire format and the column contracts of the decode stage, declared once.

``FIELDS`` is the wire schema: every field an event may carry, its JSON kind, the event types
it belongs to and whether it is required. The pyarrow read schema (``arrow_schema``), the
typed row layout every input is brought to (``RAW_SCHEMA``), the keys whose repetition is a
reject, the ``required`` rules and the frame-input layout all derive from it.

Output contracts (binding for the whole package):

* ``quantity`` is a positive integer count of units on the wire; inside the engine the
  signed quantity ``signed_qty`` is ``+quantity`` for BUY and ``-quantity`` for SELL.
  Decoded with ``quantity_decimals = d > 0`` a wire quantity may carry up to ``d`` decimal
  places, and ``quantity``/``signed_qty`` are then ``Int64`` *atoms* of ``10**-d`` units
  (``0.015`` at ``d = 8`` is ``1_500_000``): exact fixed point.
* prices (``fill_price``, ``last_price``, a tick's optional ``bid``/``ask``) are per unit,
  in account currency; > 0 unless the instrument allows otherwise (``allow_negative_price``,
  judged by the engine step: the decoder refuses a price <= 0 unless told
  ``positive_prices=False``). A crossed quote (``bid > ask``) is a real, rare market state
  and is accepted.
* ``fee`` is in account currency per fill (negative means a rebate); with ``fee_currency``
  ``"base"`` it is a quantity of the traded asset instead (``engine.basefees``); null or
  ``"quote"``: money (the instrument's pnl currency, ``engine.currencies``).
* ``ts`` is event time as integer nanoseconds since the Unix epoch, UTC; null when the
  event carried none and no Kafka timestamp was known (ordering then falls back to
  arrival order).
* ``seq`` is the arrival order inside one batch (0, 1, 2, ...). Fills of one position
  apply in ``seq`` order.
* ``portfolio_id`` is ``f"{source}_{strategy_id}"``.
* Kafka provenance (``topic``, ``partition``, ``offset``) is null for events that did not
  come from Kafka (notebooks, tests, the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import polars as pl
import pyarrow as pa

FILL_EVENT = "order_fill"
TICK_EVENT = "market_tick"
EVENT_TYPES = (FILL_EVENT, TICK_EVENT)
SIDES = ("BUY", "SELL")
SIGNAL = "original_signal"

Kind = Literal["string", "integer", "number", "id", "ts"]


@dataclass(frozen=True)
class Field:
    """One wire field. ``path`` is its name in reasons (``original_signal.x`` for a signal
    field), ``column`` its column in ``RAW_SCHEMA``. Kinds: ``string``; ``integer`` (int64,
    an integral number such as ``75.0`` accepted); ``number`` (float64); ``id`` (a string or
    an integer, kept as text); ``ts`` (see ``timestamps``)."""

    path: str
    column: str
    kind: Kind
    required: bool

    @property
    def key(self) -> str:
        """The field's key inside its JSON object."""
        return self.path.rpartition(".")[2]

    @property
    def in_signal(self) -> bool:
        return self.path.startswith(SIGNAL + ".")


EVENT_TYPE = Field("event_type", "event_type", "string", True)
_TS = Field("ts", "ts", "ts", False)
# per event type, in the order their checks (and so their reasons) come
FIELDS: dict[str, tuple[Field, ...]] = {
    FILL_EVENT: (
        Field("source", "source", "string", True),
        Field("fill_id", "fill_id", "id", False),
        _TS,
        Field(f"{SIGNAL}.strategy_id", "strategy_id", "string", True),
        Field(f"{SIGNAL}.instrument_token", "sig_token", "integer", True),
        Field(f"{SIGNAL}.signal_type", "signal_type", "string", True),
        Field("quantity", "quantity", "integer", True),
        Field("fill_price", "fill_price", "number", True),
        Field("fee", "fee", "number", False),
        Field("fee_currency", "fee_currency", "string", False),
    ),
    TICK_EVENT: (
        Field("instrument_token", "instrument_token", "integer", True),
        Field("last_price", "last_price", "number", True),
        _TS,
        Field("bid", "bid", "number", False),  # optional quote, per unit (``mark="bid_ask"``)
        Field("ask", "ask", "number", False),
    ),
}
# keys whose repetition in one object is a reject (which value is meant is ambiguous)
TOP_KEYS = {
    event: frozenset({EVENT_TYPE.key} | {f.key for f in fields if not f.in_signal})
    | ({SIGNAL} if event == FILL_EVENT else set())
    for event, fields in FIELDS.items()
}
SIGNAL_KEYS = frozenset(f.key for f in FIELDS[FILL_EVENT] if f.in_signal)

_RAW_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "id": pl.String(),
    "integer": pl.Int64(),
    "number": pl.Float64(),
}
# The typed row every input is brought to before validation. ``ts`` is three columns:
# ``ts_int`` (an integer within int64), ``ts_num`` (exact decimal text of any other number),
# ``ts_str`` (a string as sent). ``sig_present``: ``original_signal`` was an object.
# ``parse_error``: a reason found while reading (bad JSON, wrong JSON type, ...).
# ``quantity_num``: a finite non-integral ``quantity`` as exact plain decimal text (``0.015``;
# ``quantity`` is then null) and ``quantity_error`` the reason an integer-only read gives it;
# the rules decide by ``quantity_decimals`` (``rules``).
RAW_SCHEMA: dict[str, pl.DataType] = {
    EVENT_TYPE.column: pl.String(),
    **{
        f.column: _RAW_TYPES[f.kind] for fields in FIELDS.values() for f in fields if f.kind != "ts"
    },
    "ts_int": pl.Int64(),
    "ts_num": pl.String(),
    "ts_str": pl.String(),
    "sig_present": pl.Boolean(),
    "parse_error": pl.String(),
    "quantity_num": pl.String(),
    "quantity_error": pl.String(),
}
# top-level wire keys in frame order (``original_signal`` a struct of the signal fields)
WIRE_FIELDS = tuple(
    dict.fromkeys(
        [EVENT_TYPE.key]
        + [SIGNAL if f.in_signal else f.key for fields in FIELDS.values() for f in fields]
    )
)

# How pyarrow reads ``ts``: one explicit type per read; other JSON types of ``ts`` in a batch
# are read apart (see ``isolate``). A decimal holds a fractional epoch number exactly.
TS_INT, TS_DECIMAL, TS_STRING = "int", "decimal", "string"
_TEXT = pa.string_view()  # Polars' own layout: no copy into a frame
_TS_TYPES = {TS_INT: pa.int64(), TS_DECIMAL: pa.decimal128(38, 9), TS_STRING: _TEXT}
# Integers are read as float64 (pyarrow's int64 conversion error names no row); values that
# are not exact integers below 2**53 are read again by the per-record path.
_ARROW_TYPES = {"string": _TEXT, "integer": pa.float64(), "number": pa.float64()}


@cache
def arrow_schema(ts_kind: str, fill_id_is_number: bool, exact: bool = False,
                 decimals: int = 0) -> pa.Schema:
    """pyarrow's explicit read schema for one JSON-type variant of ``ts`` and ``fill_id``.

    ``decimals`` > 0 (with ``exact``): ``quantity`` as ``decimal128(38, decimals)``, exact
    to that many places (pyarrow refuses a value with more, and the general path decides).

    ``exact``: integer fields as int64 (the clean-batch read, ``read.read_clean``: pyarrow
    then refuses ``75.0``, ``7.5e1`` and anything beyond int64, naming no row, and such a
    batch takes the general path); else float64 (see ``_ARROW_TYPES``).
    """

    def arrow_type(f: Field) -> pa.DataType:
        if f.kind == "ts":
            return _TS_TYPES[ts_kind]
        if f.kind == "id":
            return pa.int64() if fill_id_is_number else _TEXT
        if f.kind == "integer" and exact:
            return pa.decimal128(38, decimals) if decimals and f.column == "quantity" \
                else pa.int64()
        return _ARROW_TYPES[f.kind]

    top: dict[str, pa.DataType] = {EVENT_TYPE.key: _TEXT}
    signal: list[tuple[str, pa.DataType]] = []
    for fields in FIELDS.values():
        for f in fields:
            if f.in_signal:
                signal.append((f.key, arrow_type(f)))
            else:
                top.setdefault(f.key, arrow_type(f))
    top[SIGNAL] = pa.struct(signal)
    return pa.schema(list(top.items()))


PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "topic": pl.String(),
    "partition": pl.Int32(),
    "offset": pl.Int64(),
}

FILL_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "portfolio_id": pl.String(),
    "source": pl.String(),
    "strategy_id": pl.String(),
    "instrument_token": pl.Int64(),
    "side": pl.String(),  # "BUY" | "SELL"
    "quantity": pl.Int64(),  # > 0
    "signed_qty": pl.Int64(),  # +quantity for BUY, -quantity for SELL
    "fill_price": pl.Float64(),  # > 0, finite
    "fee": pl.Float64(),  # finite, default 0.0
    "fill_id": pl.String(),  # nullable; dedupe key together with source
    "ts": pl.Int64(),  # ns since epoch UTC, nullable
    **PROVENANCE_SCHEMA,
}

# Optional fill columns: present only in a batch where some fill carries the field (so a
# batch without them is exactly ``FILL_SCHEMA``). ``fee_currency``: null or "quote" (the fee
# is money), "base" (a quantity of the traded asset, ``engine.basefees``).
FILL_OPTIONAL: dict[str, pl.DataType] = {"fee_currency": pl.String()}

TICK_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "instrument_token": pl.Int64(),
    "last_price": pl.Float64(),  # > 0, finite
    "ts": pl.Int64(),  # ns since epoch UTC, nullable
    **PROVENANCE_SCHEMA,
    "bid": pl.Float64(),  # nullable: the best bid per unit, > 0 and finite when present
    "ask": pl.Float64(),  # nullable: the best ask per unit (bid > ask, crossed, accepted)
}

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "raw": pl.Binary(),  # the record exactly as received (JSON of the row for frame input)
    "reason": pl.String(),  # human-readable, names the field and what was wrong
    **PROVENANCE_SCHEMA,
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given column contract."""
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select exactly ``schema``'s columns in order, adding missing ones as nulls."""
    return df.select(
        [
            (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )
