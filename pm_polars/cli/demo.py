"""``pm-polars demo``: run the synthetic feed through the engine and print the portfolios."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pm_polars.cli import Subparsers


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(subparsers: Subparsers) -> None:
    """Add the ``demo`` subcommand."""
    from pm_polars.cli.serve import add_http_arguments
    from pm_polars.demo import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_EVENTS,
        DEFAULT_LIVE_BATCH,
        DEFAULT_RATE,
        DEFAULT_SEED,
        DEFAULT_STARTING_CASH,
    )

    parser = subparsers.add_parser(
        "demo",
        help="run a deterministic synthetic feed through the engine",
        description=(
            "Generate a synthetic feed of fills and ticks (with duplicates and malformed "
            "records), process it in micro-batches, log progress, print the portfolio table "
            "and write snapshot + parquet files under DATA_DIR/demo/."
        ),
    )
    parser.add_argument("--events", type=_positive_int, default=DEFAULT_EVENTS,
                        help=f"number of events to generate (default {DEFAULT_EVENTS:,})")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"events per micro-batch (default {DEFAULT_BATCH_SIZE:,})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"feed seed; same seed, same feed (default {DEFAULT_SEED})")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="output root; files land in DATA_DIR/demo/ (default ./data)")
    parser.add_argument("--starting-cash", type=float, default=DEFAULT_STARTING_CASH,
                        help=f"cash per portfolio (default {DEFAULT_STARTING_CASH:,.0f})")
    parser.add_argument("--archive-root", type=Path, default=None,
                        help="archive the run here for eod/report/notebooks "
                        "(default DATA_DIR/archive)")
    parser.add_argument("--no-archive", action="store_true", help="do not archive the run")
    live = parser.add_argument_group(
        "live (--serve)", "serve the API and dashboard of 'pm-polars serve' from memory (no "
        "Redis, no Kafka) while an endless feed runs at --rate; --events, --batch-size, "
        "--data-dir and the archive options do not apply")
    live.add_argument("--serve", action="store_true",
                      help="run the paced feed and serve it at http://HOST:PORT/")
    live.add_argument("--rate", type=_positive_int, default=DEFAULT_RATE,
                      help=f"events per second with --serve (default {DEFAULT_RATE:,})")
    live.add_argument("--live-batch", type=_positive_int, default=DEFAULT_LIVE_BATCH,
                      help=f"events per batch with --serve (default {DEFAULT_LIVE_BATCH})")
    add_http_arguments(live)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars demo``."""
    if args.serve:
        return _serve(args)
    from pm_polars.demo.runner import run_demo

    run_demo(
        events=args.events,
        batch_size=args.batch_size,
        seed=args.seed,
        data_dir=args.data_dir,
        starting_cash=args.starting_cash,
        out=sys.stdout,
        archive_root=None if args.no_archive else (args.archive_root or args.data_dir / "archive"),
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from pm_polars.demo.live import run_live_demo
    from pm_polars.serve.auth import ServeConfigError, resolve

    try:
        settings = resolve(args, os.environ)
    except ServeConfigError as exc:
        logging.getLogger("pm_polars.cli").error("pm-polars demo --serve: %s", exc)
        return 2
    run_live_demo(settings, seed=args.seed, rate=args.rate, batch_size=args.live_batch,
                  starting_cash=args.starting_cash)
    return 0
