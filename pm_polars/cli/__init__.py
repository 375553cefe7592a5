"""``pm-polars`` command line: a registry of subcommands discovered by module.

Each subcommand lives in its own module ``pm_polars/cli/<name>.py`` that defines::

    def register(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser("name", help="...")
        parser.add_argument(...)
        parser.set_defaults(handler=run)      # run(args: argparse.Namespace) -> int

Modules are found with :mod:`pkgutil`, so adding a command means adding one file; this
module never needs editing. Modules without ``register`` (helpers such as ``logs``) and
private modules (``_name``) are skipped, and so, with a warning, is a module that fails to
import. Every subcommand gets ``--log-level``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from pm_polars.cli.logs import add_log_level_argument, default_level, setup_logging

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Subparsers = argparse._SubParsersAction

log = logging.getLogger(__name__)


def command_modules() -> list[str]:
    """Names of the ``pm_polars.cli`` modules that define a ``register`` function."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # one broken command must not take down the others
            log.warning("pm-polars: skipping command module %r: %s: %s", info.name,
                        type(exc).__name__, exc)
            continue
        if callable(getattr(module, "register", None)):
            names.append(info.name)
    return sorted(names)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pm-polars",
        description="Real-time portfolio & P&L engine (Polars).",
    )
    add_log_level_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    seen: set[int] = set()
    for sub in subparsers.choices.values():  # aliases share a parser
        if id(sub) not in seen and "--log-level" not in sub._option_string_actions:
            add_log_level_argument(sub, suppress=True)
        seen.add(id(sub))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pm-polars`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(getattr(args, "log_level", default_level()))
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
