"""End to end: Kafka -> ``pm-polars run`` -> Redis equals the in-process engine.

Also: poison records in the dead-letter topic with reasons in headers, metrics and
``/healthz``, ``portfolio-updates`` messages, a fill topic created after start, and SIGTERM
draining with the offsets stored in Redis.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest
from support import KafkaBroker, RedisServer, consume_all, create_topics, produce
from support.daemon import wait_for
from support.feeds import feed, reference
from support.fixtures import StartDaemon
from support.kafka_broker import headers as record_headers
from support.names import Names
from support.ports import free_port
from support.published import differences

from pm_polars.events import decode_messages

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _metric(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("prefetch", ["2", "0"], ids=["prefetch-thread", "one-thread"])
def test_end_to_end_equals_engine_dlq_metrics_and_sigterm(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon,
    prefetch: str,
) -> None:
    names = topics
    records = feed(names, 12_000, malformed_rate=0.01, duplicate_rate=0.01)
    produce(broker.bootstrap, records)
    ref = reference(records)
    client = redis_srv.client()
    pubsub = client.pubsub()
    pubsub.subscribe("portfolio-updates")
    port = free_port()
    daemon = start_daemon("--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                          "--prefetch-batches", prefetch)

    wait_for("Redis to equal the engine", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + daemon.log()[-3000:])

    # dead letters: exactly the records the decoder rejects, raw bytes + reason headers
    values = [v for _, _, v in records]
    rejected = decode_messages(values).rejects
    dead = consume_all(broker.bootstrap, names.dlq, rejected.height)
    assert rejected.height > 50
    got = Counter((m.value(), record_headers(m)["reason"]) for m in dead)
    want = Counter(zip(rejected["raw"].to_list(), rejected["reason"].to_list(), strict=True))
    assert got == want
    source: dict[tuple[str, int | None, int | None], bytes | None] = {}
    for topic, n in Counter(t for t, _, _ in records).items():
        for m in consume_all(broker.bootstrap, topic, n):
            source[(topic, m.partition(), m.offset())] = m.value()
    for m in dead:  # headers point at the original record
        h = record_headers(m)
        assert source[(h["topic"], int(h["partition"]), int(h["offset"]))] == m.value()
        assert m.key() == f"{h['topic']}/{h['partition']}/{h['offset']}".encode()

    # metrics and health
    status, body = _get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    _, text = _get(f"http://127.0.0.1:{port}/metrics")
    decoded = decode_messages(values)
    fills_applied = ref.snapshot().seen.height  # every demo fill has a fill_id
    assert _metric(text, "pm_events_total", 'type="fill"') == fills_applied
    assert _metric(text, "pm_events_total", 'type="duplicate"') == decoded.fills.height - fills_applied
    assert _metric(text, "pm_events_total", 'type="tick"') == decoded.ticks.height
    assert _metric(text, "pm_events_total", 'type="reject"') == rejected.height
    assert _metric(text, "pm_dlq_records_total") == rejected.height
    assert _metric(text, "pm_event_to_redis_seconds_count") == decoded.fills.height - (
        decoded.fills.height - fills_applied) + decoded.ticks.height
    assert _metric(text, "pm_batches_total") >= 1

    # updates were published, naming changed portfolios (strategies and Overall)
    seen_ids: set[str] = set()
    while (msg := pubsub.get_message(timeout=0.5)) is not None:
        if msg["type"] == "message":
            seen_ids.update(json.loads(msg["data"])["portfolio_ids"])
    assert set(ref.portfolio_ids()) | {"paper_Overall", "live_Overall"} <= seen_ids

    # SIGTERM: exit 0, offsets stored = everything produced
    assert daemon.terminate() == 0, daemon.log()[-3000:]
    per_topic = Counter(t for t, _, _ in records)
    stored = 0
    for key in client.scan_iter(f"pm:state:{names.group}:*:meta"):
        stored += int(str(client.hget(key, "next_offset")))
    fill_records = sum(n for t, n in per_topic.items() if t != names.ticks)
    assert stored == fill_records
    tick_offsets = client.hgetall(f"pm:ticks:{names.ticks}:offsets")
    assert sum(int(v) for v in tick_offsets.values()) == per_topic[names.ticks]
    assert "event=stopped exit_code=0" in daemon.log()


def test_pattern_subscription_picks_up_a_topic_created_later(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names = topics
    records = feed(names, 3_000, malformed_rate=0.0)
    early = [r for r in records if not r[0].endswith(".live")]
    late = [(names.fills("late"), k, v) for t, k, v in records if t.endswith(".live")]
    produce(broker.bootstrap, early)
    client = redis_srv.client()
    daemon = start_daemon()
    wait_for("the first topics", lambda: not differences(client, reference(early)),
             diagnose=lambda: daemon.log()[-2000:])

    create_topics(broker.bootstrap, {names.fills("late"): 2})
    produce(broker.bootstrap, late)
    ref = reference(early + late)
    wait_for("the late topic's fills", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + daemon.log()[-3000:])
    assert any(k.startswith(f"pm:state:{names.group}:{names.fills('late')}:")
               for k in map(str, client.keys("pm:state:*")))
