"""``pm-polars serve`` against a real redis-server written by the daemon's write path.

The state is the hand-worked book of ``test_client`` (same events, same figures): after both
batches paper_S1 has cash 999,478, realized 80, unrealized 60 * (11.5 - 10) = 90, fees 2,
equity 1,000,168; live_S3 equity 1,000,019.5; aum 3,000,246.5. Every answer must be the
published document itself (every field, every digit), read back from Redis independently.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reference import T0, fill
from support import RedisServer
from support.published import documents
from support.serve_book import IDS, PREFIX, A, B, publish_book, serve
from support.serve_process import PM_POLARS, ServeProcess, SSEReader

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """One redis-server with the published book and one server over it (read-only tests)."""
    tmp = tmp_path_factory.mktemp("serve-api")
    (tmp / "redis").mkdir()
    with RedisServer(directory=tmp / "redis") as srv:
        publish_book(srv.client())
        server = serve(srv.url, tmp)
        try:
            yield srv, server.url
        finally:
            server.stop()


def get(url: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(url + path, timeout=10, **kw)


# ------------------------------------------------------------------ JSON routes
def test_portfolios_are_the_published_documents(book: tuple[RedisServer, str]) -> None:
    srv, url = book
    docs = documents(srv.client(), PREFIX)
    r = get(url, "/api/portfolios")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert [d["portfolio_id"] for d in body] == IDS  # Overall rows included, sorted
    assert body == [docs[p] for p in IDS]  # every field as published
    s1 = next(d for d in body if d["portfolio_id"] == "paper_S1")
    assert (s1["cash"], s1["total_realized_pnl"], s1["total_unrealized_pnl"],
            s1["total_fees"], s1["equity"]) == (999_478.0, 80.0, 90.0, 2.0, 1_000_168.0)


def test_one_portfolio_and_unknown_is_404_json(book: tuple[RedisServer, str]) -> None:
    srv, url = book
    raw = srv.client().get(f"{PREFIX}portfolio:paper_Overall")
    r = get(url, "/api/portfolios/paper_Overall")
    assert r.status_code == 200 and r.text == raw  # byte for byte
    assert r.json()["equity"] == 2_000_227.0
    missing = get(url, "/api/portfolios/paper_S9")
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_portfolio" and "paper_S9" in missing.json()["detail"]
    assert get(url, "/api/portfolios/paper_S9/positions").status_code == 404


def test_positions_aum_and_prices(book: tuple[RedisServer, str]) -> None:
    srv, url = book
    doc = documents(srv.client(), PREFIX)["paper_S2"]
    rows = get(url, "/api/portfolios/paper_S2/positions").json()
    assert [r["instrument_token"] for r in rows] == [A, B]
    assert rows == [doc["positions"][str(A)], doc["positions"][str(B)]]
    assert rows[1]["quantity"] == 0 and rows[1]["realized_pnl"] == 50.0  # B flat, +50
    open_rows = get(url, "/api/portfolios/paper_S2/positions", params={"open_only": "true"})
    assert [r["instrument_token"] for r in open_rows.json()] == [A]

    aum = get(url, "/api/aum").json()
    assert aum == json.loads(srv.client().get(f"{PREFIX}aum") or "null")
    assert aum["total"] == pytest.approx(3_000_246.5, abs=1e-6)
    assert aum["by_source"]["live"] == pytest.approx(1_000_019.5, abs=1e-6)

    prices = get(url, "/api/prices").json()
    assert set(prices) == {str(A), str(B)}
    assert prices[str(A)]["last_price"] == 11.5 and prices[str(B)]["last_price"] == 48.0
    assert get(url, "/api/prices", params={"tokens": f"{B},1"}).json() == {str(B): prices[str(B)]}
    bad = get(url, "/api/prices", params={"tokens": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_tokens"


def test_openapi_is_typed_and_read_only(book: tuple[RedisServer, str]) -> None:
    _, url = book
    spec = get(url, "/openapi.json").json()
    assert {"PortfolioDoc", "PositionDoc", "AumDoc", "PriceDoc", "ErrorBody"} <= set(
        spec["components"]["schemas"])
    assert "net_pnl" in spec["components"]["schemas"]["PortfolioDoc"]["properties"]
    methods = {m for ops in spec["paths"].values() for m in ops}
    assert methods == {"get"}  # no write endpoints
    assert httpx.post(url + "/api/portfolios", timeout=5).status_code == 405
    assert get(url, "/docs").status_code == 200


def test_healthz_metrics_and_no_cors_by_default(book: tuple[RedisServer, str]) -> None:
    _, url = book
    assert get(url, "/healthz").json() == {"status": "ok", "source": "redis", "detail": ""}
    r = get(url, "/api/aum", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers
    text = get(url, "/metrics").text
    assert 'pm_serve_requests_total{method="GET",route="/api/aum",status="200"}' in text
    assert "pm_serve_stream_clients" in text and "pm_serve_push_latency_seconds" in text


# ------------------------------------------------------------------ stream
def test_stream_full_refresh_then_each_batch(redis_srv: RedisServer, tmp_path: Path) -> None:
    client = redis_srv.client()
    writer = publish_book(client)
    server = serve(redis_srv.url, tmp_path)
    reader = SSEReader(server.url + "/api/stream")
    try:
        snap = reader.next("snapshot")
        assert snap.data["portfolios"] == list(documents(client, PREFIX).values())
        assert snap.data["aum"]["total"] == pytest.approx(3_000_246.5, abs=1e-6)
        reader.next("heartbeat", timeout=5)  # 1 s heartbeats while nothing happens

        writer.batch({0: [fill("S1", A, "SELL", 60, 13.0, fee=1.0, ts=T0 + 30,
                               fill_id="f7")]})
        update = reader.next("update")
        docs = documents(client, PREFIX)
        got = {d["portfolio_id"]: d for d in update.data["portfolios"]}
        assert set(got) == {"paper_S1", "paper_Overall"}
        assert got == {p: docs[p] for p in got}
        # S1 closes 60 A @ 13 from avg 10: realized 80 + 180 = 260, flat
        assert got["paper_S1"]["total_realized_pnl"] == 260.0
        assert got["paper_S1"]["open_positions"] == 0
        assert update.data["aum"] == json.loads(client.get(f"{PREFIX}aum") or "null")
        assert int(update.id or 0) == snap.data["seq"] + 1

        # a reconnect (with Last-Event-ID) starts with a full refresh
        again = SSEReader(server.url + "/api/stream", headers={"Last-Event-ID": update.id or ""})
        try:
            first = again.next()
            assert first.event == "snapshot"
            assert first.data["portfolios"] == list(documents(client, PREFIX).values())
        finally:
            again.close()
    finally:
        reader.close()
        server.stop()


def test_daemon_alerts_reach_the_stream_and_api_alerts(redis_srv: RedisServer,
                                                       tmp_path: Path) -> None:
    """An alert published on the daemon's channel (under the key prefix) is pushed as an
    ``alert`` event, listed by ``/api/alerts`` and in every new client's snapshot; a message
    that is not an alert is ignored."""
    client = redis_srv.client()
    publish_book(client)
    server = serve(redis_srv.url, tmp_path)
    reader = SSEReader(server.url + "/api/stream")
    try:
        assert reader.next("snapshot").data["alerts"] == []
        breach = {"id": "paper_S1:2026-12-04:day_loss:breach:1", "type": "breach",
                  "limit": "day_loss", "portfolio_id": "paper_S1", "day_net_pnl": -150.0}
        client.publish(f"{PREFIX}pm-alerts", "not json")
        client.publish(f"{PREFIX}pm-alerts", json.dumps({"no": "id"}))
        client.publish("pm-alerts", json.dumps({**breach, "id": "other desk"}))  # no prefix
        assert client.publish(f"{PREFIX}pm-alerts", json.dumps(breach)) == 1
        assert reader.next("alert").data == breach
        assert get(server.url, "/api/alerts").json() == [breach]
        again = SSEReader(server.url + "/api/stream")
        try:
            assert again.next("snapshot").data["alerts"] == [breach]
        finally:
            again.close()
    finally:
        reader.close()
        server.stop()


def test_redis_down_503_then_stream_resumes(redis_srv: RedisServer, tmp_path: Path) -> None:
    writer = publish_book(redis_srv.client())
    server = serve(redis_srv.url, tmp_path)
    reader = SSEReader(server.url + "/api/stream")
    try:
        reader.next("snapshot")
        redis_srv.stop()  # SIGKILL; AOF fsync always keeps every write
        status = reader.next("status")
        assert status.data["source"] == "down"
        for path in ("/api/portfolios", "/api/portfolios/paper_S1", "/api/aum", "/api/prices"):
            r = get(server.url, path)
            assert r.status_code == 503, path
            assert r.json()["error"] == "source_unavailable"
        assert get(server.url, "/healthz").status_code == 503
        assert reader.next("heartbeat").data["source"] == "down"

        redis_srv.start()
        assert reader.next("status", timeout=15).data["source"] == "up"
        refresh = reader.next("snapshot")
        assert refresh.data["portfolios"] == list(documents(redis_srv.client(), PREFIX).values())
        writer.checkpoint.client = redis_srv.client()  # the writer reconnects too
        writer.batch({1: [fill("S3", B, "BUY", 10, 47.0, ts=T0 + 40, fill_id="f8",
                               source="live")]})
        update = reader.next("update")
        live = {d["portfolio_id"]: d for d in update.data["portfolios"]}
        assert live["live_S3"]["total_realized_pnl"] == 30.0  # short 10 @ 50, cover @ 47
        assert get(server.url, "/api/portfolios").status_code == 200
        assert server.proc.poll() is None
    finally:
        reader.close()
        server.stop()


# ------------------------------------------------------------------ security
def test_bind_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    done = subprocess.run([PM_POLARS, "serve", "--host", "127.0.0.2", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--auth-token" in done.stderr and "PM_SERVE_AUTH_TOKEN" in done.stderr


def test_token_guards_every_data_route(book: tuple[RedisServer, str], tmp_path: Path) -> None:
    srv, _ = book
    config = tmp_path / "serve.toml"
    config.write_text('[serve]\nauth_token = "s3cret"\ncors_origins = ["http://desk.example"]\n')
    server = ServeProcess(["serve", "--redis-url", srv.url, "--key-prefix", PREFIX,
                           "--host", "127.0.0.2", "--config", str(config)],
                          tmp_path / "auth.log", host="127.0.0.2").wait_ready()
    try:
        for path in ("/api/portfolios", "/api/stream", "/healthz", "/metrics", "/openapi.json"):
            r = get(server.url, path)
            assert r.status_code == 401, path
            assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        assert get(server.url, "/api/aum", headers={"Authorization": "Bearer wrong"}
                   ).status_code == 401
        ok = get(server.url, "/api/aum", headers={"Authorization": "Bearer s3cret",
                                                  "Origin": "http://desk.example"})
        assert ok.status_code == 200 and ok.json()["total"] == pytest.approx(3_000_246.5)
        assert ok.headers["access-control-allow-origin"] == "http://desk.example"
        preflight = httpx.options(server.url + "/api/aum", timeout=5, headers={
            "Origin": "http://desk.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-origin" not in get(  # not for other origins
            server.url, "/api/aum", headers={"Authorization": "Bearer s3cret",
                                             "Origin": "http://evil.example"}).headers
        page = get(server.url, "/")  # the page holds no data; it asks for the token
        assert page.status_code == 200 and 'id="login"' in page.text
    finally:
        server.stop()


def test_hung_redis_is_reported_and_never_hangs_the_server(redis_srv: RedisServer,
                                                           tmp_path: Path) -> None:
    publish_book(redis_srv.client())
    server = serve(redis_srv.url, tmp_path)
    reader = SSEReader(server.url + "/api/stream")
    assert redis_srv.proc is not None
    try:
        reader.next("snapshot")
        redis_srv.proc.send_signal(signal.SIGSTOP)  # alive, accepting, never answering
        try:
            r = get(server.url, "/api/aum")  # the read times out (2 s): 503, not a hang
            assert r.status_code == 503 and r.json()["error"] == "source_unavailable"
            assert reader.next("status", timeout=15).data["source"] == "down"
        finally:
            redis_srv.proc.send_signal(signal.SIGCONT)
        assert reader.next("status", timeout=15).data["source"] == "up"
        assert reader.next("snapshot").data["aum"]["total"] == pytest.approx(3_000_246.5)
    finally:
        reader.close()
        server.stop()
