"""Conflated tick republishing and incremental aggregates, through the daemon's write path.

A ``BookWriter`` (``Book`` + ``apply_batch`` + ``Checkpoint.commit`` + ``settle``) with a
tick-publish interval: fills publish their portfolio at once, ticks alone at most once per
interval, and after every batch each ``{source}_Overall`` and ``aum`` equal the sums of the
strategy documents as published (whatever was conflated). Hand-worked (cash 1,000,000,
multiplier 1, token A = 256265):

* S1 BUY 10 A @ 100 (fee 0) -> 10 A, cash 999,000; S2 BUY 5 A @ 100 -> cash 999,500;
  both published with mark 100 (the fill price), equity 1,000,000 each.
* tick A @ 110 (interval not over): nothing republished; S1/S2 still mark 100.
* S2 SELL 1 A @ 110: S2 at once, marked 110: 4 A, realized 10, cash 999,610, equity
  999,610 + 440 = 1,000,050; S1 still 1,000,000 (conflated); paper_Overall 2,000,050.
* interval over: S1 republished by the next (empty) batch: equity 999,000 + 1,100 =
  1,000,100; paper_Overall 2,000,150.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import redis
from reference import T0, fill, tick
from support import RedisServer
from support.book_writer import BookWriter

from pm_polars.publish.contributions import PORTFOLIO_SUMS

A = 256265
INTERVAL_S = 0.5


def _docs(client: redis.Redis) -> dict[str, dict[str, Any]]:
    ids = sorted(str(i) for i in client.smembers("portfolios"))
    return {pid: json.loads(client.get(f"portfolio:{pid}") or "null") for pid in ids}


def _assert_aggregates_consistent(client: redis.Redis) -> None:
    docs = _docs(client)
    aum = json.loads(client.get("aum") or "null")
    for src in {pid.split("_", 1)[0] for pid in docs}:
        overall = docs[f"{src}_Overall"]
        strategies = [d for pid, d in docs.items()
                      if pid.startswith(f"{src}_") and not pid.endswith("_Overall")]
        for f in PORTFOLIO_SUMS:
            want = sum(d[f] for d in strategies)
            assert math.isclose(overall[f], want, rel_tol=1e-12, abs_tol=1e-9), (src, f)
        assert math.isclose(aum["by_source"][src], overall["equity"], rel_tol=1e-12)


def test_ticks_conflated_fills_at_once_aggregates_consistent(redis_srv: RedisServer) -> None:
    client = redis_srv.client()
    writer = BookWriter(client, tick_publish_ns=int(INTERVAL_S * 1e9))
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("portfolio-updates")
    writer.batch({0: [fill("S1", A, "BUY", 10, 100.0, fee=0.0, ts=T0, fill_id="a"),
                      fill("S2", A, "BUY", 5, 100.0, fee=0.0, ts=T0, fill_id="b")]})
    _assert_aggregates_consistent(client)
    assert _docs(client)["paper_S1"]["equity"] == 1_000_000.0
    start = time.monotonic()

    writer.batch({}, [tick(A, 110.0, T0 + 1)])
    docs = _docs(client)
    assert time.monotonic() - start < INTERVAL_S  # else the tick was due: the test is void
    assert docs["paper_S1"]["equity"] == 1_000_000.0  # conflated: still marked 100
    assert docs["paper_S2"]["equity"] == 1_000_000.0
    _assert_aggregates_consistent(client)

    writer.batch({0: [fill("S2", A, "SELL", 1, 110.0, fee=0.0, ts=T0 + 2, fill_id="c")]})
    docs = _docs(client)
    assert time.monotonic() - start < INTERVAL_S
    assert docs["paper_S2"]["equity"] == 999_610.0 + 440.0  # a fill publishes at once
    assert docs["paper_S2"]["total_realized_pnl"] == 10.0
    assert docs["paper_S1"]["equity"] == 1_000_000.0
    assert docs["paper_Overall"]["equity"] == 2_000_050.0
    _assert_aggregates_consistent(client)
    assert not writer.book.views.due(time.time_ns())
    time.sleep(INTERVAL_S)
    assert writer.book.views.due(time.time_ns())  # the idle loop would run a batch now

    writer.batch({})
    docs = _docs(client)
    assert docs["paper_S1"]["equity"] == 999_000.0 + 1_100.0
    assert docs["paper_Overall"]["equity"] == 2_000_150.0
    _assert_aggregates_consistent(client)
    assert not writer.book.views.due(time.time_ns())
    named: list[list[str]] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and len(named) < 3:
        msg = pubsub.get_message(timeout=0.1)  # None for the subscribe confirmation too
        if msg is not None:
            named.append(json.loads(msg["data"])["portfolio_ids"])
    pubsub.close()
    assert named == [["paper_Overall", "paper_S1", "paper_S2"],  # the tick: no message
                     ["paper_Overall", "paper_S2"], ["paper_Overall", "paper_S1"]]
