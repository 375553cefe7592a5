"""The daemon's thin loop: collect a micro-batch, process it, repeat; stop cleanly.

Wiring: ``FillsSource`` (group, pattern, cooperative-sticky) and ``TicksSource`` (all tick
partitions, no group) feed the ``MicroBatcher``; ``BatchStep`` applies and checkpoints;
``Book`` holds one engine for all owned partitions (state stays per partition in Redis). Exit codes: 0 after SIGTERM/SIGINT
(current batch written and committed), 3 reject ratio exceeded, 4 stopped while Redis/Kafka
stayed unreachable (nothing written; the batch is re-read on restart), 1 unexpected error.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pm_polars.archive.sink import ArchiveSink
from pm_polars.daemon.book import Book
from pm_polars.daemon.checkpoint.store import Checkpoint
from pm_polars.daemon.config import Settings, redacted
from pm_polars.daemon.health import HealthServer, Liveness
from pm_polars.daemon.kafka.alert_out import AlertDeliveryError, AlertProducer
from pm_polars.daemon.kafka.clients import consumer_config, producer_config
from pm_polars.daemon.kafka.dlq import DeadLetters, RejectGuard, RejectRatioExceeded
from pm_polars.daemon.kafka.fills import FillsSource
from pm_polars.daemon.kafka.microbatch import MicroBatcher, RawBatch
from pm_polars.daemon.kafka.ticks import TicksSource
from pm_polars.daemon.metrics import Metrics
from pm_polars.daemon.retry import Abandoned, Backoff
from pm_polars.daemon.sinks import Sink, Sinks
from pm_polars.daemon.step import BatchStep
from pm_polars.daemon.tick_table import TickTable
from pm_polars.engine.instruments import load_instruments
from pm_polars.publish.keys import Keys
from pm_polars.types import TP

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_REJECTS, EXIT_ABANDONED = 0, 1, 3, 4
LAG_INTERVAL_S = 1.0


def redis_client(settings: Settings) -> redis.Redis:
    """Client for ``redis_url`` (TLS with rediss://); retries are the daemon's own."""
    extra = {} if settings.redis_password is None else {"password": settings.redis_password}
    return redis.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_timeout=5.0,
        socket_connect_timeout=3.0, retry=Retry(NoBackoff(), 0), **extra,
    )


class Daemon:
    """``pm-polars run``: Kafka -> micro-batches -> engines -> Redis."""

    def __init__(self, settings: Settings, sinks: list[Sink] | None = None) -> None:
        self.settings = s = settings
        self.metrics = Metrics()
        self.liveness = Liveness(s.health_timeout)
        self.sinks = Sinks(sinks)
        self.stop_event = threading.Event()
        self.backoff = Backoff(self.stop_event.is_set, self._beat)
        self.redis = redis_client(s)
        self.checkpoint = Checkpoint(self.redis, Keys(s.key_prefix), s.group_id, s.ticks_topic)
        self.instruments = load_instruments(s.instruments)
        self.pending = RawBatch()
        self.book: Book | None = None
        self.archive: ArchiveSink | None = None
        if s.archive_root is not None:
            self.archive = ArchiveSink(s.archive_root, s.group_id, roll_rows=s.archive_roll_events,
                                       roll_s=s.archive_roll_s)
            self.sinks.register(self.archive)

    # ------------------------------------------------------------------ control
    def request_stop(self, *_: object) -> None:
        if not self.stop_event.is_set():
            log.info("event=stop_requested action=finish_current_batch")
        self.stop_event.set()

    def _beat(self) -> None:
        self.liveness.beat()
        self.metrics.last_iteration.set(time.time())

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------ ownership
    def assigned(self, tps: list[TP]) -> dict[TP, int | None]:
        assert self.book is not None
        book = self.book
        return self.backoff.call("load partitions", lambda: book.load(tps), (redis.RedisError,))

    def revoked(self, tps: list[TP], lost: bool) -> None:
        dropped = self.pending.drop(tps)
        if self.book is not None:
            self.book.drop(tps)
        log.info("event=partitions_released lost=%s abandoned_records=%d", lost, dropped)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        s = self.settings
        log.info("event=starting settings=%s", redacted(s))
        self._install_signals()
        http = HealthServer(s.metrics_host, s.metrics_port, self.metrics, self.liveness) \
            if s.metrics_port else None
        fills: FillsSource | None = None
        ticks: TicksSource | None = None
        try:
            offsets, prices = self.backoff.call("load tick state", self.checkpoint.load_ticks,
                                                (redis.RedisError,))
            self.liveness.redis = "ok"
            table = TickTable.from_prices(prices)
            roll = self.backoff.call("load the trading day", self.checkpoint.load_roll,
                                     (redis.RedisError,))
            self.book = Book(self.checkpoint, table, config=s.engine_config(),
                             instruments=self.instruments,
                             tick_publish_ns=int(s.tick_publish_ms * 1e6), roll=roll,
                             alerts=s.alerts)
            if self.archive is not None:
                self._start_archive(self.archive, self.book)
            base = consumer_config(s.bootstrap_servers, s.group_id, s.kafka)
            ticks = TicksSource({**base, "group.id": f"{s.group_id}.ticks.unjoined"},
                                s.ticks_topic, s.ticks_start, offsets, self.metrics)
            ticks.start()
            fills = FillsSource(base, s.fills_pattern, self, self.metrics)
            dead_letters = DeadLetters(producer_config(s.bootstrap_servers, s.kafka), s.dlq_topic)
            alert_out = None
            if s.alerts is not None:
                alert_out = AlertProducer(producer_config(s.bootstrap_servers, s.kafka),
                                          s.alerts.topic, self.checkpoint)
                self.backoff.call("produce pending alerts", alert_out.drain,
                                  (redis.RedisError, AlertDeliveryError))
            step = BatchStep(
                book=self.book, checkpoint=self.checkpoint, fills=fills,
                dead_letters=dead_letters,
                guard=RejectGuard(s.max_reject_ratio, s.reject_window), sinks=self.sinks,
                metrics=self.metrics, backoff=self.backoff, ticks_topic=s.ticks_topic,
                alerts=alert_out,
            )
            batcher = MicroBatcher(fills, ticks, s.max_events, s.max_wait_ms / 1000,
                                   owned=fills.owned)
            self._loop(batcher, step, fills, ticks)
            fills.commit({tp: info.offset for tp, info in self.book.parts.items()
                          if info.offset is not None}, asynchronous=False)
            dead_letters.close()
            if alert_out is not None:
                alert_out.close()
            code = EXIT_OK
        except RejectRatioExceeded as exc:
            log.error("event=stopping reason=reject_ratio detail=%s", exc)
            code = EXIT_REJECTS
        except Abandoned as exc:
            log.error("event=stopping reason=dependency_unreachable detail=%s", exc)
            code = EXIT_ABANDONED
        except Exception:
            log.exception("event=stopping reason=unexpected_error")
            code = EXIT_ERROR
        finally:
            self._close(fills, ticks, http)
        log.info("event=stopped exit_code=%d", code)
        return code

    def _start_archive(self, archive: ArchiveSink, book: Book) -> None:
        """Engine settings to the archive; rows of dead daemons' staging segments in."""
        rows = self.backoff.call(
            "archive start", lambda: archive.start(book.engine, self.checkpoint.committed_offsets),
            (redis.RedisError, OSError))
        log.info("event=archive_ready root=%s recovered_rows=%d", archive.root, rows)

    def _loop(self, batcher: MicroBatcher, step: BatchStep, fills: FillsSource,
              ticks: TicksSource) -> None:
        assert self.book is not None
        next_lag = 0.0
        stopping = self.stop_event.is_set
        while True:
            self._beat()
            ticks.refresh()
            t0 = time.perf_counter()
            batch = batcher.collect(self.pending, stopping)
            if len(batch):
                self.metrics.stage("collect", time.perf_counter() - t0)
            if len(batch) or self.book.any_republish() or self.book.views.due(time.time_ns()):
                self.pending = RawBatch()
                step.process(batch)
                self.liveness.redis = "ok"
            elif stopping():
                return
            self.sinks.maintain()
            now = time.monotonic()
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL_S
                owned = {tp: info.offset for tp, info in self.book.parts.items()}
                for (t, p), lag in fills.lag(owned).items():
                    self.metrics.consumer_lag.labels(topic=t, partition=str(p)).set(lag)

    def _close(self, fills: FillsSource | None, ticks: TicksSource | None,
               http: HealthServer | None) -> None:
        for what, close in (("fills consumer", fills.close if fills else None),
                            ("ticks consumer", ticks.close if ticks else None),
                            ("sinks", self.sinks.close),
                            ("http", http.close if http else None)):
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.exception("event=close_failed what=%s", what)
