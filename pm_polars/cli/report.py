"""``pm-polars report``: the end-of-day report of a date as a table, CSV, Parquet or HTML."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pm_polars.cli import Subparsers
from pm_polars.cli._history import add_archive_root, guarded, iso_date

log = logging.getLogger(__name__)
FORMATS = ("table", "csv", "parquet", "html")


def register(subparsers: Subparsers) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="end-of-day report per strategy portfolio with an all-strategies row",
        description=(
            "Report of DATE from the end-of-day snapshots (eod runs first when they are "
            "missing or older than the archive): fills, "
            "round trips, win rate, turnover, realized/unrealized/fees/net P&L, return, "
            "equity and exposure per strategy portfolio, plus an ALL row. HTML adds an "
            "equity curve and a P&L-by-strategy chart in one self-contained file."
        ),
    )
    parser.add_argument("--date", type=iso_date, required=True, help="trading date YYYY-MM-DD (the day as the archive's day_roll_tz/day_roll_time define it, engine.json)")
    add_archive_root(parser)
    parser.add_argument("--portfolio", default=None,
                        help="one portfolio id, or {source}_Overall for a whole source")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="output format (default table)")
    parser.add_argument("--output", type=Path, default=None,
                        help="output file (default stdout; required for parquet)")
    parser.set_defaults(handler=run)


@guarded
def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars report``."""
    from pm_polars.analytics import connect
    from pm_polars.analytics.report import eod_report, format_table
    from pm_polars.eod.run import is_closed, run_eod

    if args.format == "parquet" and args.output is None:
        log.error("--format parquet needs --output FILE")
        return 2
    if not is_closed(args.archive_root, args.date):
        log.info("no current end-of-day snapshot for %s: running eod first", args.date)
        run_eod(args.archive_root, args.date)
    con = connect(args.archive_root)
    report = eod_report(con, args.date, args.portfolio)
    if args.format == "parquet":
        report.write_parquet(args.output)
        return 0
    if args.format == "csv":
        text = report.write_csv()
    elif args.format == "html":
        from pm_polars.analytics.html import render_html

        text = render_html(con, Path(args.archive_root), args.date, report, args.portfolio)
    else:
        text = format_table(report, args.date) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        log.info("wrote %s", args.output)
    return 0
