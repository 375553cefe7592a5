"""``pm-polars eod``: end-of-day snapshots of positions, portfolios and round trips."""

from __future__ import annotations

import argparse
import sys

from pm_polars.cli import Subparsers
from pm_polars.cli._history import add_archive_root, add_engine_overrides, guarded, iso_date


def register(subparsers: Subparsers) -> None:
    """Add the ``eod`` subcommand."""
    parser = subparsers.add_parser(
        "eod",
        help="roll a trading day: position, portfolio and round-trip snapshots",
        description=(
            "Replay the archive up to the end of DATE (incrementally from the last current "
            "end-of-day state) and write snapshots/{positions,portfolios,trips,state}/"
            "date=DATE under the archive root. Earlier days without a current snapshot are "
            "rolled as well."
        ),
    )
    parser.add_argument("--date", type=iso_date, required=True, help="trading date YYYY-MM-DD (the day as the archive's day_roll_tz/day_roll_time define it, engine.json)")
    add_archive_root(parser)
    parser.add_argument("--full", action="store_true",
                        help="ignore existing state snapshots and replay from the first date")
    add_engine_overrides(parser)
    parser.set_defaults(handler=run)


@guarded
def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars eod``."""
    from pm_polars.eod import run_eod

    res = run_eod(args.archive_root, args.date, full=args.full,
                  starting_cash=args.starting_cash, instruments=args.instruments)
    for day in res.rolled:
        sys.stdout.write(f"closed {day.isoformat()}\n")
    p = res.portfolios
    sys.stdout.write(
        f"{res.day.isoformat()}: {p.height} portfolios, {res.positions.height} positions, "
        f"{res.trips.height} round trips, net P&L {float(p['day_net_pnl'].sum()):,.2f}, "
        f"equity {float(p['equity'].sum()):,.2f}\n"
    )
    return 0
