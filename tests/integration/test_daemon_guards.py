"""Guards: the reject-ratio limit stops a bad deploy; a portfolio's fill on a second
partition is reported (log, metric, dead letter with the reason), never merged."""

from __future__ import annotations

import json

import pytest
from support import KafkaBroker, RedisServer, consume_all, produce
from support.daemon import wait_for
from support.feeds import feed
from support.fixtures import StartDaemon
from support.kafka_broker import headers as record_headers
from support.names import Names

pytestmark = pytest.mark.integration


def test_reject_ratio_exceeded_stops_with_exit_3_before_dead_lettering(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    good = feed(names, 300, malformed_rate=0.0)
    garbage = [(names.fills("paper"), b"k", b"{not json %d" % i) for i in range(1_500)]
    produce(broker.bootstrap, good)
    daemon = start_daemon("--max-events", "2000")
    produce(broker.bootstrap, garbage)
    code = daemon.wait(timeout=60)
    assert code == 3, daemon.log()[-2000:]
    assert "reason=reject_ratio" in daemon.log()
    assert "records are invalid" in daemon.log()
    # the bad batch was not dead-lettered (only what passed the guard could be)
    with pytest.raises(TimeoutError):
        consume_all(broker.bootstrap, names.dlq, 1_000, timeout=2)


def test_fill_on_a_second_partition_is_refused_not_merged(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    topic = names.fills("paper")

    def fill(fid: str, qty: int) -> bytes:
        return json.dumps({
            "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
            "fill_price": 100.0, "ts": 1_795_600_000_000,
            "original_signal": {"strategy_id": "S1", "instrument_token": 1,
                                "signal_type": "BUY"},
        }).encode()

    produce(broker.bootstrap, [(topic, b"paper_S1", fill("a", 10))], partition_of={topic: 0})
    client = redis_srv.client()
    daemon = start_daemon()
    wait_for("first fill", lambda: client.hget(f"pm:owner:{names.group}", "paper_S1"))
    produce(broker.bootstrap, [(topic, b"paper_S1", fill("b", 5))], partition_of={topic: 1})
    wait_for("conflict reported", lambda: "event=partition_conflict" in daemon.log(),
             diagnose=lambda: daemon.log()[-2000:])
    assert client.hget(f"pm:owner:{names.group}", "paper_S1") == f"{topic}:0"
    [dead] = consume_all(broker.bootstrap, names.dlq, 1)
    headers = record_headers(dead)
    assert f"belongs to partition {topic}:0" in headers["reason"]
    assert headers["partition"] == "1" and dead.value() == fill("b", 5)
    # the portfolio's book is the first partition's only: nothing was merged
    q0 = json.loads(str(client.hget(f"pm:state:{names.group}:{topic}:0:positions",
                                    "paper_S1|1")))
    assert q0["quantity"] == 10
    assert not client.hgetall(f"pm:state:{names.group}:{topic}:1:positions")
    wait_for("offset of the refused fill stored",
             lambda: client.hget(f"pm:state:{names.group}:{topic}:1:meta", "next_offset") == "1")
    assert json.loads(str(client.get("portfolio:paper_S1")))["positions"]["1"]["quantity"] == 10
    assert daemon.terminate() == 0
