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


def _rows(
    state: pl.DataFrame, touched: pl.DataFrame, on: list[str], key: pl.Expr
) -> list[tuple[str, int, str, str]]:
    """``(topic, partition, field, JSON)`` of the ``state`` rows matching ``touched``."""
    rows = state.join(touched, on=on, how="inner")
    if rows.height == 0:
        return []
    out = pl.DataFrame({
        "topic": rows.get_column("topic"), "partition": rows.get_column("partition"),
        "field": rows.select(key.cast(pl.String)).to_series(),
        "json": _json_column(rows.select(state.columns)),
    })
    return list(out.iter_rows())


def encode_deltas(
    snap: Snapshot, fills: pl.DataFrame, next_offsets: dict[tuple[str, int], int],
    updated_ns: int,
) -> dict[tuple[str, int], StateDelta]:
    """Per partition of ``next_offsets``: the state rows its fills in this batch touched.

    ``snap`` is the engine's snapshot *after* the batch; ``fills`` the applied fills with
    their provenance (``topic``, ``partition``). Positions and cash rows of every touched
    ``(portfolio, instrument)`` are rewritten whole (absolute values, so writing the same
    delta twice is harmless); new fill ids are added to ``seen`` and ids older than the
    retention horizon are pruned, as the engine does in memory. Every partition gets its
    ``meta`` (``next_offset`` = first offset not applied).
    """
    clock = snap.meta.get("clock_ns")
    retention = snap.meta.get("dedupe_retention_ns")
    deltas = {tp: StateDelta() for tp in next_offsets}
    if fills.height:
        touched = fills.select("topic", "partition", *accounting.KEYS).unique()
        pid_tok = pl.format("{}|{}", "portfolio_id", "instrument_token")
        for t, p, f, j in _rows(snap.positions, touched, accounting.KEYS, pid_tok):
            deltas[(t, p)].positions[f] = j
        by_pid = touched.select("topic", "partition", "portfolio_id").unique()
        for t, p, f, j in _rows(snap.cash, by_pid, ["portfolio_id"], pl.col("portfolio_id")):
            deltas[(t, p)].cash[f] = j
        by_tok = touched.select("topic", "partition", "instrument_token").unique()
        for t, p, f, j in _rows(snap.marks, by_tok, ["instrument_token"],
                                pl.col("instrument_token")):
            deltas[(t, p)].marks[f] = j
        ids = fills.filter(pl.col("fill_id").is_not_null()).select(
            "topic", "partition",
            pl.format("{}|{}", "source", "fill_id").alias("member"),
            pl.col("ts").fill_null(clock).cast(pl.Float64).alias("score"),
        )
        for t, p, member, score in ids.iter_rows():
            deltas[(t, p)].seen_add[member] = score
    for tp, delta in deltas.items():
        if retention is not None and clock is not None:
            delta.seen_prune_below = float(clock - retention)
        delta.meta = {"next_offset": str(next_offsets[tp]), "updated_ns": str(updated_ns)}
        if clock is not None:
            delta.meta["clock_ns"] = str(clock)
    return deltas


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
