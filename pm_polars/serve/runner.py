"""Run an app with uvicorn (used by ``pm-polars serve`` and ``pm-polars demo --serve``)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


def serve_app(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; open streams are closed by the app's lifespan, and
    connections still open after 2 s are dropped (a stream never ends by itself)."""
    log.info("event=serve_start url=http://%s:%d/ docs=http://%s:%d/docs", host, port, host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=2, access_log=False)
    uvicorn.Server(config).run()
