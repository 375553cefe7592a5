"""Engine state rows <-> Redis fields, for one partition's engine.

Layout (keys from ``pm_polars.publish.keys``; one set per ``{group}:{topic}:{partition}``):

* ``positions`` HASH ``"{portfolio_id}|{token}"`` -> JSON of the position state row
* ``cash``      HASH ``portfolio_id`` -> JSON ``{portfolio_id, source, strategy_id, cash}``
* ``marks``     HASH ``token`` -> JSON of the mark row (the fill half is what matters; tick
  prices come from the global ``prices`` table when the partition is loaded)
* ``seen``      ZSET ``"{source}|{fill_id}"`` scored by the first sighting's ``ts`` (ns UTC,
  stored as a double: about 256 ns resolution, only used for pruning)
* ``meta``      HASH ``next_offset`` (first offset NOT applied), ``clock_ns``, ``updated_ns``

JSON rows are written and read column-wise by Polars (shortest round-trip float text), so a
state read back equals the state written bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from pm_polars.engine import accounting, dedupe, marks
from pm_polars.engine.engine import CASH_SCHEMA
from pm_polars.engine.snapshot import Snapshot

TABLES = ("positions", "cash", "marks", "seen", "meta")
SEP = "|"


@dataclass
class StateDelta:
    """The Redis writes that carry one batch's state change of one partition."""

    positions: dict[str, str] = field(default_factory=dict)
    cash: dict[str, str] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)
    seen_add: dict[str, float] = field(default_factory=dict)
    seen_prune_below: float | None = None  # remove members scored < this
    meta: dict[str, str] = field(default_factory=dict)


def _json_column(df: pl.DataFrame) -> pl.Series:
    return df.select(pl.struct(pl.all()).struct.json_encode().alias("json")).to_series()


def _as_mapping(keys: pl.Series, values: pl.Series) -> dict[str, str]:
    return dict(zip(keys.to_list(), values.to_list(), strict=True))


def encode_delta(
    snap: Snapshot, fills: pl.DataFrame, next_offset: int, updated_ns: int
) -> StateDelta:
    """State rows touched by ``fills`` (the batch's applied fills of this partition).

    ``snap`` is the engine's snapshot *after* the batch. Positions and cash rows of every
    touched ``(portfolio, instrument)`` are rewritten whole (absolute values, so writing the
    same delta twice is harmless); new fill ids are added to ``seen`` and ids older than the
    retention horizon are pruned, like the engine does in memory.
    """
    delta = StateDelta()
    clock = snap.meta.get("clock_ns")
    retention = snap.meta.get("dedupe_retention_ns")
    if fills.height:
        touched = fills.select(accounting.KEYS).unique()
        pos = snap.positions.join(touched, on=accounting.KEYS, how="semi")
        keys = pos.select(pl.format("{}|{}", "portfolio_id", "instrument_token")).to_series()
        delta.positions = _as_mapping(keys, _json_column(pos))
        cash = snap.cash.join(touched.select("portfolio_id").unique(), on="portfolio_id",
                              how="semi")
        delta.cash = _as_mapping(cash["portfolio_id"], _json_column(cash))
        tokens = fills.select("instrument_token").unique()
        mk = snap.marks.join(tokens, on="instrument_token", how="semi")
        delta.marks = _as_mapping(mk["instrument_token"].cast(pl.String), _json_column(mk))
        ids = fills.filter(pl.col("fill_id").is_not_null()).select(
            pl.format("{}|{}", "source", "fill_id").alias("member"),
            pl.col("ts").fill_null(clock).cast(pl.Float64).alias("score"),
        )
        delta.seen_add = dict(zip(ids["member"].to_list(), ids["score"].to_list(), strict=True))
    if retention is not None and clock is not None:
        delta.seen_prune_below = float(clock - retention)
    delta.meta = {"next_offset": str(next_offset), "updated_ns": str(updated_ns)}
    if clock is not None:
        delta.meta["clock_ns"] = str(clock)
    return delta


def _frame(values: list[str], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if not values:
        return pl.DataFrame(schema=dict(schema))
    series = pl.Series("json", values, dtype=pl.String)
    decoded = series.str.json_decode(pl.Struct(dict(schema))).struct.unnest()
    return decoded.select(list(schema)).cast(pl.Schema(dict(schema)))


def decode_snapshot(
    positions: Mapping[str, str],
    cash: Mapping[str, str],
    mark_rows: Mapping[str, str],
    seen: list[tuple[str, float]],
    meta: Mapping[str, str],
    *,
    instruments: pl.DataFrame,
    starting_cash: float,
    dedupe_retention_ns: int | None,
) -> Snapshot:
    """A :class:`Snapshot` from the partition's Redis tables (as returned by HGETALL etc.)."""
    members = [m for m, _ in seen]
    sources, ids = [], []
    for member in members:
        src, _, fid = member.partition(SEP)
        sources.append(src)
        ids.append(fid)
    seen_frame = pl.DataFrame(
        {"source": sources, "fill_id": ids, "ts": [int(score) for _, score in seen]},
        schema=dedupe.SEEN_SCHEMA,
    )
    clock = meta.get("clock_ns")
    return Snapshot(
        positions=_frame(list(positions.values()), accounting.POSITION_STATE_SCHEMA).sort(
            "instrument_token", "portfolio_id"
        ),
        cash=_frame(list(cash.values()), CASH_SCHEMA).sort("portfolio_id"),
        marks=_frame(list(mark_rows.values()), marks.MARK_STATE_SCHEMA),
        seen=seen_frame,
        instruments=instruments,
        meta={
            "starting_cash": starting_cash,
            "dedupe_retention_ns": dedupe_retention_ns,
            "clock_ns": None if clock is None else int(clock),
        },
    )
