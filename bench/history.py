"""History benchmark: archive synthetic events, roll end of day, report, 30-day queries.

Run: ``.venv/bin/python -m bench.history [--events 10000000] [--days 30]``.

The last day gets ``--events`` events (``--fill-share`` fills, default 5 % like the demo
feed, the rest ticks; Kafka-like provenance: fills
on 8 partitions keyed by portfolio, ticks on 4); each of the ``--days - 1`` days before it
gets ``--history-events``. Events are generated columnarly (hash-based pseudo-random numbers,
times spread over NSE hours 03:45-10:00 UTC) and archived through ``ArchiveWriter`` in
micro-batches of ``--batch-size``. Then:

1. ``eod`` for the earlier days (incremental, one after the other),
2. ``eod`` for the big day (incremental from the previous day's state),
3. the end-of-day report of the big day (DuckDB over the snapshots; table and HTML),
4. 30-day queries in DuckDB: daily P&L per strategy, the equity curve, turnover per
   portfolio from the raw fills, and a full-history exposure query.

Floor: eod + report of a 10M-event day under 5 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import polars as pl

from pm_polars import PortfolioEngine
from pm_polars import analytics as an
from pm_polars.analytics.html import render_html
from pm_polars.analytics.report import eod_report, format_table
from pm_polars.archive import ArchiveWriter, save_engine_config
from pm_polars.cli.logs import setup_logging
from pm_polars.eod import run_eod
from pm_polars.events import DecodedBatch
from pm_polars.events.schema import FILL_SCHEMA, REJECT_SCHEMA, TICK_SCHEMA, conform, empty

T = TypeVar("T")
OPEN_NS = (3 * 3600 + 45 * 60) * 10**9  # 03:45 UTC = 09:15 IST
SESSION_NS = (6 * 3600 + 15 * 60) * 10**9
STRATEGIES, INSTRUMENTS, PER_STRATEGY = 200, 500, 10
FILL_PARTITIONS, TICK_PARTITIONS = 8, 4


def day_events(day: date, n: int, seed: int, fill_share: float) -> pl.DataFrame:
    """``n`` events of day number ``seed`` in arrival order, fill and tick columns side by
    side (``kind`` tells which)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9
    i = pl.int_range(n, dtype=pl.Int64)
    h = [i.hash(seed * 10 + k) for k in range(6)]
    is_fill = (h[0] % 10_000) < int(fill_share * 10_000)
    strategy = (h[1] % STRATEGIES).cast(pl.Int64)
    token = pl.when(is_fill).then(
        (strategy * 37 + (h[2] % PER_STRATEGY).cast(pl.Int64) * 11) % INSTRUMENTS + 1
    ).otherwise((h[2] % INSTRUMENTS).cast(pl.Int64) + 1)
    base = 100.0 + (token % 1000).cast(pl.Float64)
    price = (base * (1 + ((h[3] % 2001).cast(pl.Float64) - 1000) / 200_000)).round(2)
    qty = (h[4] % 100 + 1).cast(pl.Int64)
    buy = h[5] % 2 == 0
    source = pl.when(strategy % 2 == 0).then(pl.lit("paper")).otherwise(pl.lit("live"))
    return pl.select(
        kind=pl.when(is_fill).then(pl.lit("fill")).otherwise(pl.lit("tick")),
        ts=start + OPEN_NS + i * (SESSION_NS // max(n, 1)),
        instrument_token=token, price=price, quantity=qty,
        side=pl.when(buy).then(pl.lit("BUY")).otherwise(pl.lit("SELL")),
        strategy_id=pl.lit("S") + strategy.cast(pl.String), source=source,
        fill_id=pl.lit(f"{day.isoformat()}-") + i.cast(pl.String),
    ).with_columns(
        pl.when(is_fill).then(pl.lit("orders.filled.") + source).otherwise(pl.lit("market.ticks"))
        .alias("topic"),
        pl.when(is_fill).then(strategy % FILL_PARTITIONS)
        .otherwise(token % TICK_PARTITIONS).cast(pl.Int32).alias("partition"),
    ).with_columns(  # offsets grow across days: day k starts at k x 10^9
        (pl.int_range(pl.len(), dtype=pl.Int64).over("topic", "partition") + seed * 10**9)
        .alias("offset")
    )


def to_batch(events: pl.DataFrame) -> DecodedBatch:
    framed = events.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("seq"))
    fills = framed.filter(pl.col("kind") == "fill").with_columns(
        (pl.col("source") + "_" + pl.col("strategy_id")).alias("portfolio_id"),
        pl.col("price").alias("fill_price"),
        pl.when(pl.col("side") == "BUY").then(pl.col("quantity")).otherwise(-pl.col("quantity"))
        .alias("signed_qty"),
        (pl.col("price") * pl.col("quantity") * 0.0003 + 20).round(2).alias("fee"),
    )
    ticks = framed.filter(pl.col("kind") == "tick").rename({"price": "last_price"})
    return DecodedBatch(conform(fills, FILL_SCHEMA), conform(ticks, TICK_SCHEMA),
                        empty(REJECT_SCHEMA))


def timed(label: str, work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    out = work()
    seconds = time.perf_counter() - started
    print(f"{label:<56} {seconds:8.2f} s")
    return out, seconds


def archive_day(writer: ArchiveWriter, day: date, n: int, args: argparse.Namespace,
                seed: int) -> float:
    """Generate and archive one day; returns seconds spent in the writer (incl. flush)."""
    events = day_events(day, n, seed, args.fill_share)
    batch_size = args.batch_size
    spent = 0.0
    for lo in range(0, n, batch_size):
        batch = to_batch(events.slice(lo, batch_size))
        started = time.perf_counter()
        writer.submit(batch)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    writer.flush()
    return spent + time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events on the last day")
    parser.add_argument("--days", type=int, default=30, help="trading days in the archive")
    parser.add_argument("--history-events", type=int, default=100_000,
                        help="events on each earlier day")
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--fill-share", type=float, default=0.05,
                        help="fraction of events that are fills (the demo feed: 0.05)")
    parser.add_argument("--root", type=Path, default=None, help="archive dir (default: temp)")
    parser.add_argument("--log-level", default="WARNING", help="INFO shows eod progress")
    args = parser.parse_args()
    setup_logging(args.log_level.upper())
    root = args.root or Path(tempfile.mkdtemp(prefix="pm_history_"))
    shutil.rmtree(root, ignore_errors=True)
    last = date(2026, 11, 25)
    days = [last - timedelta(days=k) for k in range(args.days - 1, -1, -1)]
    print(f"pm_polars history benchmark: {args.events:,} events on {last} "
          f"({args.fill_share:.0%} fills), {args.days - 1} earlier days x "
          f"{args.history_events:,}; archive {root}")
    save_engine_config(root, PortfolioEngine(starting_cash=10_000_000.0))
    writer = ArchiveWriter(root, stream="bench")
    written, write_s = 0, 0.0
    for k, day in enumerate(days):
        n = args.events if day == last else args.history_events
        write_s += archive_day(writer, day, n, args, k)
        written += n
        if sys.stdout.isatty() or k % 10 == 9 or day == last:
            print(f"  archived {day} ({k + 1}/{len(days)}, {written:,} events)",
                  end="\r" if sys.stdout.isatty() else "\n", flush=True)
    writer.close()
    print(f"{'archive write (ArchiveWriter.submit + flush)':<56} {write_s:8.2f} s"
          f"   {written / write_s:>12,.0f} rows/s ({written:,} events)")

    timed(f"eod for the {args.days - 1} earlier days", lambda: run_eod(root, days[-2])
          if len(days) > 1 else None)
    _, eod_s = timed(f"eod for {last} ({args.events:,} events)", lambda: run_eod(root, last))
    con = an.connect(root)
    report, report_s = timed("report (DuckDB over the snapshots, table)",
                             lambda: format_table(eod_report(con, last), last))
    timed("report as self-contained HTML (charts)",
          lambda: render_html(con, root, last, eod_report(con, last)))
    print(f"{'floor: eod + report of the big day < 5 s':<56} {eod_s + report_s:8.2f} s   "
          f"{'PASS' if eod_s + report_s < 5 else 'FAIL'}")
    start = days[0]
    timed("30-day daily P&L per strategy", lambda: an.daily_pnl(con, by="strategy", start=start))
    timed("30-day equity curve per portfolio (compounded)",
          lambda: an.equity_curve(con, by="portfolio", start=start))
    timed("30-day turnover per portfolio from raw fills",
          lambda: an.turnover(con, by="portfolio", start=start))
    timed("30-day exposures per instrument", lambda: an.exposures(con, by="instrument",
                                                                  start=start))
    print(report.splitlines()[-2])
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
