"""``pm-polars serve``: a read-only HTTP API and a live dashboard over the published read model.

Modules, one per concern:

* :mod:`~pm_polars.serve.source`  where documents come from: Redis (what ``pm-polars run``
  publishes) or :mod:`~pm_polars.serve.memory` (``pm-polars demo --serve``), one async
  interface;
* :mod:`~pm_polars.serve.stream`  the ``/api/stream`` hub: one reader of the updates
  channel fanning Server-Sent Events out to every client (full refresh on connect);
* :mod:`~pm_polars.serve.app`     the FastAPI app: JSON routes, ``/healthz``, ``/metrics``,
  the page and its vendored assets;
* :mod:`~pm_polars.serve.auth`    settings, the bind rule and the bearer-token check;
* :mod:`~pm_polars.serve.metrics` Prometheus metrics of the server;
* :mod:`~pm_polars.serve.models`  typed response models (OpenAPI at ``/docs``);
* :mod:`~pm_polars.serve.runner`  uvicorn;  ``assets/``  the page (HTML, CSS, JS, the chart),
  vendored: nothing is fetched from elsewhere.

Documents are served as published (the JSON text of ``portfolio:{id}`` is copied into the
response, never re-encoded), so every field and digit is the writer's. Units as in
:mod:`pm_polars.client.models`: money in account currency, prices per unit, ts ns UTC.
"""
