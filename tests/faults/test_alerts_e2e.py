"""Alerts end to end: a real daemon, broker and Redis, and a kill -9 while breached.

Config ``[alerts.portfolio.paper_S1] max_day_loss = 500, hysteresis = 100``. Hand-worked
(one IST day, fee 0, multiplier 1): S1 BUY 100 A @ 100, tick 100 -> day_net_pnl 0; tick
94 -> -600: **breach** (600 > 500); tick 93 -> -700: nothing (still breached); kill -9;
restart; tick 92 -> -800: nothing (the state came back with the checkpoint); tick 95.5 ->
-450: nothing (not past the hysteresis, 450 > 400); tick 97 -> -300: **recovery**. Exactly
one breach and one recovery arrive on the Kafka alerts topic (keyed by portfolio, JSON with
the figures and the batch's offsets) and on the Redis channel.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from reference import fill, tick
from support import KafkaBroker, RedisServer
from support.chaos import Daemons, Item, Names, produce_items, wait_caught_up
from support.daemon import wait_for
from support.published import documents

pytestmark = pytest.mark.integration
IST = timezone(timedelta(hours=5, minutes=30))
A = 256265


def ms(minute: int) -> int:
    return int(datetime(2026, 3, 2, 10, minute, tzinfo=IST).timestamp()) * 1000


def _tick(names: Names, price: float, minute: int) -> Item:
    return Item(names.ticks, b"A", json.dumps(tick(A, price, ms(minute))).encode(), "tick")


def _alerts_on_kafka(bootstrap: str, topic: str, want: int) -> list[tuple[bytes, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[tuple[bytes, Any]] = []
    deadline = time.monotonic() + 30
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append((msg.key() or b"", json.loads(msg.value() or b"null")))
            if len(got) >= want and quiet_until is None:
                quiet_until = time.monotonic() + 3  # anything more would be a duplicate
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    finally:
        consumer.close()
    return got


def test_alert_fires_once_and_recovers_once_across_a_kill_9(
        broker: KafkaBroker, redis_srv: RedisServer, names: Names, tmp_path: Path) -> None:
    client = redis_srv.client()
    topic = f"{names.uid}.alerts"
    cfg = tmp_path / "pm.toml"
    cfg.write_text(f'[alerts]\ntopic = "{topic}"\nchannel = "{names.uid}-alerts"\n'
                   '[alerts.portfolio.paper_S1]\nmax_day_loss = 500\nhysteresis = 100\n')
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{names.uid}-alerts")
    daemons = Daemons(broker.bootstrap, redis_srv.url, names, tmp_path)
    produced: list[Item] = []

    def step(*items: Item) -> None:
        produce_items(broker.bootstrap, list(items))
        produced.extend(items)
        wait_caught_up(client, names, produced, diagnose=daemons.tail, alive=d.alive)
        last = json.loads(items[-1].value or b"{}").get("last_price")
        if last is not None:  # the document shows the tick (so alerts were evaluated)
            wait_for("the tick published", lambda: documents(client).get("paper_S1", {})
                     .get("positions", {}).get(str(A), {}).get("last_price") == last,
                     timeout=30, diagnose=daemons.tail)

    buy = fill("S1", A, "BUY", 100, 100.0, fee=0.0, ts=ms(0), fill_id="b1")
    try:
        d = daemons.start("--config", str(cfg), "--tick-publish-ms", "0")
        step(Item(names.fills("paper"), b"paper_S1", json.dumps(buy).encode(), "fill"),
             _tick(names, 100.0, 1))
        step(_tick(names, 94.0, 2))
        step(_tick(names, 93.0, 3))
        d.proc.send_signal(signal.SIGKILL)
        d.wait(10)
        d = daemons.start("--config", str(cfg), "--tick-publish-ms", "0")
        step(_tick(names, 92.0, 4))
        step(_tick(names, 95.5, 5))
        assert documents(client)["paper_S1"]["day_net_pnl"] == -450.0
        step(_tick(names, 97.0, 6))
        assert documents(client)["paper_S1"]["day_net_pnl"] == -300.0
        kafka = _alerts_on_kafka(broker.bootstrap, topic, 2)
        assert d.terminate() == 0
    finally:
        daemons.kill_all()
    assert [(k, a["type"], a["limit"]) for k, a in kafka] == [
        (b"paper_S1", "breach", "max_day_loss"), (b"paper_S1", "recovery", "max_day_loss")]
    breach, recovery = (a for _, a in kafka)
    assert (breach["day_net_pnl"], breach["limit_value"], breach["trading_day"]) == (
        -600.0, 500.0, "2026-03-02")
    assert recovery["day_net_pnl"] == -300.0 and recovery["hysteresis"] == 100.0
    assert breach["offsets"] and all(isinstance(v, int) for v in breach["offsets"].values())
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.2)
        if msg is not None:
            seen.append(json.loads(msg["data"]))
    assert [a["id"] for a in seen] == [a["id"] for _, a in kafka]
