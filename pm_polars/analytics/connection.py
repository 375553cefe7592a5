"""A DuckDB connection with views over the archive and the end-of-day snapshots.

Views (``date`` is a DATE from the hive path; ``ts`` is Int64 ns UTC; money in account
currency; quantities signed where the column says so):

==================  =================================================================
``fills``           applied fills (``pm_polars.events.schema.FILL_SCHEMA`` + archive cols)
``ticks``           ticks; ``rejects``: invalid records; ``duplicates``: redelivered fills
``instruments``     ``instrument_token``, ``tradingsymbol``, ``multiplier`` (may be empty)
``eod_positions``   ``pm_polars.eod.roll.day_positions`` per date (+ open-trip carry)
``eod_portfolios``  ``pm_polars.eod.roll.day_portfolios`` per date (+ fill/trip counts)
``eod_trips``       round trips closed per date (``pm_polars.eod.trips``)
==================  =================================================================

Quantities are units in every view: an archive booked with ``quantity_decimals`` d > 0 stores
the fills' ``quantity``/``signed_qty`` as atoms of ``10**-d`` units (``archive.config``),
which the ``fills`` and ``duplicates`` views divide into ``DOUBLE`` units.

Event views deduplicate by event identity when file names show overlapping ranges (see
``pm_polars.archive.reader``); otherwise they read the files as they are. A view whose
files do not exist yet is created empty (event views, with their columns) or is missing
(snapshot views; :func:`require` raises a message that says to run ``pm-polars eod``).
Globs are evaluated per query, so files written after ``connect`` are seen.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from pm_polars.archive import DEFAULT_ROOT
from pm_polars.archive.config import INSTRUMENTS_FILE, quantity_scale
from pm_polars.archive.layout import KIND_SCHEMAS, data_files, has_overlaps
from pm_polars.archive.reader import files_by_date
from pm_polars.engine.instruments import INSTRUMENT_SCHEMA
from pm_polars.eod.store import SNAPSHOTS

_INSTRUMENT_VIEW = ("instrument_token", "tradingsymbol", "multiplier")  # the same either way
SNAPSHOT_VIEWS = {"eod_positions": "positions", "eod_portfolios": "portfolios",
                  "eod_trips": "trips"}

_DUCK_TYPES = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INTEGER",
               pl.Float64: "DOUBLE", pl.Binary: "BLOB", pl.Date: "DATE", pl.Boolean: "BOOLEAN"}

_DEDUPE = """
    QUALIFY row_number() OVER (
        PARTITION BY topic, "partition", "offset",
            CASE WHEN "offset" IS NULL THEN stream END,
            CASE WHEN "offset" IS NULL THEN batch_id END,
            CASE WHEN "offset" IS NULL THEN seq END
        ORDER BY arrival_ns DESC) = 1
"""


class AnalyticsError(RuntimeError):
    """The archive lacks what a query needs; the message says how to produce it."""


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _read(glob: Path) -> str:
    return (f"read_parquet({_quote(glob)}, hive_partitioning = true, "
            "hive_types = {'date': DATE}, union_by_name = true)")


def _empty_select(schema: dict[str, pl.DataType]) -> str:
    cols = ", ".join(f'NULL::{_DUCK_TYPES[type(t)]} AS "{c}"' for c, t in
                     {**schema, "date": pl.Date()}.items())
    return f"SELECT {cols} WHERE false"


def connect(
    root: str | Path = DEFAULT_ROOT, database: str = ":memory:"
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views above over the archive under ``root``."""
    base = Path(root).resolve()
    con = duckdb.connect(database)
    scale = quantity_scale(base)
    for kind, schema in KIND_SCHEMAS.items():
        by_date = files_by_date(base, kind)
        if not any(by_date.values()):
            con.execute(f"CREATE OR REPLACE VIEW {kind} AS {_empty_select(schema)}")
            continue
        dedupe = _DEDUPE if any(has_overlaps(fs) for fs in by_date.values()) else ""
        star = "*"
        if scale != 1 and "signed_qty" in schema:  # atoms -> units
            star = (f"* REPLACE (quantity / {scale}.0 AS quantity, "
                    f"signed_qty / {scale}.0 AS signed_qty)")
        con.execute(f"CREATE OR REPLACE VIEW {kind} AS "
                    f"SELECT {star} FROM {_read(base / kind / '*' / '*.parquet')} {dedupe}")
    inst = base / INSTRUMENTS_FILE
    if inst.exists():
        con.execute(f"CREATE OR REPLACE VIEW instruments AS SELECT "
                    f"{', '.join(_INSTRUMENT_VIEW)} FROM read_parquet({_quote(inst)})")
    else:
        cols = ", ".join(f'NULL::{_DUCK_TYPES[type(t)]} AS "{c}"'
                         for c, t in INSTRUMENT_SCHEMA.items() if c in _INSTRUMENT_VIEW)
        con.execute(f"CREATE OR REPLACE VIEW instruments AS SELECT {cols} WHERE false")
    for view, table in SNAPSHOT_VIEWS.items():
        folder = base / SNAPSHOTS / table
        if folder.is_dir() and any(data_files(d) for d in folder.iterdir() if d.is_dir()):
            con.execute(f"CREATE OR REPLACE VIEW {view} AS "
                        f"SELECT * FROM {_read(folder / '*' / '*.parquet')}")
    return con


def require(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Raise :class:`AnalyticsError` when ``view`` does not exist on ``con``."""
    found = con.sql(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", params=[view]
    ).fetchall()
    if not found[0][0]:
        raise AnalyticsError(
            f"no {view} view: the archive has no end-of-day snapshots yet; "
            "run `pm-polars eod --date YYYY-MM-DD` first"
        )


def query(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
          ) -> pl.DataFrame:
    """Run ``sql`` and return a Polars frame."""
    frame: pl.DataFrame = con.sql(sql, params=params or None).pl()
    return frame


def filters(
    start: date | None = None,
    end: date | None = None,
    portfolios: list[str] | None = None,
    alias: str = "",
) -> tuple[str, list[object]]:
    """A SQL condition (and its parameters) on ``date`` and ``portfolio_id``.

    ``alias`` prefixes the column names (``"t."``). Dates are inclusive.
    """
    clauses: list[str] = ["true"]
    params: list[object] = []
    if start is not None:
        clauses.append(f"{alias}date >= ?")
        params.append(start)
    if end is not None:
        clauses.append(f"{alias}date <= ?")
        params.append(end)
    if portfolios:
        clauses.append(f"list_contains(?, {alias}portfolio_id)")
        params.append(portfolios)
    return " AND ".join(clauses), params
