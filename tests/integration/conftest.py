"""Fixtures for daemon integration tests: a real tansu broker and a real redis-server.

One broker per session (topics, groups and key prefixes are unique per test, see
:class:`Names`), one redis-server per test (AOF with fsync always, so a crash of Redis
loses no acknowledged write). Daemons run as subprocesses and are killed at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support import KafkaBroker, RedisServer, kafka_broker
from support.daemon import DaemonProcess
from support.names import STARTING_CASH, Names

from pm_polars import PortfolioEngine
from pm_polars.demo.feed import generate_messages

Record = tuple[str, bytes | None, bytes | None]
__all__ = ["STARTING_CASH", "Names", "Record", "StartDaemon", "feed", "reference"]


def feed(names: Names, n: int, *, seed: int = 7, fill_rate: float = 0.3,
         **kwargs: object) -> list[Record]:
    """The demo feed with this test's topic names: ``(topic, key, value)``."""
    return [(names.topic(m.topic), m.key, m.value)
            for m in generate_messages(seed, n, fill_rate=fill_rate, **kwargs)]  # type: ignore[arg-type]


def reference(records: Sequence[Record]) -> PortfolioEngine:
    """The in-process engine applied to the same records in produce order."""
    eng = PortfolioEngine(starting_cash=STARTING_CASH)
    eng.apply([value for _, _, value in records])
    return eng


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker]:
    with kafka_broker() as b:
        yield b


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory=tmp_path / "redis-data")
    server.directory.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def names() -> Names:
    return Names("t" + uuid.uuid4().hex[:10])


@pytest.fixture
def topics(broker: KafkaBroker, names: Names) -> Names:
    """Creates the paper/live fill topics and the ticks topic of ``names``."""
    names.create(broker.bootstrap)
    return names


StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path
) -> Iterator[StartDaemon]:
    """``start_daemon(*extra_args)`` -> a running daemon of this test's group."""
    started: list[DaemonProcess] = []

    def start(*extra: str) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        proc = DaemonProcess(broker.bootstrap, redis_srv.url, log_path,
                             args=names.daemon_args(*extra))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
