"""The FastAPI app: read-only JSON routes, the SSE stream, health, metrics and the page.

``create_app(source)`` serves any :class:`~pm_polars.serve.source.ReadSource` (Redis for
``pm-polars serve``, memory for ``pm-polars demo --serve``). Only GET routes exist. Bodies
are the published JSON texts joined (see :mod:`pm_polars.serve.models` for their schema);
errors are ``{"error", "detail"}``: 404 unknown portfolio, 503 source unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from pm_polars.serve.alerts import AlertFollower
from pm_polars.serve.auth import Guard
from pm_polars.serve.metrics import ServeMetrics
from pm_polars.serve.models import AumDoc, ErrorBody, Health, PortfolioDoc, PositionDoc, PriceDoc
from pm_polars.serve.source import ReadSource, RedisSource
from pm_polars.serve.stream import DEFAULT_HEARTBEAT_S, SOURCE_ERRORS, StreamHub

ASSETS = Path(__file__).with_name("assets")
ERRORS: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody,
                                                 "description": "read model unreachable"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "not published"}, **ERRORS}


def _json(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/json")


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def create_app(source: ReadSource, *, auth_token: str | None = None,
               cors_origins: list[str] | None = None,
               heartbeat_s: float = DEFAULT_HEARTBEAT_S, close_source: bool = True,
               on_start: Callable[[asyncio.AbstractEventLoop], None] | None = None) -> FastAPI:
    """The app over ``source``; the stream hub runs while the app does (lifespan).

    ``on_start(loop)`` runs once the server's event loop is up (the demo starts its feed)."""
    metrics = ServeMetrics()
    hub = StreamHub(source, metrics, heartbeat_s=heartbeat_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run(), name="pm-serve-hub")
        follower = None  # alerts come from Redis (the daemon's channel); memory has none
        if isinstance(source, RedisSource) and source.alerts_channel is not None:
            follower = AlertFollower(source.client, source.alerts_channel, hub)
        alerts_task = None if follower is None else asyncio.create_task(
            follower.run(), name="pm-serve-alerts")
        if on_start is not None:
            on_start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await hub.stop()
            if follower is not None:
                follower.stop()
            for t in (task, alerts_task):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            if close_source:
                await source.aclose()

    app = FastAPI(title="pm-polars serve", lifespan=lifespan,
                  description="Read-only API over the live portfolio read model "
                  "(money in account currency, prices per unit, ts ns UTC).")
    app.state.hub, app.state.metrics, app.state.source = hub, metrics, source
    app.add_middleware(Guard, token=auth_token, metrics=metrics)
    if cors_origins:  # outermost: answers preflights (which carry no token) itself
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET"],
                           allow_headers=["Authorization", "Last-Event-ID"])

    async def unreachable(request: Request, exc: Exception) -> JSONResponse:
        return error(503, "source_unavailable",
                     f"cannot read the read model ({source.name}): {type(exc).__name__}: {exc}")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error(exc.status_code, "http_error", str(exc.detail))

    for cls in SOURCE_ERRORS:
        app.add_exception_handler(cls, unreachable)
    app.add_exception_handler(StarletteHTTPException, http_error)

    @app.get("/api/portfolios", response_model=list[PortfolioDoc], responses=ERRORS)
    async def portfolios() -> Response:
        """Every published portfolio document (Overall rows included), sorted by id."""
        docs, _ = await source.overview()
        return _json(f"[{','.join(docs)}]")

    @app.get("/api/portfolios/{portfolio_id}", response_model=PortfolioDoc, responses=NOT_FOUND)
    async def portfolio(portfolio_id: str) -> Response:
        """One portfolio document as published."""
        raw = await source.document(portfolio_id)
        if raw is None:
            return error(404, "unknown_portfolio", f"no portfolio {portfolio_id!r} is "
                         "published; GET /api/portfolios lists them")
        return _json(raw)

    @app.get("/api/portfolios/{portfolio_id}/positions", response_model=list[PositionDoc],
             responses=NOT_FOUND)
    async def positions(portfolio_id: str, open_only: bool = False) -> Response:
        """The portfolio's positions in token order (``open_only``: quantity != 0)."""
        raw = await source.document(portfolio_id)
        if raw is None:
            return error(404, "unknown_portfolio", f"no portfolio {portfolio_id!r} is published")
        rows = [{"instrument_token": int(tok), **pos}
                for tok, pos in json.loads(raw).get("positions", {}).items()]
        rows = [r for r in rows if r.get("quantity") or not open_only]
        rows.sort(key=lambda r: r["instrument_token"])
        return _json(json.dumps(rows))

    @app.get("/api/aum", response_model=AumDoc, responses=NOT_FOUND)
    async def aum() -> Response:
        """Total and per-source equity."""
        raw = await source.aum()
        if raw is None:
            return error(404, "not_published", "aum has not been published yet")
        return _json(raw)

    @app.get("/api/prices", response_model=dict[str, PriceDoc], responses=ERRORS)
    async def prices(tokens: str | None = Query(
            None, description="comma-separated instrument tokens; all when absent",
            examples=["256265,738561"])) -> Response:
        """Latest tick per instrument token."""
        wanted = None
        if tokens is not None:
            try:
                wanted = [int(t) for t in tokens.split(",") if t.strip()]
            except ValueError:
                return error(400, "bad_tokens", f"tokens={tokens!r}: expected integers "
                             "separated by commas, e.g. tokens=256265,738561")
        found = await source.prices(wanted)
        return _json("{" + ",".join(f'"{t}":{v}' for t, v in found.items()) + "}")

    @app.get("/api/alerts", response_model=list[dict[str, Any]])
    async def alerts() -> Response:
        """The last alerts the daemon published since this server started, oldest first
        (each as published: ``id``, ``type`` breach/recovery, ``limit``, ``portfolio_id``,
        the figures). Live ones arrive on ``/api/stream`` as ``alert`` events."""
        return _json(f"[{','.join(hub.alerts)}]")

    @app.get("/api/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "snapshot, update, alert, status, heartbeat events"}})
    async def stream(last_event_id: str | None = Header(None)) -> StreamingResponse:
        """Server-Sent Events: a full snapshot first, then one event per published batch."""
        return StreamingResponse(hub.events(last_event_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        """200 when the read model can be read, 503 otherwise."""
        try:
            await source.ping()
        except SOURCE_ERRORS as exc:
            return JSONResponse(Health(status="unavailable", source=source.name,
                                       detail=f"{type(exc).__name__}: {exc}").model_dump(),
                                status_code=503)
        return JSONResponse(Health(status="ok", source=source.name).model_dump())

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((ASSETS / "index.html").read_text())

    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")
    return app
