"""The one state codec: engine state rows <-> Redis fields, per partition.

Layout (keys from ``pm_polars.publish.keys``; one set per ``{group}:{topic}:{partition}``):

* ``positions`` HASH ``"{portfolio_id}|{token}"`` -> JSON of the position state row; under
  FIFO plus ``"lots": [{lot, quantity, price, ts, fill_id}, ...]``, its open lots oldest
  first (in the same field, so a position and its lots are always written together)
* ``cash``      HASH ``portfolio_id`` -> JSON ``{portfolio_id, source, strategy_id, cash}``
* ``marks``     HASH ``token`` -> JSON of the mark row (the fill half is what matters; tick
  prices come from the global ``prices`` table when the partition is loaded)
* ``seen``      ZSET ``"{source}|{fill_id}"`` scored by the first sighting's ``ts`` (ns UTC,
  stored as a double: about 256 ns resolution, only used for pruning)
* ``meta``      HASH ``next_offset`` (first offset NOT applied), ``clock_ns``, ``updated_ns``,
  ``trading_day`` (days since 1970-01-01), ``late_day_events``, ``quantity_decimals`` (the
  d the quantities' atoms are ``10**-d`` units of; absent in states written before it: 0).
  A state is only loaded under the d that wrote it (:func:`check_decimals`).
  ``account_currency`` (written only when not the default ``INR``; a state is only
  reloaded under the account currency that booked it: :func:`check_account_currency`),
  ``mark`` (``EngineConfig.mark`` when not ``"last"``: absent means last; a load under
  another mark is refused)

JSON rows are written by ``json`` and read column-wise by Polars; floats are written as
shortest round-trip text, so a state read back equals the state written bit for bit.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from pm_polars.engine import accounting, dedupe, lot_state, marks
from pm_polars.engine.config import DEFAULT_ACCOUNT_CURRENCY, QuantityDecimalsMismatch
from pm_polars.engine.state import CASH_SCHEMA, EngineState
from pm_polars.publish.resp import bulk, command, header
from pm_polars.publish.state_rows import StateRows
from pm_polars.types import TP, Committable

TABLES = ("positions", "cash", "marks", "seen", "meta")
SEP = "|"
SMALL_BATCH = 2_000  # fills; beyond: touched keys and seen ids by Polars


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


def encode_state(
    snap: EngineState, retention_ns: int | None, fills: pl.DataFrame,
    next_offsets: Committable, updated_ns: int, key: Callable[[TP, str], str],
    rows: StateRows | None = None, whole: Mapping[TP, tuple[int | None, list[str]]] | None = None,
    quantity_decimals: int = 0,
    account_currency: str = DEFAULT_ACCOUNT_CURRENCY,
    mark: str = "last",
) -> StateWrites:
    """Writes for each partition of ``next_offsets``: the state rows its fills touched.

    ``snap`` is the engine's state *after* the batch; ``retention_ns`` the dedupe retention
    (``EngineConfig.dedupe_retention_ns``); ``fills`` the applied fills with
    their provenance (``topic``, ``partition``); ``key(tp, table)`` names a partition's
    state key; ``rows``: the state rows of (at least) the fills' portfolios, fetched by the
    caller (else here). Positions and cash rows of every touched ``(portfolio,
    instrument)`` are rewritten whole (absolute values, so writing the same rows twice is
    harmless); new fill ids are added to ``seen`` (scored by ``ts``, as integer text) and ids
    older than the retention horizon pruned. Every partition gets its ``meta``
    (``next_offset`` = first offset not applied, ``updated_ns``, ``clock_ns``).

    Touched rows are few (one per position, portfolio and instrument) and encoded in Python;
    the ``seen`` ids (one per fill) too in small batches, by one Polars query in large ones.

    ``whole`` (a batch that rolled the trading day): per partition its stored next offset and
    portfolios, whose every positions, cash and marks row is rewritten (the roll changed
    them all) with its ``meta``; ``rows`` then holds them all. ``quantity_decimals``: the
    engine's (``EngineConfig``), recorded in ``meta``.
    """
    clock, retention = snap.clock_ns, retention_ns
    out = StateWrites()
    if whole:
        if rows is None:
            rows = StateRows.fetch(snap, sorted(p for _, pids in whole.values() for p in pids))
        touched_all = _every_row(rows, whole)
        every = {p for _, pids in whole.values() for p in pids}
        _state_rows(out, rows, touched_all, {**{tp: 0 for tp in whole}, **next_offsets}, key,
                    lot_state.lot_rows(snap.lots, every))
        next_offsets = {**{tp: o for tp, (o, _) in whole.items() if o is not None},
                        **next_offsets}
    if fills.height:
        touched, seen = _touched(fills, clock)
        pids = {pid for _, pid, _ in touched}
        c_pid = rows.cash_columns.index("portfolio_id") if rows is not None else 0
        if rows is None or not pids <= {r[c_pid] for r in rows.cash}:
            rows = StateRows.fetch(snap, sorted(pids))
        _state_rows(out, rows, touched, next_offsets, key, lot_state.lot_rows(snap.lots, pids))
        if seen is None:
            _seen_bulk(out, fills, clock, next_offsets, key)
        for tp, pairs in sorted((seen or {}).items()):
            if tp in next_offsets:
                out.add(command("ZADD", key(tp, "seen"), *pairs))
    for tp in next_offsets:
        since = dedupe.horizon_ns(clock, retention)
        if since is not None:  # ids before it no longer count: gone from Redis too
            out.add(command("ZREMRANGEBYSCORE", key(tp, "seen"), "-inf", f"({float(since)!r}"))
        meta = ["next_offset", next_offsets[tp], "updated_ns", updated_ns,
                "quantity_decimals", quantity_decimals]
        if clock is not None:
            meta += ["clock_ns", clock]
        if snap.trading_day is not None:
            meta += ["trading_day", snap.trading_day, "late_day_events", snap.late_day_events]
        if account_currency != DEFAULT_ACCOUNT_CURRENCY:
            meta += ["account_currency", account_currency]
        if mark != "last":  # absent: last (so a default state writes what it always did)
            meta += ["mark", mark]
        out.add(command("HSET", key(tp, "meta"), *meta))
    return out


def _every_row(rows: StateRows, whole: Mapping[TP, tuple[int | None, list[str]]]
               ) -> set[tuple[TP, str, int]]:
    """Every ``(tp, portfolio, token)`` of ``whole`` partitions' portfolios (in ``rows``)."""
    owner = {pid: tp for tp, (_, pids) in whole.items() for pid in pids}
    pc = rows.position_columns
    p_pid, p_tok = pc.index("portfolio_id"), pc.index("instrument_token")
    return {(owner[r[p_pid]], r[p_pid], r[p_tok]) for r in rows.positions
            if r[p_pid] in owner}


def _touched(fills: pl.DataFrame, clock: int | None
             ) -> tuple[set[tuple[TP, str, int]], dict[TP, list[object]] | None]:
    """``{(tp, portfolio, token)}`` touched, and (small batches) ZADD pairs per partition."""
    if fills.height > SMALL_BATCH:
        keys = fills.select("topic", "partition", *accounting.KEYS).unique()
        return {((t, p), pid, tok) for t, p, pid, tok in keys.iter_rows()}, None
    touched: set[tuple[TP, str, int]] = set()
    seen: dict[TP, list[object]] = defaultdict(list)
    cols = [fills.get_column(c).to_list() for c in  # lists, not a select: no query
            ("topic", "partition", "portfolio_id", "instrument_token", "source", "fill_id", "ts")]
    for t, p, pid, tok, source, fill_id, ts in zip(*cols, strict=True):
        touched.add(((t, p), pid, tok))
        if fill_id is not None:
            seen[(t, p)] += [clock if ts is None else ts, f"{source}{SEP}{fill_id}"]
    return touched, seen


def _state_rows(out: StateWrites, rows: StateRows, touched: set[tuple[TP, str, int]],
                next_offsets: Mapping[TP, int], key: Callable[[TP, str], str],
                lots_of: Mapping[tuple[str, int], list[dict[str, object]]]) -> None:
    """HSET of the touched positions, cash and marks rows, per partition."""
    pairs = {(pid, tok): tp for tp, pid, tok in touched}
    pid_tp = {pid: tp for tp, pid, _ in touched}
    tok_tps: dict[int, set[TP]] = defaultdict(set)
    for tp, _, tok in touched:
        tok_tps[tok].add(tp)
    tables: dict[tuple[TP, str], list[str]] = defaultdict(list)
    pc, cc, mc = rows.position_columns, rows.cash_columns, rows.mark_columns
    p_pid, p_tok = pc.index("portfolio_id"), pc.index("instrument_token")
    c_pid = cc.index("portfolio_id")
    for row in rows.positions:
        at = pairs.get((row[p_pid], row[p_tok]))
        if at is not None:
            doc = dict(zip(pc, row, strict=True))
            open_lots = lots_of.get((row[p_pid], row[p_tok]))
            if open_lots:
                doc["lots"] = open_lots
            tables[(at, "positions")] += [f"{row[p_pid]}{SEP}{row[p_tok]}", _dumps(doc)]
    for row in rows.cash:
        owner = pid_tp.get(row[c_pid])
        if owner is not None:
            tables[(owner, "cash")] += [row[c_pid], _dumps(dict(zip(cc, row, strict=True)))]
    for tok, row in rows.marks.items():
        for tp in tok_tps.get(tok, ()):
            tables[(tp, "marks")] += [str(tok), _dumps(dict(zip(mc, row, strict=True)))]
    for (tp, table), fields in sorted(tables.items()):
        if tp in next_offsets:
            out.add(command("HSET", key(tp, table), *fields))


def _seen_bulk(out: StateWrites, fills: pl.DataFrame, clock: int | None,
               next_offsets: Mapping[TP, int], key: Callable[[TP, str], str]) -> None:
    """ZADD per partition of ``"{source}|{fill_id}"`` scored by ``ts`` (one Polars query)."""
    grouped = fills.filter(pl.col("fill_id").is_not_null()).group_by(
        "topic", "partition", maintain_order=True).agg(
        pl.concat_str(bulk(pl.col("ts").fill_null(clock)),
                      bulk(pl.format("{}|{}", "source", "fill_id"))).str.join("").alias("body"),
        pl.len().alias("n"))
    for topic, part, body, n in grouped.iter_rows():
        if (topic, part) in next_offsets:
            out.add(header("ZADD", key((topic, part), "seen"), 2 * n) + body.encode())


def check_decimals(meta: Mapping[str, str], quantity_decimals: int, where: str) -> None:
    """Raise :class:`QuantityDecimalsMismatch` unless the state's recorded
    ``quantity_decimals`` (absent: 0, written before the setting) is ``quantity_decimals``
    (the state's quantities are atoms: another value would rescale every position)."""
    stored = int(meta.get("quantity_decimals", 0))
    if stored != quantity_decimals:
        raise QuantityDecimalsMismatch(
            f"{where} was booked with --quantity-decimals {stored} (quantities in atoms of "
            f"10^-{stored} units) but --quantity-decimals is {quantity_decimals}; restart "
            f"with --quantity-decimals {stored}, or replay the fills into a fresh key prefix "
            "to rebook them")


def _frame(values: list[str], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if not values:
        return pl.DataFrame(schema=dict(schema))
    series = pl.Series("json", values, dtype=pl.String)
    decoded = series.str.json_decode(pl.Struct(dict(schema))).struct.unnest()
    return decoded.select(list(schema)).cast(pl.Schema(dict(schema)))


class AccountCurrencyMismatch(ValueError):
    """Stored state was booked in another account currency than the one configured."""


def check_account_currency(meta: Mapping[str, str], configured: str, where: str) -> None:
    """Raise :class:`AccountCurrencyMismatch` unless ``meta`` (a partition's) was written
    under ``configured`` (no ``account_currency`` field: the default, INR)."""
    stored = meta.get("account_currency", DEFAULT_ACCOUNT_CURRENCY)
    if stored != configured:
        raise AccountCurrencyMismatch(
            f"{where} was booked in account currency {stored} but --account-currency is "
            f"{configured}; restart with --account-currency {stored}, or replay the fills "
            "into a fresh key prefix to rebook them")


def decode_state(
    positions: Mapping[str, str],
    cash: Mapping[str, str],
    mark_rows: Mapping[str, str],
    seen: list[tuple[str, float]],
    meta: Mapping[str, str],
    *,
    instruments: pl.DataFrame,
) -> EngineState:
    """The partition's :class:`EngineState` from its Redis tables (as HGETALL etc. return
    them; ``instruments``: the instance's table, not stored per partition)."""
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
    clock, day = meta.get("clock_ns"), meta.get("trading_day")
    with_lots = [v for v in positions.values() if '"lots":' in v]
    return EngineState.of_frames(
        positions=_frame(list(positions.values()), accounting.POSITION_STATE_SCHEMA).sort(
            "instrument_token", "portfolio_id"
        ),
        cash=_frame(list(cash.values()), CASH_SCHEMA).sort("portfolio_id"),
        marks_=_frame(list(mark_rows.values()), marks.MARK_STATE_SCHEMA),
        seen=seen_frame,
        instruments=instruments,
        clock_ns=None if clock is None else int(clock),
        trading_day=None if day is None else int(day),
        late_day_events=int(meta.get("late_day_events", 0)),
        lots=lot_state.lots_of_rows(pl.Series(with_lots, dtype=pl.String)),
    )
