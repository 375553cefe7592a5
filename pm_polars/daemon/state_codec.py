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

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from pm_polars.engine import accounting, dedupe, marks
from pm_polars.engine.engine import CASH_SCHEMA
from pm_polars.engine.snapshot import Snapshot
from pm_polars.publish.resp import bulk, command, header

TABLES = ("positions", "cash", "marks", "seen", "meta")
SEP = "|"


@dataclass
class StateWrites:
    """The Redis commands (RESP, see ``publish.resp``) carrying one batch's state change.

    Per partition: HSET of the touched ``positions``/``cash``/``marks`` rows, ZADD of new
    ``seen`` ids, ZREMRANGEBYSCORE of ids past retention, HSET of ``meta``.
    """

    commands: list[bytes] = field(default_factory=list)
    count: int = 0

    def add(self, data: bytes) -> None:
        self.commands.append(data)
        self.count += 1


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _hset(out: StateWrites, key: str, rows: dict[str, str]) -> None:
    if rows:
        out.add(command("HSET", key, *(x for kv in rows.items() for x in kv)))


def encode_state(
    snap: Snapshot, fills: pl.DataFrame, next_offsets: Mapping[tuple[str, int], int],
    updated_ns: int, key: Callable[[tuple[str, int], str], str],
) -> StateWrites:
    """Writes for each partition of ``next_offsets``: the state rows its fills touched.

    ``snap`` is the engine's snapshot *after* the batch; ``fills`` the applied fills with
    their provenance (``topic``, ``partition``); ``key(tp, table)`` names a partition's
    state key. Positions and cash rows of every touched ``(portfolio, instrument)`` are
    rewritten whole (absolute values, so writing the same rows twice is harmless); new fill
    ids are added to ``seen`` (scored by ``ts``, as integer text) and ids older than the
    retention horizon pruned. Every partition gets its ``meta`` (``next_offset`` = first
    offset not applied, ``updated_ns``, ``clock_ns``).

    Touched rows are few (one per position, portfolio and instrument) and are encoded in
    Python (``json`` floats are shortest round-trip, so reading them back is exact); the
    ``seen`` ids (one per fill) are encoded by one Polars query.
    """
    clock = snap.meta.get("clock_ns")
    retention = snap.meta.get("dedupe_retention_ns")
    out = StateWrites()
    tables: dict[tuple[tuple[str, int], str], dict[str, str]] = defaultdict(dict)
    if fills.height:
        touched = fills.select("topic", "partition", *accounting.KEYS).unique()
        tp_of: dict[str, tuple[str, int]] = {}
        tok_tps: dict[int, set[tuple[str, int]]] = defaultdict(set)
        for t, p, pid, tok in touched.iter_rows():
            tp_of[pid] = (t, p)
            tok_tps[tok].add((t, p))
        rows = snap.positions.join(touched.select(accounting.KEYS), on=accounting.KEYS,
                                   how="semi")
        for row in rows.iter_rows(named=True):
            pid = row["portfolio_id"]
            tables[(tp_of[pid], "positions")][f"{pid}{SEP}{row['instrument_token']}"] = \
                _dumps(row)
        cash = snap.cash.filter(pl.col("portfolio_id").is_in(list(tp_of)))
        for row in cash.iter_rows(named=True):
            tables[(tp_of[row["portfolio_id"]], "cash")][row["portfolio_id"]] = _dumps(row)
        marks = snap.marks.filter(pl.col("instrument_token").is_in(list(tok_tps)))
        for row in marks.iter_rows(named=True):
            for tp in tok_tps[row["instrument_token"]]:
                tables[(tp, "marks")][str(row["instrument_token"])] = _dumps(row)
    for (tp, table), rows_of in sorted(tables.items()):
        if tp in next_offsets:
            _hset(out, key(tp, table), rows_of)
    if fills.height:
        _seen(out, fills, clock, next_offsets, key)
    for tp in next_offsets:
        if retention is not None and clock is not None:
            below = float(clock - retention)
            out.add(command("ZREMRANGEBYSCORE", key(tp, "seen"), "-inf", f"({below!r}"))
        meta = ["next_offset", next_offsets[tp], "updated_ns", updated_ns]
        if clock is not None:
            meta += ["clock_ns", clock]
        out.add(command("HSET", key(tp, "meta"), *meta))
    return out


def _seen(out: StateWrites, fills: pl.DataFrame, clock: int | None,
          next_offsets: Mapping[tuple[str, int], int],
          key: Callable[[tuple[str, int], str], str]) -> None:
    """ZADD per partition of ``"{source}|{fill_id}"`` scored by ``ts`` (integer text)."""
    grouped = fills.filter(pl.col("fill_id").is_not_null()).group_by(
        "topic", "partition", maintain_order=True).agg(
        pl.concat_str(bulk(pl.col("ts").fill_null(clock)),
                      bulk(pl.format("{}|{}", "source", "fill_id"))).str.join("").alias("body"),
        pl.len().alias("n"))
    for topic, part, body, n in grouped.iter_rows():
        if (topic, part) in next_offsets:
            out.add(header("ZADD", key((topic, part), "seen"), 2 * n) + body.encode())


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
