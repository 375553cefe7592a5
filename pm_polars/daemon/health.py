"""``/metrics`` (Prometheus text) and ``/healthz`` on one small HTTP server thread.

``/healthz`` answers 200 while the loop is live (its last iteration is younger than
``timeout_s``), 503 otherwise; the body is JSON ``{"status", "last_iteration_age_s",
"redis", "kafka"}`` for humans.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pm_polars.daemon.metrics import Metrics

log = logging.getLogger(__name__)


class Liveness:
    """Heartbeat of the main loop plus coarse dependency status."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.last = time.monotonic()
        self.redis = "unknown"
        self.kafka = "unknown"

    def beat(self) -> None:
        self.last = time.monotonic()

    def report(self) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.last
        ok = age < self.timeout_s
        return ok, {"status": "ok" if ok else "stale", "last_iteration_age_s": round(age, 3),
                    "redis": self.redis, "kafka": self.kafka}


class HealthServer:
    """Serves ``/metrics`` and ``/healthz`` until :meth:`close`."""

    def __init__(self, host: str, port: int, metrics: Metrics, liveness: Liveness) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?")[0]
                if path == "/metrics":
                    body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif path == "/healthz":
                    ok, info = liveness.report()
                    body, status = json.dumps(info).encode(), 200 if ok else 503
                    ctype = "application/json"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("http " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="pm-http",
                                       daemon=True)
        self.thread.start()
        log.info("event=http_listening host=%s port=%d paths=/metrics,/healthz", host, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
