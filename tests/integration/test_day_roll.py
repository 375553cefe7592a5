"""The trading-day roll through the daemon's write path (``BookWriter``: Book + apply_batch +
Checkpoint.commit + settle) and a real Redis: a roll republishes every portfolio and rewrites
every partition's state, so an instance restarted before or after the roll (a new
``BookWriter`` loading from Redis) publishes exactly what one uninterrupted in-process engine
computes. Hand-worked (IST, cash 1,000,000, multiplier 1):

* day 2: S1 (partition 0) BUY 10 A @ 100, S2 (partition 1) SELL 4 A @ 100; ticks A 104 then
  (same batch as the day-3 tick below) A 106 at 23:00 -> the close of day 2 is 106;
* day 3: tick A 103 at 09:00 rolls: S1 overnight 10, prev_close 106, m2m 10 x (103 - 106)
  = -30; S2 overnight -4, m2m +12; paper_Overall m2m -18, aum m2m -18.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from reference import fill, tick
from support import RedisServer
from support.book_writer import BookWriter

from pm_polars import PortfolioEngine

IST = timezone(timedelta(hours=5, minutes=30))
A = 256265


def ist(day: int, hour: int) -> int:
    return int(datetime(2026, 3, day, hour, tzinfo=IST).timestamp()) * 1000  # epoch ms


BATCHES: list[tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]]]] = [
    ({0: [fill("S1", A, "BUY", 10, 100.0, fee=1.0, ts=ist(2, 10), fill_id="a")],
      1: [fill("S2", A, "SELL", 4, 100.0, fee=0.5, ts=ist(2, 10), fill_id="b")]},
     [tick(A, 104.0, ist(2, 12))]),
    ({}, [tick(A, 106.0, ist(2, 23)), tick(A, 103.0, ist(3, 9))]),  # the roll inside a batch
    ({0: [fill("S1", A, "SELL", 3, 105.0, fee=1.0, ts=ist(3, 11), fill_id="c")]},
     [tick(A, 107.0, ist(3, 12))]),
    ({1: [fill("S2", A, "BUY", 6, 108.0, ts=ist(4, 10), fill_id="d")]}, []),  # a fill rolls
]


def _docs(client: redis.Redis) -> dict[str, dict[str, Any]]:
    ids = sorted(str(i) for i in client.smembers("portfolios"))
    return {pid: json.loads(client.get(f"portfolio:{pid}") or "null") for pid in ids}


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k, v in want.items():
            _same(got[k], v, f"{where}.{k}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9), where
    else:
        assert got == want, where


def _engine(upto: int) -> PortfolioEngine:
    eng = PortfolioEngine(dedupe_retention=86_400.0)
    for fills, ticks in BATCHES[:upto]:
        eng.apply([e for part in sorted(fills) for e in fills[part]] + ticks)
    return eng


def _check(client: redis.Redis, upto: int) -> None:
    eng = _engine(upto)
    docs = _docs(client)
    want = eng.portfolio_documents([*eng.portfolio_ids(), "paper_Overall"])
    for pid, doc in want.items():
        _same(docs[pid], doc, pid)
    aum = json.loads(client.get("aum") or "null")
    assert aum["m2m"] == pytest.approx(eng.aum()["m2m"], rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("restart_after", [None, 1, 2, 3])
def test_roll_republishes_everything_and_survives_restarts(redis_srv: RedisServer,
                                                           restart_after: int | None) -> None:
    client = redis_srv.client()
    writer = BookWriter(client)
    for i, (fills, ticks) in enumerate(BATCHES, start=1):
        writer.batch(fills, ticks)
        _check(client, i)
        if i == 2:  # hand-worked, after the roll
            docs = _docs(client)
            s1, s2 = docs["paper_S1"], docs["paper_S2"]
            assert s1["trading_day"] == s2["trading_day"] == "2026-03-03"
            p1 = s1["positions"][str(A)]
            assert (p1["overnight_quantity"], p1["prev_close"], p1["m2m"]) == (10, 106.0, -30.0)
            assert (s2["m2m"], docs["paper_Overall"]["m2m"]) == (12.0, -18.0)
        if i == restart_after:
            writer = BookWriter(client)  # a new instance: state from Redis only


def test_roll_republishes_portfolios_whose_tick_republish_is_conflated(
        redis_srv: RedisServer) -> None:
    """With a minute's --tick-publish-ms a tick alone republishes nothing, but a tick that
    rolls the day republishes every portfolio (each one's day figures changed)."""
    client = redis_srv.client()
    writer = BookWriter(client, tick_publish_ns=60 * 10**9)
    writer.batch(*BATCHES[0])
    writer.batch({}, [tick(A, 105.0, ist(2, 22))])  # same day: conflated
    assert _docs(client)["paper_S1"]["positions"][str(A)]["last_price"] == 104.0
    writer.batch({}, [tick(A, 103.0, ist(3, 9))])  # rolls
    docs = _docs(client)
    assert {d["trading_day"] for d in docs.values()} == {"2026-03-03"}
    eng = PortfolioEngine(dedupe_retention=86_400.0)
    eng.apply([e for part in sorted(BATCHES[0][0]) for e in BATCHES[0][0][part]]
              + BATCHES[0][1] + [tick(A, 105.0, ist(2, 22)), tick(A, 103.0, ist(3, 9))])
    for pid, doc in eng.portfolio_documents(eng.portfolio_ids()).items():
        _same(docs[pid], doc, pid)
    assert docs["paper_S1"]["positions"][str(A)]["prev_close"] == 105.0


def test_a_roll_read_by_an_instance_without_partitions_is_kept(redis_srv: RedisServer) -> None:
    """An instance that owns no fill partition yet rolls on a tick: the roll (day and prices
    at the roll, ``pm:day``) is committed with the tick offsets, so the partitions' next
    owner starts in the new day with the right prev_close instead of rolling again."""
    client = redis_srv.client()
    first = BookWriter(client)
    first.batch(*BATCHES[0])
    first.batch({}, [tick(A, 106.0, ist(2, 23))])
    BookWriter(client, partitions=0).batch({}, [tick(A, 103.0, ist(3, 9))])
    owner = BookWriter(client)
    assert owner.book.engine.trading_day == "2026-03-03"
    owner.batch({}, [])  # republishes the loaded partitions whole
    docs = _docs(client)
    p1 = docs["paper_S1"]["positions"][str(A)]
    assert (docs["paper_S1"]["trading_day"], p1["prev_close"], p1["m2m"]) == (
        "2026-03-03", 106.0, -30.0)
    assert docs["paper_S2"]["m2m"] == 12.0
