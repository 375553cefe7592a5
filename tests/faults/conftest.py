"""Fixtures of the fault suite: one tansu broker per session (a test that restarts a broker
gets its own), one redis-server per test (AOF, fsync always), unique names per test.

Daemons run as subprocesses with short group sessions (``support.chaos.FAST_KAFKA``) so a
kill -9 is noticed in seconds; every daemon a test started is SIGKILLed at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import KafkaBroker, RedisServer, kafka_broker
from support.chaos import Daemons, Names


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker]:
    with kafka_broker() as b:
        yield b


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis-data"
    directory.mkdir()
    server = RedisServer(directory=directory, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def names(broker: KafkaBroker) -> Names:
    """Unique topics (3 partitions per fill topic, 2 for ticks), created on the broker."""
    n = Names("f" + uuid.uuid4().hex[:10])
    n.create(broker.bootstrap)
    return n


@pytest.fixture
def daemons(broker: KafkaBroker, redis_srv: RedisServer, names: Names,
            tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(broker.bootstrap, redis_srv.url, names, tmp_path)
    try:
        yield d
    finally:
        d.kill_all()
