"""``pm-polars compact``: merge small archive files into large ones (idempotent)."""

from __future__ import annotations

import argparse
import sys

from pm_polars.cli import Subparsers
from pm_polars.cli._history import add_archive_root, iso_date


def register(subparsers: Subparsers) -> None:
    """Add the ``compact`` subcommand."""
    from pm_polars.archive import DEFAULT_TARGET_ROWS
    from pm_polars.types import KINDS

    parser = subparsers.add_parser(
        "compact",
        help="merge a date's small archive files into large ones",
        description=(
            "Per kind, date and topic-partition (or stream): deduplicate re-archived events "
            "and rewrite the files as few files of about TARGET_ROWS rows, named by their "
            "offset ranges. Safe to re-run and to interrupt."
        ),
    )
    add_archive_root(parser)
    parser.add_argument("--date", type=iso_date, action="append", default=None,
                        help="date to compact (repeatable; default: every date)")
    parser.add_argument("--kind", choices=KINDS, action="append", default=None,
                        help="kind to compact (repeatable; default: all)")
    parser.add_argument("--target-rows", type=int, default=DEFAULT_TARGET_ROWS,
                        help=f"rows per output file (default {DEFAULT_TARGET_ROWS:,})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars compact``."""
    from pm_polars.archive.compact import compact
    from pm_polars.types import KINDS

    stats = compact(args.archive_root, args.date, args.kind or KINDS,
                    target_rows=args.target_rows)
    sys.stdout.write(
        f"rewrote {stats.groups_rewritten} groups: {stats.files_in} files -> "
        f"{stats.files_out} ({stats.rows_out:,} rows); swept {stats.temps_swept} temp files\n"
    )
    return 0
