"""The one set of pytest fixtures for tests against real services (loaded by
``tests/conftest.py`` as a plugin; import types from here, never from a conftest).

One tansu broker per session (topics, groups and key prefixes are unique per test, see
:class:`~support.names.Names`; a test that restarts a broker starts its own), one
redis-server per test (AOF with fsync always, so a crash of Redis loses no acknowledged
write). Daemons run as subprocesses and are killed at teardown: ``start_daemon`` for
single daemons (``support.daemon``), ``daemons`` for the fault suite's groups with short
sessions (``support.chaos``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .chaos import Daemons
from .daemon import DaemonProcess
from .kafka_broker import KafkaBroker, kafka_broker
from .names import Names
from .redis_cluster import RedisClusterNodes, redis_cluster
from .redis_server import RedisServer

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker]:
    with kafka_broker() as b:
        yield b


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis-data"
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory=directory, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cluster_nodes(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of 3 masters + 3 replicas (``support.redis_cluster``)."""
    directory = tmp_path / "redis-cluster"
    directory.mkdir(parents=True, exist_ok=True)
    with redis_cluster(directory) as nodes:
        yield nodes


@pytest.fixture
def names(broker: KafkaBroker) -> Names:
    """Unique topics (3 partitions per fill topic, 2 for ticks), created on the broker."""
    n = Names("t" + uuid.uuid4().hex[:10])
    n.create(broker.bootstrap)
    return n


@pytest.fixture
def topics(names: Names) -> Names:
    """``names`` (its topics exist): the name the daemon integration tests use."""
    return names


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


@pytest.fixture
def daemons(broker: KafkaBroker, redis_srv: RedisServer, names: Names,
            tmp_path: Path) -> Iterator[Daemons]:
    """Fault-suite daemons of this test's group (short sessions), SIGKILLed at teardown."""
    d = Daemons(broker.bootstrap, redis_srv.url, names, tmp_path)
    try:
        yield d
    finally:
        d.kill_all()
