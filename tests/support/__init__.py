"""Test helpers that start real services: a tansu Kafka broker and a redis-server.

Import as ``from support import ...`` (``tests/conftest.py`` puts ``tests/`` on sys.path).

Both run as subprocesses on free local ports, are SIGKILLed on teardown and can be
restarted on the same port. See ``kafka_broker`` and ``redis_server``.
"""

from .kafka_broker import (
    KafkaBroker,
    consume_all,
    create_topics,
    kafka_broker,
    produce,
)
from .redis_server import RedisServer, redis_server

__all__ = [
    "KafkaBroker",
    "RedisServer",
    "consume_all",
    "create_topics",
    "kafka_broker",
    "produce",
    "redis_server",
]
