"""Arguments shared by the history commands (``eod``, ``report``, ``replay``, ``compact``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from pm_polars.archive import DEFAULT_ROOT

log = logging.getLogger("pm_polars.cli")


def iso_date(text: str) -> date:
    """``YYYY-MM-DD`` -> date (argparse type)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def timestamp_ns(text: str) -> int:
    """An ISO datetime (no offset = UTC), a date (its end, 23:59:59.999999999 UTC) or
    integer epoch nanoseconds -> ns since epoch UTC (argparse type)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return int(start.timestamp()) * 10**9 + 86_400 * 10**9 - 1
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO datetime, a date or epoch nanoseconds, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.timestamp())
    return whole * 10**9 + moment.microsecond * 1_000


def add_archive_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive-root", type=Path, default=DEFAULT_ROOT,
                        help=f"archive directory (default {DEFAULT_ROOT})")


def add_engine_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--starting-cash", type=float, default=None,
                        help="cash per portfolio for a rebuild from scratch (default: the "
                        "archive's engine.json)")
    parser.add_argument("--instruments", type=Path, default=None,
                        help="instruments CSV/Parquet (default: the archive's "
                        "instruments.parquet)")


def guarded(body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so that a missing-data error is one log line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from pm_polars.analytics.connection import AnalyticsError
        from pm_polars.eod.run import EodError

        try:
            return body(args)
        except (AnalyticsError, EodError) as exc:
            log.error("%s", exc)
            return 1

    run.__doc__ = body.__doc__
    return run
