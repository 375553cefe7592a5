"""``pm-polars show``: the live portfolios (or one portfolio's positions) from Redis.

Reads what ``pm-polars run`` publishes, through :class:`pm_polars.client.PortfolioReader`.
Money in account currency, prices per unit, quantities signed. Connection settings share
the daemon's environment variables: ``PM_REDIS_URL``, ``PM_REDIS_PASSWORD`` (AUTH, used
when the URL carries none) and ``PM_KEY_PREFIX``. Exit status 1, with one log line, when
Redis cannot be read, the portfolio is unknown or a published value is unreadable.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from pm_polars.cli import Subparsers

if TYPE_CHECKING:
    import polars as pl

    from pm_polars.client import Aum, Portfolio

log = logging.getLogger("pm_polars.cli")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
ENV_URL, ENV_PASSWORD, ENV_PREFIX = "PM_REDIS_URL", "PM_REDIS_PASSWORD", "PM_KEY_PREFIX"

PORTFOLIO_COLUMNS = {
    "portfolio_id": "portfolio",
    "m2m": "m2m today",
    "day_net_pnl": "day net",
    "equity": "equity",
    "cash": "cash",
    "total_realized_pnl": "realized",
    "total_unrealized_pnl": "unrealized",
    "total_fees": "fees",
    "net_pnl": "net P&L",
    "gross_exposure": "gross exp",
    "net_exposure": "net exp",
    "open_positions": "open",
}
POSITION_COLUMNS = {
    "token": "token",
    "m2m": "m2m today",
    "day_pnl": "day P&L",
    "overnight_quantity": "overnight",
    "quantity": "qty",
    "average_price": "avg price",
    "last_price": "last",
    "market_value": "market value",
    "realized_pnl": "realized",
    "unrealized_pnl": "unrealized",
    "fees": "fees",
    "net_pnl": "net P&L",
}


def register(subparsers: Subparsers) -> None:
    """Add the ``show`` subcommand."""
    parser = subparsers.add_parser(
        "show",
        help="show the live portfolios (or one portfolio's positions) published in Redis",
        description=(
            "Without PORTFOLIO: every published portfolio (strategies and {source}_Overall) "
            "with today's m2m and day net P&L, equity, cash, realized/unrealized P&L, fees, "
            "net P&L and exposures, plus "
            "the AUM line. With PORTFOLIO: its positions and totals. Reads the keys "
            f"'pm-polars run' writes. AUTH password: ${ENV_PASSWORD} (when the URL has none)."
        ),
    )
    parser.add_argument("portfolio", nargs="?", metavar="PORTFOLIO",
                        help="a portfolio id, e.g. paper_Momentum_1 or paper_Overall")
    parser.add_argument("--redis-url", default=os.environ.get(ENV_URL, DEFAULT_REDIS_URL),
                        help=f"Redis URL, rediss:// for TLS (default ${ENV_URL} or "
                        f"{DEFAULT_REDIS_URL})")
    parser.add_argument("--key-prefix", default=os.environ.get(ENV_PREFIX, ""),
                        help=f"namespace of the daemon's keys (default ${ENV_PREFIX} or none)")
    parser.add_argument("--redis-cluster", action="store_true",
                        default=os.environ.get("PM_REDIS_CLUSTER", "").lower() in
                        ("1", "true", "yes", "on"),
                        help="--redis-url names any one node of a Redis Cluster (default "
                        "$PM_REDIS_CLUSTER)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table for people, json (the published documents) for tools")
    parser.add_argument("--open-only", action="store_true",
                        help="with PORTFOLIO: leave out flat positions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars show``."""
    import redis

    from pm_polars.client import DocumentError, PortfolioReader
    from pm_polars.daemon.config import redact_url

    try:
        with PortfolioReader.from_url(args.redis_url, args.key_prefix,
                                      password=os.environ.get(ENV_PASSWORD),
                                      cluster=args.redis_cluster) as reader:
            if args.portfolio is None:
                overview = reader.overview()
                text = _render_all(list(overview.portfolios.values()), overview.aum,
                                   args.format)
            else:
                pf = reader.get_portfolio(args.portfolio)
                if pf is None:
                    known = len(reader.list_portfolios())
                    log.error("pm-polars show: unknown portfolio %r (%d published under "
                              "prefix %r; run 'pm-polars show' to list them)",
                              args.portfolio, known, args.key_prefix)
                    return 1
                text = _render_one(pf, args.format, args.open_only)
    except (redis.RedisError, OSError) as exc:
        log.error("pm-polars show: cannot read Redis at %s: %s: %s",
                  redact_url(args.redis_url), type(exc).__name__, exc)
        return 1
    except DocumentError as exc:
        log.error("pm-polars show: unreadable published value: %s", exc)
        return 1
    sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------ rendering
def _render_all(portfolios: list[Portfolio], aum: Aum | None, fmt: str) -> str:
    if fmt == "json":
        doc = {"portfolios": [p.as_dict() for p in portfolios],
               "aum": None if aum is None else aum.as_dict()}
        return _json(doc)
    if not portfolios:
        return "(no portfolios published)\n"
    from pm_polars.client import portfolios_frame
    from pm_polars.demo.summary import format_aum, table_order

    table = table_order(portfolios_frame(portfolios))
    aum_line = "AUM not published yet" if aum is None else format_aum(aum.as_dict())
    days = sorted({p.trading_day for p in portfolios if p.trading_day})
    day_line = f"trading day {', '.join(days)}\n" if days else ""
    return f"{day_line}{_table(table, PORTFOLIO_COLUMNS)}\n{aum_line}\n"


def _render_one(pf: Portfolio, fmt: str, open_only: bool) -> str:
    positions = pf.position_list(open_only)
    if fmt == "json":
        doc = pf.as_dict()
        doc["positions"] = {str(p.instrument_token): p.as_dict() for p in positions}
        return _json(doc)
    import polars as pl

    from pm_polars.client import positions_frame
    from pm_polars.demo.summary import money

    head = (f"{pf.portfolio_id} (source {pf.source}, strategy {pf.strategy_id}): "
            f"{pf.open_positions} open of {len(pf.positions)} positions")
    if pf.trading_day:
        head += (f"\ntoday {pf.trading_day}: m2m {money(pf.m2m)} = carried "
                 f"{money(pf.day_carried_pnl)} + trading {money(pf.day_trading_pnl)} | "
                 f"fees {money(pf.day_fees)} | day net {money(pf.day_net_pnl)} | "
                 f"realized today {money(pf.day_realized_pnl)}")
    frame = positions_frame(positions).with_columns(
        pl.col("instrument_token").cast(pl.String).alias("token"),  # no thousands separator
        (pl.col("realized_pnl") + pl.col("unrealized_pnl") - pl.col("fees")).alias("net_pnl"),
    )
    if frame.schema["quantity"] == pl.Float64:  # fractional: every place, not 2
        frame = frame.with_columns(_quantity_text(pl.col(c))
                                   for c in ("quantity", "overnight_quantity"))
    body = _table(frame, POSITION_COLUMNS) if positions else "(no positions)"
    totals = [
        ("equity", pf.equity), ("cash", pf.cash), ("market value", pf.market_value),
        ("realized", pf.total_realized_pnl), ("unrealized", pf.total_unrealized_pnl),
        ("fees", pf.total_fees), ("net P&L", pf.net_pnl),
        ("gross exp", pf.gross_exposure), ("net exp", pf.net_exposure),
    ]
    line = " | ".join(f"{name} {money(value)}" for name, value in totals)
    return f"{head}\n{body}\ntotals: {line}\n"


def _quantity_text(units: pl.Expr) -> pl.Expr:
    """Fractional quantities (``--quantity-decimals``) as their shortest text: ``0.015``,
    ``75`` (the table's float format would round them to 2 places)."""
    import polars as pl

    whole = units == units.round(0)
    return (pl.when(whole).then(units.cast(pl.Int64).cast(pl.String))
            .otherwise(units.cast(pl.String)).name.keep())


def _table(frame: pl.DataFrame, columns: dict[str, str]) -> str:
    import polars as pl

    view = frame.select(list(columns)).rename(columns)
    view = view.with_columns(pl.col(pl.Float64) + 0.0)  # -0.0 + 0.0 == 0.0: no "-0.00"
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, tbl_width_chars=240, tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True, tbl_formatting="ASCII_FULL_CONDENSED",
        tbl_cell_numeric_alignment="RIGHT", thousands_separator=",", float_precision=2,
        fmt_str_lengths=60,
    ):
        return str(view)


def _json(doc: Any) -> str:
    """Strict JSON (a nan, the reader's spelling of a published null, back to null)."""
    return json.dumps(_nulls(doc), indent=2) + "\n"


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value
