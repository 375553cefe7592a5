"""``pm-polars replay``: rebuild engine state from the archive (e.g. after losing Redis)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pm_polars.cli import Subparsers
from pm_polars.cli._history import add_archive_root, add_engine_overrides, guarded, timestamp_ns


def register(subparsers: Subparsers) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="rebuild engine state from the archive",
        description=(
            "Re-apply every archived fill and tick in arrival order to a fresh engine, print "
            "the portfolio table and optionally write the state as a snapshot directory "
            "(PortfolioEngine.restore reads it)."
        ),
    )
    add_archive_root(parser)
    parser.add_argument("--until", type=timestamp_ns, default=None,
                        help="only events with event time <= this (ISO datetime, UTC if no "
                        "offset; a date means its end; or epoch ns)")
    parser.add_argument("--snapshot-out", type=Path, default=None,
                        help="write the rebuilt state to this snapshot directory")
    add_engine_overrides(parser)
    parser.add_argument("--cost-basis", choices=("average", "fifo"), default=None,
                        help="rebook under this method (default: the archive's engine.json; "
                        "fifo gives the open tax lots of an average-cost desk)")
    parser.set_defaults(handler=run)


@guarded
def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars replay``."""
    from pm_polars.archive.replay import replay
    from pm_polars.demo.summary import format_portfolio_table, table_order

    eng = replay(args.archive_root, until_ns=args.until, starting_cash=args.starting_cash,
                 instruments=args.instruments, cost_basis=args.cost_basis)
    if args.snapshot_out is not None:
        eng.snapshot().write(args.snapshot_out)
    sys.stdout.write(format_portfolio_table(table_order(eng.portfolios(aggregates=True)),
                                            eng.aum()) + "\n")
    return 0
