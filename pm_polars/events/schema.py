"""Column contracts between the decode stage and the engine.

Every stage speaks these frames. Conventions (binding for the whole package):

* ``quantity`` is a positive integer count of units on the wire; inside the engine the
  signed quantity ``signed_qty`` is ``+quantity`` for BUY and ``-quantity`` for SELL.
* prices (``fill_price``, ``last_price``) are per unit, in account currency.
* ``fee`` is in account currency per fill (negative means a rebate).
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

import polars as pl

FILL_EVENT = "order_fill"
TICK_EVENT = "market_tick"
SIDES = ("BUY", "SELL")

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

TICK_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "instrument_token": pl.Int64(),
    "last_price": pl.Float64(),  # > 0, finite
    "ts": pl.Int64(),  # ns since epoch UTC, nullable
    **PROVENANCE_SCHEMA,
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
