"""``pm-polars run``: the daemon (Kafka -> micro-batches -> Polars engine -> Redis).

Every setting is a flag, an environment variable ``PM_<NAME>`` and a key of the TOML file
given by ``--config`` (precedence in that order, then the default); ``--help`` lists them
with their defaults. See ``pm_polars.daemon.config``.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys

from pm_polars.cli import Subparsers

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> None:
    """Add the ``run`` subcommand."""
    from pm_polars.daemon.config_sources import add_arguments

    parser = subparsers.add_parser(
        "run",
        help="run the daemon: Kafka fills/ticks -> engine -> Redis (exactly-once state)",
        description=(
            "Consume fills (consumer group on a topic pattern) and ticks (every partition, "
            "no group) in micro-batches, apply them to one engine per owned partition and "
            "write state, offsets and the published read model to Redis in one MULTI/EXEC "
            "per batch; with --archive-root every committed record is also archived exactly "
            "once as Parquet (see docs/history.md). Settings: flag > env PM_<NAME> > --config TOML > default. Exit codes: "
            "0 stopped by SIGTERM/SIGINT, 1 error, 2 bad settings, 3 reject ratio exceeded, "
            "4 stopped while Redis/Kafka were unreachable."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars run``."""
    from pm_polars.daemon.app import Daemon
    from pm_polars.daemon.config import ConfigError
    from pm_polars.daemon.config_sources import resolve
    from pm_polars.engine.instruments import InstrumentError

    try:
        settings = resolve(args, os.environ)
        daemon = Daemon(settings)
    except (ConfigError, InstrumentError) as exc:
        sys.stderr.write(f"pm-polars run: {exc}\n")
        return 2
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack to stderr
    return daemon.run()
