"""Idempotent redelivery: fills whose ``(source, fill_id)`` was seen before are dropped.

The memory of seen ids is part of the engine state (and of every snapshot), so a duplicate
is recognised within a batch, across batches, and after a restart. With a retention
``R`` (ns of event time), an id counts as seen only while its ``ts`` is at or after the
horizon ``clock - R`` (``clock``: newest event time applied before the batch); ids without
``ts`` never expire. Fills without a ``fill_id`` are never treated as duplicates.

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

from dataclasses import dataclass

import numpy as np
import polars as pl

from pm_polars.engine.ranges import rows_in_ranges

SEEN_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "fill_id": pl.String(),
    "ts": pl.Int64(),  # event time of the first sighting (ns UTC); the clock if it had none
}

_KEY = ["source", "fill_id"]
_HASH_SEED = 0x706D  # fixed; hashes live in memory only and are recomputed on restore
SWEEPS_PER_RETENTION = 16
_NO_IDS = pl.DataFrame(schema={**SEEN_SCHEMA, "_h": pl.UInt64()})


def key_hash() -> pl.Expr:
    """64-bit hash of ``(source, fill_id)`` (null when there is no fill_id)."""
    return (
        pl.when(pl.col("fill_id").is_not_null())
        .then(pl.struct(_KEY).hash(seed=_HASH_SEED))
        .alias("_h")
    )


def _sorted_run(ids: pl.DataFrame) -> pl.DataFrame:
    """``SEEN_SCHEMA`` rows (fill_id not null) -> a run: plus ``_h``, sorted by it."""
    run = ids.select(*SEEN_SCHEMA, key_hash()).sort("_h")
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
        ids = seen.select(list(SEEN_SCHEMA)).cast(pl.Schema(SEEN_SCHEMA))
        ids = ids.filter(pl.col("fill_id").is_not_null())
        return cls((_sorted_run(ids),) if ids.height else ())

    def frame(self) -> pl.DataFrame:
        """All remembered ids as ``SEEN_SCHEMA`` (hash order; may still hold ids past the
        horizon that no lookup counts any more)."""
        runs = self.runs or (_NO_IDS,)
        # Series concatenation, no query: this runs on every snapshot (per daemon batch)
        return pl.DataFrame([
            pl.concat([r.get_column(c) for r in runs], rechunk=False) for c in SEEN_SCHEMA
        ])

    @property
    def size(self) -> int:
        return sum(r.height for r in self.runs)

    def split(
        self, fills: pl.DataFrame, horizon: int | None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Split ``fills`` into (fresh, duplicates), keeping arrival order in both.

        A fill is a duplicate if its key was seen at or after ``horizon`` (ns; ``None``: ever)
        or appears earlier in the same batch.
        """
        if fills.height == 0 or fills.get_column("fill_id").null_count() == fills.height:
            return fills, fills.clear()
        hashes = fills.select(key_hash()).to_series()
        known = np.sort(hashes.drop_nulls().to_numpy())  # sorted probes: cache-friendly
        rows = [(run, _matches(run, known)) for run in self.runs]
        hits = [run[pl.Series(idx)] for run, idx in rows if len(idx)]
        if not hits and _all_distinct(known):
            return fills, fills.clear()
        repeat = ~pl.struct(_KEY).is_first_distinct() & pl.col("fill_id").is_not_null()
        is_dup = repeat
        if hits:
            prior = pl.concat(hits)
            keep = _live(prior, horizon)
            if keep is not None:
                prior = prior.filter(keep)
            if prior.height:
                seen_keys = prior.select(pl.struct(_KEY)).to_series().implode()
                is_dup = repeat | pl.struct(_KEY).is_in(seen_keys)
        mask = fills.select(is_dup.fill_null(False)).to_series()
        if not mask.any():
            return fills, fills.clear()
        return fills.filter(~mask), fills.filter(mask)

    def remember(
        self, fresh: pl.DataFrame, clock_ns: int | None, retention_ns: int | None
    ) -> SeenIds:
        """Add ``fresh`` fills' ids (``ts`` null -> ``clock_ns``) and merge/sweep runs."""
        ids = fresh.filter(pl.col("fill_id").is_not_null()).select(
            "source", "fill_id",
            pl.col("ts").fill_null(pl.lit(clock_ns, pl.Int64)).cast(pl.Int64),
        )
        since = horizon_ns(clock_ns, retention_ns)
        runs = list(self.runs)
        next_sweep = self.next_sweep_ns
        if since is not None and (next_sweep is None or clock_ns >= next_sweep):  # type: ignore[operator]
            runs = [r for r in (_prune(r, since) for r in runs) if r.height]
            step = max(1, (retention_ns or 0) // SWEEPS_PER_RETENTION)
            next_sweep = clock_ns + step  # type: ignore[operator]
        if ids.height:
            runs.append(_sorted_run(ids))
        while len(runs) > 1 and runs[-2].height <= runs[-1].height:
            last, before = runs.pop(), runs.pop()
            merged = before.merge_sorted(last, key="_h")
            runs.append(_prune(merged, since).rechunk().with_columns(pl.col("_h").set_sorted()))
        return SeenIds(tuple(runs), next_sweep)
