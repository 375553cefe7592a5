"""Prometheus metrics of the daemon: every name is defined here, once.

Each :class:`Metrics` owns its own registry (several daemons can live in one test process).
Durations are in seconds. The event -> Redis latency histogram is fed per batch with
vectorised bucket counts (``observe_many``), not one Python call per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

import numpy as np
import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

EVENTS: Final = "pm_events_total"
BATCHES: Final = "pm_batches_total"
BATCH_STAGE_SECONDS: Final = "pm_batch_stage_seconds"
EVENT_TO_REDIS_SECONDS: Final = "pm_event_to_redis_seconds"
CONSUMER_LAG: Final = "pm_consumer_lag_records"
DLQ_RECORDS: Final = "pm_dlq_records_total"
REBALANCES: Final = "pm_rebalances_total"
PARTITION_CONFLICTS: Final = "pm_partition_conflicts_total"
FILL_CONFLICTS: Final = "pm_fill_conflicts_total"
ASSIGNED_PARTITIONS: Final = "pm_assigned_partitions"
REDIS_ERRORS: Final = "pm_redis_errors_total"
KAFKA_ERRORS: Final = "pm_kafka_errors_total"
STALE_WRITES: Final = "pm_stale_partition_writes_total"
LAST_ITERATION: Final = "pm_loop_last_iteration_timestamp_seconds"

EventType = Literal["fill", "tick", "reject", "duplicate"]
Stage = Literal["collect", "decode", "apply", "redis", "commit", "sinks"]
RebalanceKind = Literal["assign", "revoke", "lost"]

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06,
    0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
)


class BulkHistogram(Collector):
    """A histogram fed with whole columns; exported like a Prometheus ``Histogram``."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        self.name, self.doc = name, doc
        self.bounds = pl.Series("le", buckets, dtype=pl.Float64)
        self.edges = np.asarray(buckets, dtype=np.float64)
        self.counts = [0] * (len(buckets) + 1)  # last: +Inf
        self.total = 0.0

    def observe_many(self, values: pl.Series) -> None:
        """Count every value (seconds) of ``values`` into its bucket."""
        values = values.cast(pl.Float64)
        if values.null_count():
            values = values.drop_nulls()
        if values.len() == 0:
            return
        # numpy, not Series.search_sorted/value_counts: those run a Polars query each
        idx = np.searchsorted(self.edges, values.to_numpy(), side="left")
        for i, n in enumerate(np.bincount(idx, minlength=len(self.counts)).tolist()):
            self.counts[i] += n
        self.total += float(values.sum())

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cum = self.cumulative()
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cum, strict=False)]
        buckets.append(("+Inf", float(cum[-1])))
        yield HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.total)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (for logs and the bench)."""
        cum = self.cumulative()
        if cum[-1] == 0:
            return float("nan")
        for bound, c in zip(self.bounds, cum, strict=False):
            if c >= q * cum[-1]:
                return float(bound)
        return float("inf")


class Metrics:
    """All daemon metrics, registered in ``self.registry``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(EVENTS, "records processed, by type", ["type"], registry=r)
        self.batches = Counter(BATCHES, "micro-batches written to Redis", registry=r)
        self.stage_seconds = Histogram(
            BATCH_STAGE_SECONDS, "time per batch and stage", ["stage"], buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.event_to_redis = BulkHistogram(
            EVENT_TO_REDIS_SECONDS, "event time (ts) to the Redis EXEC that published it",
            LATENCY_BUCKETS,
        )
        r.register(self.event_to_redis)
        self.consumer_lag = Gauge(
            CONSUMER_LAG, "high watermark minus next offset", ["topic", "partition"], registry=r
        )
        self.dlq_records = Counter(DLQ_RECORDS, "records sent to the dead-letter topic",
                                   registry=r)
        self.rebalances = Counter(REBALANCES, "partition assignment changes", ["kind"],
                                  registry=r)
        self.partition_conflicts = Counter(
            PARTITION_CONFLICTS, "portfolios seen on a second partition (not merged)", registry=r
        )
        self.fill_conflicts = Counter(
            FILL_CONFLICTS, "fills refused: a fill_id re-sent with other content (the first "
            "version kept)", registry=r)
        self.assigned = Gauge(ASSIGNED_PARTITIONS, "fill partitions owned", registry=r)
        self.redis_errors = Counter(REDIS_ERRORS, "failed Redis operations (retried)",
                                    registry=r)
        self.kafka_errors = Counter(KAFKA_ERRORS, "Kafka client errors", registry=r)
        self.stale_writes = Counter(
            STALE_WRITES, "batches refused because another owner advanced a partition",
            registry=r,
        )
        self.last_iteration = Gauge(LAST_ITERATION, "unix time of the last loop iteration",
                                    registry=r)

    def count_events(self, kind: EventType, n: int) -> None:
        if n:
            self.events.labels(type=kind).inc(n)

    def stage(self, stage: Stage, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def forget_lag(self, topic: str, partition: int) -> None:
        """Drop a released partition's lag series (its new owner reports it)."""
        try:
            self.consumer_lag.remove(topic, str(partition))
        except KeyError:
            pass

    def rebalance(self, kind: RebalanceKind) -> None:
        self.rebalances.labels(kind=kind).inc()
