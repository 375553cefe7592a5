"""Input trust end to end (issue 11): hostile records through the daemon.

A clean feed with records of every trust class mixed in, each of which the engine accepted
before (wrong state, no error) or crashed on: a far-future ``ts``, a ``ts`` in seconds, an
ambiguous source, a strategy named ``Overall``, token 0, a wrapping quantity, an
overflowing price, a quantity float64 rounds, a conflicting re-send of an applied fill id,
a fill older than the dedupe window. Each must reach the dead-letter topic with its
reason (byte-identical, keyed by topic/partition/offset), the published state must equal
the engine applied to the valid records only, and the daemon must keep running.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from support import KafkaBroker, RedisServer
from support.chaos import (
    Daemons,
    Item,
    Names,
    build_stream,
    check_equal,
    produce_items,
    read_dead_letters,
    scrape,
    wait_caught_up,
)
from support.ports import free_port

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def _fill(source: str, strategy: str, fill_id: str, ts: int, **over: object) -> bytes:
    event: dict[str, object] = {
        "event_type": "order_fill", "source": source, "fill_id": fill_id, "ts": ts,
        "quantity": 5, "fill_price": 100.0, "fee": 1.0,
        "original_signal": {"strategy_id": strategy, "instrument_token": 256265,
                            "signal_type": "BUY"}}
    event.update(over)
    return json.dumps(event).encode()


def _hostile(names: Names, items: list[Item]) -> list[Item]:
    fills = [i for i in items if i.label == "fill"]
    first = json.loads(fills[0].value or b"{}")
    t0 = int(first["ts"])
    now_ms = time.time_ns() // 10**6
    paper = names.fills("paper")

    def bad(name: str, value: bytes, expect: str, topic: str = paper,
            key: bytes | None = b"paper_Hostile") -> Item:
        return Item(topic, key, value, "poison", expect=expect, name=name)

    conflict = json.loads(fills[1].value or b"{}")
    conflict["quantity"] = int(conflict["quantity"]) + 1
    return [
        bad("far_future_fill", _fill("paper", "Hostile", "h1", now_ms + 2 * DAY_MS),
            "max_skew 5m ahead of this host's clock"),
        bad("far_future_tick", json.dumps({"event_type": "market_tick",
                                           "instrument_token": 256265, "last_price": 1.0,
                                           "ts": now_ms + 365 * DAY_MS}).encode(),
            "max_skew", topic=names.ticks, key=b"256265"),
        bad("ts_in_seconds", _fill("paper", "Hostile", "h2", t0 // 1000),
            "ts: must be epoch milliseconds"),
        bad("ambiguous_source", _fill("paper_x", "Hostile", "h3", t0),
            "source: must be 1-64 characters"),
        bad("overall_strategy", _fill("paper", "Overall", "h4", t0),
            "reserved for the aggregate rows", key=b"paper_Overall"),
        bad("token_zero", json.dumps({"event_type": "market_tick", "instrument_token": 0,
                                      "last_price": 1.0, "ts": t0}).encode(),
            "instrument_token: must be a positive integer", topic=names.ticks, key=b"0"),
        bad("wrapping_quantity", _fill("paper", "Hostile", "h5", t0, quantity=2**63 - 1),
            "quantity: must be at most 1000000000000 units"),
        bad("overflowing_price", _fill("paper", "Hostile", "h6", t0, fill_price=1e307),
            "fill_price: must be at most 1e+12 per unit, got 1e+307"),
        bad("rounded_quantity",
            _fill("paper", "Hostile", "h7", t0).replace(b'"quantity": 5',
                                                        b'"quantity": 5.000000000000001'),
            "quantity: must be an integer, got 5.000000000000001"),
        bad("conflicting_resend", json.dumps(conflict).encode(),
            "fill_id: conflicts with the fill already applied", topic=fills[1].topic,
            key=fills[1].key),
        bad("older_than_window", _fill("paper", "Hostile", "h8", t0 - 3 * DAY_MS),
            "older than the dedupe window (dedupe_retention 1d)"),
    ]


def test_hostile_records_are_dead_lettered_with_reasons_and_change_nothing(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons
) -> None:
    stream = build_stream(names, 1_500, seed=11, malformed_rate=0.0, poison_rate=0.0,
                          redeliver_rate=0.0, oddities=False)
    items = list(stream.items)
    hostile = _hostile(names, items)
    rng = random.Random(3)
    for item in hostile[:-2]:  # anywhere in the stream
        items.insert(rng.randrange(len(items) // 2, len(items)), item)
    items += hostile[-2:]  # after the fill they re-send / after the clock moved on
    produce_items(broker.bootstrap, items)
    port = free_port()
    daemon = daemons.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                           "--max-events", "200")
    client = redis_srv.client()
    wait_caught_up(client, names, items, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)  # = the valid records alone
    assert not client.exists("portfolio:paper_Hostile")
    dlq = read_dead_letters(broker.bootstrap, names, items)
    assert not dlq.problems, "\n".join(dlq.problems)
    assert dlq.unique == len(hostile)
    metrics = scrape(port)
    assert metrics["pm_dlq_records_total"] == len(hostile)
    assert metrics["pm_fill_conflicts_total"] == 1
    assert daemon.alive() and daemon.terminate() == 0
    assert "Traceback" not in daemon.log()
