"""kill -9 on each side of a trading-day roll: a real daemon, broker and Redis.

Three phases of fills and ticks (IST days, the daemon's default roll at 00:00 Asia/Kolkata):
day 2 trading; then day 3 (its first tick rolls the book: prev_close is day 2's last mark);
then more of day 3. The daemon is killed with SIGKILL after day 2 is committed (before the
roll), in the middle of the batches that roll (a random point of phase 2) and after the
roll. After every kill the frozen Redis state is exactly the reference engine applied to
what its stored offsets claim was consumed (documents with the day figures, Overall, aum);
after every restart the caught-up state equals the reference of everything produced, and
every document shows the reference's trading day, so the roll happened exactly once.
"""

from __future__ import annotations

import json
import random
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from reference import fill, tick
from support import KafkaBroker, RedisServer
from support.chaos import (
    Daemons,
    Item,
    Names,
    check_equal,
    frozen_problems,
    produce_items,
    progress,
    wait_caught_up,
)
from support.daemon import wait_for
from support.published import documents

pytestmark = pytest.mark.integration
IST = timezone(timedelta(hours=5, minutes=30))
TOKENS = (256265, 738561, 408065)


def ist(day: int, hour: int, second: int = 0) -> int:
    """Epoch milliseconds (as the feed writes them) of 2026-03-day hour:00 IST + second."""
    t = datetime(2026, 3, day, hour, tzinfo=IST) + timedelta(seconds=second)
    return int(t.timestamp()) * 1000


def phase(names: Names, rng: random.Random, day: int, hour: int, n: int,
          start: int) -> list[Item]:
    items = []
    for i in range(n):
        ts = ist(day, hour, i)
        tok = rng.choice(TOKENS)
        price = float(rng.randint(9_000, 11_000)) / 100
        if rng.random() < 0.4:
            items.append(Item(names.ticks, str(tok).encode(),
                              json.dumps(tick(tok, price, ts)).encode(), "tick"))
        else:
            strategy = f"S{rng.randint(1, 6)}"
            event = fill(strategy, tok, rng.choice(["BUY", "SELL"]), rng.randint(1, 20),
                         price, fee=rng.choice([0.0, 0.5, 1.25]), ts=ts,
                         fill_id=f"f{start + i}")
            items.append(Item(names.fills("paper"), f"paper_{strategy}".encode(),
                              json.dumps(event).encode(), "fill"))
    return items


def test_kill_9_on_each_side_of_the_roll(broker: KafkaBroker, redis_srv: RedisServer,
                                         names: Names, tmp_path: Path) -> None:
    rng = random.Random(14)
    client = redis_srv.client()
    day2 = phase(names, rng, 2, 14, 300, 0)
    roll = [Item(names.ticks, b"x", json.dumps(tick(TOKENS[0], 99.5, ist(3, 9))).encode(),
                 "tick"), *phase(names, rng, 3, 9, 300, 1000)]
    later = phase(names, rng, 3, 13, 200, 2000)
    daemons = Daemons(broker.bootstrap, redis_srv.url, names, tmp_path)

    def kill_and_check(d: object, produced: list[Item]) -> None:
        proc = daemons.started[-1]
        proc.proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        problems = frozen_problems(client, produced, names)
        assert not problems, "\n".join(problems[:15]) + daemons.tail()

    try:
        produce_items(broker.bootstrap, day2)
        d = daemons.start("--max-events", "50", "--max-wait-ms", "5")
        wait_caught_up(client, names, day2, diagnose=daemons.tail, alive=d.alive)
        ref = check_equal(client, names, day2, diagnose=daemons.tail)
        assert {doc["trading_day"] for doc in documents(client).values()} == {"2026-03-02"}
        kill_and_check(d, day2)  # before the roll

        produce_items(broker.bootstrap, roll)
        d = daemons.start("--max-events", "40", "--max-wait-ms", "5")
        base = progress(client, names)
        target = base + rng.randint(20, 200)
        wait_for("progress into the rolled day", lambda: progress(client, names) >= target
                 or not d.alive(), timeout=120, interval=0.005, diagnose=daemons.tail)
        kill_and_check(d, day2 + roll)  # in the middle of the rolled day's first batches

        d = daemons.start("--max-events", "70", "--max-wait-ms", "5")
        wait_caught_up(client, names, day2 + roll, diagnose=daemons.tail, alive=d.alive)
        ref = check_equal(client, names, day2 + roll, diagnose=daemons.tail)
        assert ref.trading_day == "2026-03-03"
        assert {doc["trading_day"] for doc in documents(client).values()} == {"2026-03-03"}
        carried = [p for pid in ref.portfolio_ids()
                   for p in ref.portfolio(pid)["positions"].values()
                   if p["overnight_quantity"] != 0]
        assert carried and all(p["prev_close"] is not None for p in carried)
        kill_and_check(d, day2 + roll)  # after the roll

        produce_items(broker.bootstrap, later)
        d = daemons.start("--max-events", "30", "--max-wait-ms", "5")
        everything = day2 + roll + later
        wait_caught_up(client, names, everything, diagnose=daemons.tail, alive=d.alive)
        check_equal(client, names, everything, diagnose=daemons.tail)
        assert d.terminate() == 0
    finally:
        daemons.kill_all()
