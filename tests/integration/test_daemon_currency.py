"""The daemon's ``--account-currency``: recorded in the partition state, a state reloaded only
under the currency that booked it."""

from __future__ import annotations

import json

import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.fixtures import StartDaemon
from support.names import Names

pytestmark = pytest.mark.integration


def _fill(fid: str, side: str, qty: int, price: float) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "ts": 1_795_600_000_000,
        "original_signal": {"strategy_id": "S1", "instrument_token": 7, "signal_type": side},
    }).encode()


def test_usd_book_is_recorded_and_refused_under_inr(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names, client = topics, redis_srv.client()
    topic = names.fills("paper")
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("a", "BUY", 10, 100.0))])
    daemon = start_daemon("--account-currency", "USD", "--starting-cash", "1000")

    def doc() -> dict[str, object] | None:
        raw = client.get("portfolio:paper_S1")
        return None if raw is None else json.loads(raw)

    published = wait_for("the fill", doc, diagnose=lambda: daemon.log()[-2000:])
    assert published["cash"] == 0.0  # 1,000 USD - 10 x 100
    metas = [k for k in client.scan_iter("*meta*") if client.hget(k, "next_offset")]
    assert metas and all(client.hget(k, "account_currency") == "USD" for k in metas)
    assert daemon.terminate() == 0
    inr = start_daemon("--starting-cash", "1000")
    assert inr.wait(timeout=60) == 2, inr.log()[-3000:]
    log = inr.log()
    assert "reason=account_currency_mismatch" in log
    assert "booked in account currency USD but --account-currency is INR" in log
    again = start_daemon("--account-currency", "USD", "--starting-cash", "1000")
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("b", "SELL", 10, 110.0))])

    def flat() -> dict[str, object] | None:
        got = json.loads(client.get("portfolio:paper_S1") or "{}")
        return got if got["positions"]["7"]["quantity"] == 0 else None

    final = wait_for("the closing fill", flat, diagnose=lambda: again.log()[-2000:])
    assert final["positions"]["7"]["realized_pnl"] == 100.0  # type: ignore[index]
    assert final["cash"] == 1_100.0
