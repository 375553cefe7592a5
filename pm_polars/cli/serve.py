"""``pm-polars serve``: the JSON API, the SSE stream and the live page over Redis.

Reads what ``pm-polars run`` publishes (never writes it). Settings: flag > env > TOML
(``--config FILE``, ``[serve]`` table) > default; see :mod:`pm_polars.serve.auth`. Exit
status 2 with one log line for a setting that cannot work (e.g. a non-loopback bind without
an auth token).
"""

from __future__ import annotations

import argparse
import logging
import os

from pm_polars.cli import Subparsers

log = logging.getLogger("pm_polars.cli")


def register(subparsers: Subparsers) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the live portfolios from Redis: JSON API, SSE stream and a web page",
        description=(
            "Read-only HTTP server over the Redis read model of 'pm-polars run': GET "
            "/api/portfolios[/{id}[/positions]], /api/aum, /api/prices, /api/stream (SSE), "
            "/healthz, /metrics, OpenAPI at /docs, the dashboard at /. Binds 127.0.0.1; "
            "another --host needs --auth-token (then requests carry 'Authorization: Bearer')."
        ),
    )
    add_http_arguments(parser)
    parser.add_argument("--redis-url", default=None,
                        help="Redis URL, rediss:// for TLS (env PM_REDIS_URL; default "
                        "redis://localhost:6379/0); AUTH password from $PM_REDIS_PASSWORD")
    parser.add_argument("--key-prefix", default=None,
                        help="namespace of the daemon's keys (env PM_KEY_PREFIX; default none)")
    parser.add_argument("--redis-cluster", action="store_const", const=True, default=None,
                        help="--redis-url names any one node of a Redis Cluster (env "
                        "PM_REDIS_CLUSTER=true; redis_cluster in the TOML)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="TOML file with a [serve] table (host, port, redis_url, "
                        "key_prefix, auth_token, cors_origins, heartbeat_s, alerts_channel); env "
                        "PM_SERVE_CONFIG")
    parser.set_defaults(handler=run)


def add_http_arguments(parser: argparse._ActionsContainer) -> None:
    """Flags shared with ``pm-polars demo --serve`` (None = not given)."""
    parser.add_argument("--host", default=None,
                        help="address to bind (env PM_SERVE_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (env PM_SERVE_PORT; default 8080)")
    parser.add_argument("--auth-token", default=None,
                        help="bearer token every request must carry (env PM_SERVE_AUTH_TOKEN); "
                        "required to bind beyond 127.0.0.1")
    parser.add_argument("--cors-origin", dest="cors_origins", action="append", default=None,
                        metavar="ORIGIN", help="allow GETs from this browser origin "
                        "(repeatable; env PM_SERVE_CORS_ORIGINS, comma-separated); none by default")
    parser.add_argument("--heartbeat-s", type=float, default=None,
                        help="stream heartbeat interval (env PM_SERVE_HEARTBEAT_S; default 5)")
    parser.add_argument("--alerts-channel", default=None, metavar="NAME",
                        help="the daemon's alerts channel, under --key-prefix (env "
                        "PM_SERVE_ALERTS_CHANNEL; default pm-alerts, as [alerts] channel)")


def run(args: argparse.Namespace) -> int:
    """Execute ``pm-polars serve``."""
    from pm_polars.serve.app import create_app
    from pm_polars.serve.auth import ServeConfigError, resolve
    from pm_polars.serve.runner import serve_app
    from pm_polars.serve.source import RedisSource

    try:
        settings = resolve(args, os.environ)
    except ServeConfigError as exc:
        log.error("pm-polars serve: %s", exc)
        return 2
    source = RedisSource(settings.redis_url, settings.key_prefix,
                         password=settings.redis_password, cluster=settings.redis_cluster,
                         alerts_channel=settings.alerts_channel)
    app = create_app(source, auth_token=settings.auth_token,
                     cors_origins=settings.cors_origins, heartbeat_s=settings.heartbeat_s)
    serve_app(app, settings.host, settings.port)
    return 0
