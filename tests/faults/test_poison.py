"""Bad input: every malformed shape in ``support.poison`` goes to the dead-letter topic with
a reason, is counted in the metrics, and crashes nothing; the valid records around them
(including odd-but-valid ones: extra fields of any shape, no ``fee``, lower-case side) are
all applied exactly as the reference engine applies them.
"""

from __future__ import annotations

import random

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from support import KafkaBroker, RedisServer
from support.chaos import (
    DEAD,
    Daemons,
    Item,
    Names,
    build_stream,
    check_equal,
    ends,
    headers_of,
    poison_items,
    produce_items,
    read_dead_letters,
    scrape,
    stored,
    wait_caught_up,
)
from support.daemon import wait_for
from support.poison import catalogue, oversized
from support.ports import free_port

from pm_polars.events import decode_messages

pytestmark = pytest.mark.integration


def _stream_with(names: Names, poisons: list[Item], n: int, seed: int) -> list[Item]:
    """``n`` clean feed records (odd-but-valid ones included) with ``poisons`` scattered."""
    rng = random.Random(seed)
    items = list(build_stream(names, n, seed=seed, malformed_rate=0.0, poison_rate=0.0,
                              redeliver_rate=0.0).items)
    for p in poisons:
        items.insert(rng.randrange(1, len(items)), p)
    return items


def test_catalogue_dead_lettered_with_reasons_counted_and_valid_records_applied(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons
) -> None:
    poisons = catalogue(large=True)
    assert len(poisons) >= 80
    rng = random.Random(5)
    items = _stream_with(names, poison_items(names, poisons, rng), 4_000, seed=21)
    produce_items(broker.bootstrap, items)
    port = free_port()
    daemon = daemons.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                           "--max-events", "500")
    client = redis_srv.client()

    wait_caught_up(client, names, items, diagnose=daemons.tail)
    check_equal(client, names, items, diagnose=daemons.tail)  # odd-but-valid ones included
    assert client.exists("portfolio:paper_Odd_S")
    assert not client.exists("portfolio:paper_Poison_S")  # no poison fill was applied

    dlq = read_dead_letters(broker.bootstrap, names, items)
    assert not dlq.problems, "\n".join(dlq.problems)
    assert dlq.unique == dlq.total == len(poisons)  # no crash, so each exactly once
    width = max(len(p.name) for p in poisons)
    for p in poisons:
        print(f"{p.name:<{width}}  {dlq.reasons[p.name][:110]}")

    labels = [i.label for i in items]
    metrics = scrape(port)
    assert metrics['pm_events_total{type="reject"}'] == len(poisons)
    assert metrics["pm_dlq_records_total"] == len(poisons)
    assert metrics['pm_events_total{type="fill"}'] == labels.count("fill") + labels.count("odd")
    assert metrics['pm_events_total{type="duplicate"}'] == labels.count("duplicate")
    assert metrics['pm_events_total{type="tick"}'] == labels.count("tick")
    assert daemon.alive() and daemon.terminate() == 0
    assert "Traceback" not in daemon.log()


def test_record_over_1_mib_is_dead_lettered_not_fatal(
    broker: KafkaBroker, redis_srv: RedisServer, names: Names, daemons: Daemons
) -> None:
    rng = random.Random(9)
    huge = poison_items(names, oversized()[:1], rng)  # a fill whose signal_type is 1 MiB
    items = _stream_with(names, huge, 600, seed=4)
    produce_items(broker.bootstrap, items)  # our producer allows 8 MiB; so does the broker
    daemon = daemons.start()
    client = redis_srv.client()

    def done() -> bool:
        return not daemon.alive() or stored(client, names) == ends(items, names)

    wait_for("catch-up or exit", done, timeout=60, diagnose=daemons.tail)
    assert daemon.alive(), daemons.tail()
    check_equal(client, names, items)
    # the oversized record is in the DLQ (its value may be cut to fit), with its reason
    want = next(i for i in items if i.label in DEAD)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x",
                         "fetch.message.max.bytes": 16 << 20})
    try:
        parts = consumer.list_topics(names.dlq, timeout=5).topics[names.dlq].partitions
        consumer.assign([TopicPartition(names.dlq, p, OFFSET_BEGINNING) for p in parts])
        msgs = [m for m in consumer.consume(100, timeout=5) if m.error() is None]
    finally:
        consumer.close()
    [dead] = msgs
    headers = headers_of(dead)
    assert (headers["topic"], int(headers["partition"]), int(headers["offset"])) == \
        (want.topic, want.partition, want.offset)
    assert "signal_type" in headers["reason"]
    assert want.value is not None and want.value.startswith(dead.value() or b"")


def test_reject_reason_does_not_depend_on_the_rest_of_the_batch() -> None:
    by_name = {p.name: p.value for p in catalogue()}
    pair = [by_name["quantity_fraction"], by_name["token_beyond_int64"]]
    alone = [decode_messages([v]).rejects["reason"].to_list() for v in pair]
    together = decode_messages(pair).rejects["reason"].to_list()
    assert alone == [["quantity: must be an integer, got 1.5"],
                     ["instrument_token: out of range for a 64-bit integer, got "
                      "18446744073709551616"]]
    assert together == [a[0] for a in alone]


def test_whole_catalogue_in_one_batch_gets_the_reasons_each_gets_alone() -> None:
    values = [p.value for p in catalogue()]
    alone = [decode_messages([v]).rejects["reason"].to_list() for v in values]
    together = decode_messages(values).rejects
    by_seq = dict(zip(together["seq"].to_list(), together["reason"].to_list(), strict=True))
    assert [by_seq.get(i) for i in range(len(values))] == [a[0] if a else None for a in alone]
