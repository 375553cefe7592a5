"""Prometheus metrics of the server (``GET /metrics``), in a registry of its own per app.

* ``pm_serve_requests_total{method,route,status}``   HTTP requests by route template;
* ``pm_serve_stream_clients``                         open ``/api/stream`` connections;
* ``pm_serve_stream_events_total{event}``             SSE events queued to clients;
* ``pm_serve_stream_dropped_total``                   clients cut off for not keeping up;
* ``pm_serve_push_latency_seconds``                   writer's batch clock (the update
  message's ``ts``) -> the event queued to the clients, in seconds;
* ``pm_serve_source_up``                              1 when the read model is readable.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServeMetrics:
    """The server's metrics; a fresh registry so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pm_serve_requests_total", "HTTP requests served",
                                ["method", "route", "status"], registry=r)
        self.stream_clients = Gauge("pm_serve_stream_clients",
                                    "open /api/stream connections", registry=r)
        self.stream_events = Counter("pm_serve_stream_events_total",
                                     "SSE events queued to clients", ["event"], registry=r)
        self.dropped = Counter("pm_serve_stream_dropped_total",
                               "stream clients cut off because their queue was full", registry=r)
        self.push_latency = Histogram(
            "pm_serve_push_latency_seconds",
            "update message ts (writer's batch clock) -> event queued to stream clients",
            buckets=LATENCY_BUCKETS, registry=r)
        self.source_up = Gauge("pm_serve_source_up", "1 when the read model can be read",
                               registry=r)
