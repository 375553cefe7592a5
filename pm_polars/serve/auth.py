"""Settings of ``pm-polars serve``, the bind rule and the bearer-token guard.

Precedence: flag > environment > TOML file (``--config FILE`` or ``$PM_SERVE_CONFIG``, keys
of a ``[serve]`` table) > default. Security rules:

* the server binds 127.0.0.1 unless told otherwise; any other address needs an auth token
  (``--auth-token`` / ``$PM_SERVE_AUTH_TOKEN`` / ``auth_token``), else :class:`ServeConfigError`;
* with a token every request must carry ``Authorization: Bearer <token>``, except the page
  (``/``) and its static assets, which hold no data (the page asks for the token once);
* no CORS headers unless origins are configured (``--cors-origin``, GET only).
"""

from __future__ import annotations

import argparse
import hmac
import json
import tomllib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pm_polars.serve.metrics import ServeMetrics

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
OPEN_PATHS = ("/", "/favicon.ico")
OPEN_PREFIX = "/assets/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServeConfigError(ValueError):
    """A setting that cannot work; the message names it and the fix."""


@dataclass(frozen=True)
class ServeSettings:
    """Resolved settings (see the module docstring for where each comes from)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    redis_url: str = DEFAULT_REDIS_URL
    redis_password: str | None = None
    key_prefix: str = ""
    redis_cluster: bool = False
    auth_token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    heartbeat_s: float = 5.0
    alerts_channel: str = "pm-alerts"  # the daemon's [alerts] channel (under key_prefix)

    def check(self) -> None:
        """The bind rule: a non-loopback address requires a token."""
        if self.host not in LOOPBACK and not self.auth_token:
            raise ServeConfigError(
                f"--host {self.host}: binding beyond 127.0.0.1 exposes the book to the "
                "network. Fix: set an auth token (--auth-token, $PM_SERVE_AUTH_TOKEN or "
                "auth_token in the [serve] table of --config), or bind 127.0.0.1")


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):
        return value in ("true", "1", "yes", "on")
    raise ValueError("not a boolean (use true or false)")


# name -> (env variable, parser)
_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "host": ("PM_SERVE_HOST", str),
    "port": ("PM_SERVE_PORT", int),
    "redis_url": ("PM_REDIS_URL", str),
    "redis_password": ("PM_REDIS_PASSWORD", str),
    "key_prefix": ("PM_KEY_PREFIX", str),
    "redis_cluster": ("PM_REDIS_CLUSTER", lambda s: _boolean(s)),
    "auth_token": ("PM_SERVE_AUTH_TOKEN", str),
    "cors_origins": ("PM_SERVE_CORS_ORIGINS", lambda s: [o for o in s.split(",") if o]),
    "heartbeat_s": ("PM_SERVE_HEARTBEAT_S", float),
    "alerts_channel": ("PM_SERVE_ALERTS_CHANNEL", str),
}
CONFIG_ENV = "PM_SERVE_CONFIG"


def _file_settings(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ServeConfigError(f"--config {path}: no such file. Fix: check the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ServeConfigError(f"--config {path}: not valid TOML ({exc})") from exc
    table = data.get("serve", {})
    if not isinstance(table, dict):
        raise ServeConfigError(f"--config {path}: 'serve' must be a table ([serve])")
    unknown = sorted(set(table) - set(_SETTINGS))
    if unknown:
        raise ServeConfigError(f"--config {path}: unknown [serve] setting(s) {unknown}. "
                               f"Fix: use one of {sorted(_SETTINGS)}")
    return table


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeSettings:
    """Merge flags (attributes of ``args`` that are not None), env and the TOML file."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    path = given.get("config") or environ.get(CONFIG_ENV)
    from_file = _file_settings(Path(path)) if path else {}
    values: dict[str, Any] = {}
    for name, (env, parse) in _SETTINGS.items():
        if name in given and given[name] != []:
            values[name] = given[name]
            continue
        if env in environ:
            origin, raw = f"${env}", environ[env]
        elif name in from_file:
            origin, raw = f"'{name}' in {path}", from_file[name]
            if isinstance(raw, list):
                raw = ",".join(map(str, raw))
        else:
            continue
        try:
            values[name] = parse(str(raw))
        except ValueError as exc:
            raise ServeConfigError(f"{origin}={raw!r}: {exc}") from exc
    settings = ServeSettings(**values)
    settings.check()
    return settings


def authorized(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """True if the ``Authorization`` header is ``Bearer <token>`` (constant-time compare)."""
    want = f"Bearer {token}".encode()
    return any(k == b"authorization" and hmac.compare_digest(v, want) for k, v in headers)


class Guard:
    """ASGI middleware: the bearer check (when a token is set) and the request counter."""

    def __init__(self, app: ASGIApp, token: str | None, metrics: ServeMetrics) -> None:
        self.app = app
        self.token = token
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            if (self.token and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIX)
                    and not authorized(scope["headers"], self.token)):
                await _unauthorized(counted)
            else:
                await self.app(scope, receive, counted)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or ("unauthorized" if status == 401 else "other")
            self.metrics.requests.labels(scope["method"], label, str(status)).inc()


async def _unauthorized(send: Send) -> None:
    body = json.dumps({"error": "unauthorized", "detail": "this server needs "
                       "'Authorization: Bearer <token>' (the token set with --auth-token)"})
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body.encode()})
