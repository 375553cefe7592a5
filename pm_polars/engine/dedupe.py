"""Idempotent redelivery: fills whose ``(source, fill_id)`` was seen before are dropped.

The memory of seen ids is part of the engine state (and of every snapshot), so a duplicate
is recognised within a batch, across batches, and after a restart. With a retention
``R`` (ns of event time), a sighting counts for a fill while the sighting's time is at or
after ``hwm - R``, ``hwm`` being the high-water mark of event time before that fill
(``timebound``: per fill, so the verdict does not depend on batching; a fill older than the
window is refused there). A sighting's time is the fill's ``ts``, or for a fill without
one the high-water mark when it applied (never expiring before any event time). Fills
without a ``fill_id`` are never treated as duplicates.

The same key with different content (``digest``: strategy, instrument, side, quantity,
price, fee) is a *conflict*, not a duplicate: refused by the step, the first version's
state kept. The digest is a Polars hash kept in memory and snapshots; ids loaded from
Redis carry none, so a conflicting re-send after a daemon restart is dropped as a
duplicate (the state is the same: the first version is kept).

Cost per batch barely depends on how many ids are remembered (the daemon keeps 24 h, which
can be tens of millions): :class:`SeenIds` is a log-structured index, a few runs sorted by a
64-bit key hash (about log2 N of them). A lookup is a binary search
per run (``O(m log N)`` for ``m`` fills), confirmed on the exact strings of the few hash hits,
so a hash collision can never drop a fill. A batch's ids become a new run; runs of similar
size are merged (each id is merged ``O(log N)`` times in its life: amortized; the batch that
triggers the largest merge, and each sweep, copies all ``N`` ids once). Expired ids are
ignored by lookups at once and removed physically when runs merge and on a sweep every
``R / SWEEPS_PER_RETENTION`` of event time, so memory stays about one retention window.
Until then a snapshot's ``seen`` may hold an expired id, also beside a newer sighting of
the same id (``engine.state.merge`` keeps the newest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from pm_polars.engine.plans import run as collect
from pm_polars.engine.ranges import rows_in_ranges

SEEN_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts": pl.Int64(),  # event time of the first sighting (ns UTC); the clock if it had none
}
# the index's columns: plus the content digest of the first version (null: unknown)
SEEN_COLUMNS: dict[str, pl.DataType] = {**SEEN_SCHEMA, "digest": pl.UInt64()}
CONTENT = ["strategy_id", "instrument_token", "side", "quantity", "fill_price", "fee"]

_KEY = ["source", "fill_id"]
_HASH_SEED = 0x706D  # fixed; hashes live in memory only and are recomputed on restore
SWEEPS_PER_RETENTION = 16
_NO_IDS = pl.DataFrame(schema={**SEEN_COLUMNS, "_h": pl.UInt64()})


def content_digest(columns: list[str] | None = None) -> pl.Expr:
    """64-bit hash of a fill's content (the ``CONTENT`` columns among ``columns``; none of
    them: null, an unknown content)."""
    present = [c for c in CONTENT if columns is None or c in columns]
    if not present:
        return pl.lit(None, dtype=pl.UInt64).alias("digest")
    return pl.struct(present).hash(seed=_HASH_SEED).alias("digest")


def key_hash() -> pl.Expr:
    """64-bit hash of ``(source, fill_id)`` (null when there is no fill_id)."""
    return (
        pl.when(pl.col("fill_id").is_not_null())
        .then(pl.struct(_KEY).hash(seed=_HASH_SEED))
        .alias("_h")
    )


def _sorted_run(ids: pl.DataFrame) -> pl.DataFrame:
    """``SEEN_SCHEMA`` rows (fill_id not null) -> a run: plus ``_h``, sorted by it."""
    run = ids.select(*SEEN_COLUMNS, key_hash()).sort("_h")
    return run.rechunk().with_columns(pl.col("_h").set_sorted())


def _live(ids: pl.DataFrame, horizon: int | None) -> pl.Expr | None:
    """Row filter keeping ids at or after ``horizon`` (``None``: keep all)."""
    if horizon is None or ids.height == 0:
        return None
    oldest = ids.get_column("ts").min()
    if oldest is None or (isinstance(oldest, int) and oldest >= horizon):
        return None
    return pl.col("ts").is_null() | (pl.col("ts") >= horizon)


def horizon_ns(clock_ns: int | None, retention_ns: int | None) -> int | None:
    """Event time (ns) from which a seen id still counts: ``clock - retention``; ``None``
    (every id counts) without a retention or before the first event time. (Named apart
    from the ``horizon`` parameters below, which a function of that name would shadow.)"""
    if retention_ns is None or clock_ns is None:
        return None
    return clock_ns - retention_ns


def _prune(run: pl.DataFrame, horizon: int | None) -> pl.DataFrame:
    keep = _live(run, horizon)
    return run if keep is None else run.filter(keep)


def _matches(run: pl.DataFrame, hashes: np.ndarray) -> np.ndarray:
    """Row numbers in ``run`` whose ``_h`` equals one of ``hashes`` (binary search)."""
    col = run.get_column("_h").to_numpy()  # zero-copy: one chunk, no nulls
    lo = np.searchsorted(col, hashes, side="left")
    found = lo < len(col)
    found[found] = col[lo[found]] == hashes[found]
    if not found.any():  # the common case
        return np.empty(0, np.int64)
    hi = np.searchsorted(col, hashes[found], side="right")
    return rows_in_ranges(lo[found], hi)


def _all_distinct(hashes: np.ndarray) -> bool:
    """No hash twice (no repeated key in the batch). numpy for small arrays (no query);
    Polars' hash-based count for large ones (np.unique sorts: ~1 s per million here)."""
    if len(hashes) <= 4096:
        return bool(len(np.unique(hashes)) == len(hashes))
    return pl.Series(hashes).n_unique() == len(hashes)


@dataclass(frozen=True, eq=False)  # no __eq__/__hash__ over frames
class SeenIds:
    """Immutable index of seen ``(source, fill_id)``; every update returns a new one.

    ``runs`` are frames of ``SEEN_SCHEMA`` plus ``_h``, each sorted by ``_h``;
    ``next_sweep_ns`` is the event time of the next physical removal of expired ids.
    """

    runs: tuple[pl.DataFrame, ...] = ()
    next_sweep_ns: int | None = None

    @classmethod
    def from_frame(cls, seen: pl.DataFrame) -> SeenIds:
        """Index a ``SEEN_SCHEMA`` frame (e.g. a snapshot's ``seen``)."""
        if "digest" not in seen.columns:  # Redis rows and older snapshots: unknown
            seen = seen.with_columns(pl.lit(None, dtype=pl.UInt64).alias("digest"))
        ids = seen.select(list(SEEN_COLUMNS)).cast(pl.Schema(SEEN_COLUMNS))
        ids = ids.filter(pl.col("fill_id").is_not_null())
        return cls((_sorted_run(ids),) if ids.height else ())

    def frame(self) -> pl.DataFrame:
        """All remembered ids as ``SEEN_COLUMNS`` (hash order; may still hold ids past the
        horizon that no lookup counts any more)."""
        runs = self.runs or (_NO_IDS,)
        # Series concatenation, no query: this runs on every snapshot (per daemon batch)
        return pl.DataFrame([
            pl.concat([r.get_column(c) for r in runs], rechunk=False) for c in SEEN_COLUMNS
        ])

    @property
    def size(self) -> int:
        return sum(r.height for r in self.runs)

    def split(
        self, fills: pl.DataFrame, retention_ns: int | None,
        marks: Callable[[pl.Series], pl.DataFrame] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Split ``fills`` into (fresh, duplicates, conflicts), arrival order kept in each.

        ``fills`` carry ``_hwm`` (``timebound``), or ``marks(seqs)`` gives it by ``seq``
        (asked only for suspected redeliveries). A fill is a duplicate when an earlier
        sighting of its key (remembered, or applied earlier in this batch) is within the
        window of its own ``_hwm`` and has the same content; a conflict when the content
        differs. Only the fills whose key was seen or repeats in the batch are judged one by
        one (in Python, in arrival order); the rest cost a hash and a binary search each.
        """
        if fills.height == 0 or fills.get_column("fill_id").null_count() == fills.height:
            fills = fills.with_columns(content_digest(fills.columns))
            return fills, fills.clear(), fills.clear()
        # the digest and the key hash in one pass; ``_h`` rides along to ``remember``
        fills = collect(fills.lazy().with_columns(content_digest(fills.columns), key_hash()))
        hashes = fills.get_column("_h")
        known = np.sort(hashes.drop_nulls().to_numpy())  # sorted probes: cache-friendly
        rows = [(run, _matches(run, known)) for run in self.runs]
        hits = [run[pl.Series(idx)] for run, idx in rows if len(idx)]
        if not hits and _all_distinct(known):
            return fills, fills.clear(), fills.clear()
        prior = pl.concat(hits) if hits else _NO_IDS
        # suspects by key hash (a collision only adds a suspect: verdicts compare the keys)
        suspect = hashes.is_duplicated() | hashes.is_in(prior.get_column("_h").implode())
        idx = (suspect & hashes.is_not_null()).fill_null(False).arg_true()
        if len(idx) == 0:
            return fills, fills.clear(), fills.clear()
        suspects = fills[idx]
        if "_hwm" not in suspects.columns and marks is not None:
            suspects = suspects.join(marks(suspects.get_column("seq")), on="seq", how="left",
                                     maintain_order="left")
        verdict = _verdicts(suspects, prior, retention_ns)
        state = pl.Series([0] * fills.height, dtype=pl.Int8).scatter(idx, verdict)
        return (fills.filter(state == 0), fills.filter(state == 1), fills.filter(state == 2))

    def remember(
        self, fresh: pl.DataFrame, clock_ns: int | None, retention_ns: int | None,
        marks: Callable[[pl.Series], pl.DataFrame] | None = None,
    ) -> SeenIds:
        """Add ``fresh`` fills' ids (``ts`` null -> the mark before the fill, ``_hwm``)
        and merge/sweep runs."""
        when = pl.col("ts")
        if "_hwm" not in fresh.columns and marks is not None and fresh.height and \
                fresh.get_column("ts").null_count():
            timeless = fresh.filter(pl.col("ts").is_null()).get_column("seq")
            fresh = fresh.join(marks(timeless), on="seq", how="left", maintain_order="left")
        if "_hwm" in fresh.columns:
            when = pl.coalesce(when, pl.col("_hwm"))
        digest = pl.col("digest") if "digest" in fresh.columns else content_digest(fresh.columns)
        # a new run in one plan (``_sorted_run``), the key hash reused from ``split``
        key = pl.col("_h") if "_h" in fresh.columns else key_hash()
        ids = collect(
            fresh.lazy().filter(pl.col("fill_id").is_not_null()).select(
                "source", "fill_id", when.cast(pl.Int64).alias("ts"), digest.cast(pl.UInt64),
                key.cast(pl.UInt64).alias("_h"),
            ).sort("_h").with_columns(pl.col("_h").set_sorted())
        ).rechunk()
        since = horizon_ns(clock_ns, retention_ns)
        runs = list(self.runs)
        next_sweep = self.next_sweep_ns
        if since is not None and (next_sweep is None or clock_ns >= next_sweep):  # type: ignore[operator]
            runs = [r for r in (_prune(r, since) for r in runs) if r.height]
            step = max(1, (retention_ns or 0) // SWEEPS_PER_RETENTION)
            next_sweep = clock_ns + step  # type: ignore[operator]
        if ids.height:
            runs.append(ids)
        while len(runs) > 1 and runs[-2].height <= runs[-1].height:
            last, before = runs.pop(), runs.pop()
            merged = before.merge_sorted(last, key="_h")
            runs.append(_prune(merged, since).rechunk().with_columns(pl.col("_h").set_sorted()))
        return SeenIds(tuple(runs), next_sweep)


def _verdicts(rows: pl.DataFrame, prior: pl.DataFrame, retention_ns: int | None) -> pl.Series:
    """0 fresh, 1 duplicate, 2 conflict for ``rows`` (in arrival order), event by event."""
    last: dict[tuple[str, str], tuple[int | None, int | None]] = {}
    ordered = prior.sort("ts", nulls_last=False)  # the newest sighting wins
    for source, fill_id, ts, digest in ordered.select(
            "source", "fill_id", "ts", "digest").iter_rows():
        last[(source, fill_id)] = (ts, digest)
    out: list[int] = []
    names = ("source", "fill_id", "ts", "_hwm", "digest")
    columns = [rows.get_column(c).to_list() if c in rows.columns else [None] * rows.height
               for c in names]
    for source, fill_id, ts, hwm, digest in zip(*columns, strict=True):
        seen = last.get((source, fill_id))
        counts = seen is not None and (
            retention_ns is None or seen[0] is None or hwm is None
            or seen[0] >= hwm - retention_ns)
        if counts and seen is not None:
            out.append(1 if seen[1] is None or seen[1] == digest else 2)
            continue
        out.append(0)
        last[(source, fill_id)] = (ts if ts is not None else hwm, digest)
    return pl.Series(out, dtype=pl.Int8)
