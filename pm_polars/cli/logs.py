"""Logging setup shared by every ``pm-polars`` subcommand.

Progress and status go to the log (stderr); user-facing output such as tables is written
to stdout explicitly by the commands, so ``pm-polars demo > table.txt`` keeps only tables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_LEVEL = "PM_POLARS_LOG_LEVEL"
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
HANDLER_NAME = "pm_polars.cli"
NOISY_LOGGERS = ("urllib3", "asyncio", "confluent_kafka", "redis")


def default_level() -> str:
    """Level from ``$PM_POLARS_LOG_LEVEL`` (case-insensitive), else ``INFO``."""
    level = os.environ.get(ENV_LEVEL, "INFO").upper()
    return level if level in LEVELS else "INFO"


def add_log_level_argument(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add ``--log-level`` to ``parser``.

    With ``suppress`` the option has no default, so a value given on the main parser
    (``pm-polars --log-level DEBUG demo``) is not overwritten by the subcommand's default.
    """
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default=argparse.SUPPRESS if suppress else default_level(),
        help=f"log verbosity (default: ${ENV_LEVEL} or INFO)",
    )


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Configure the root logger: one clear line per record on stderr.

    Calling it again replaces the handler it installed before; handlers installed by
    others (pytest, a notebook) are left alone.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
