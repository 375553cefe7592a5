"""The daemon's ``--account-currency``: recorded in the partition state, a state reloaded only
under the currency that booked it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import KafkaBroker, RedisServer, produce
from support.currency_book import check_inr_book
from support.daemon import wait_for
from support.fixtures import StartDaemon
from support.names import Names

pytestmark = pytest.mark.integration


def _fill(fid: str, side: str, qty: float, price: float, **extra: object) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "ts": 1_795_600_000_000, **extra,
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


def test_base_currency_fees_through_the_daemon_and_a_kill(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    """Binance's FAQ case through Kafka and Redis (``--quantity-decimals 8``): buy 10 @
    3,452.55 with 0.01 paid in the asset holds 9.99 for 34,525.50; after a kill -9 the sale
    of the 9.99 @ 3,500 realizes 439.50 (the fee is in the cost basis, not in ``fees``)."""
    names, client = topics, redis_srv.client()
    topic = names.fills("paper")
    args = ("--quantity-decimals", "8", "--starting-cash", "50000", "--tick-publish-ms", "0")
    produce(broker.bootstrap, [(topic, b"paper_S1",
                                _fill("a", "BUY", 10, 3_452.55, fee=0.01,
                                      fee_currency="base"))])
    daemon = start_daemon(*args)

    def position(qty: float) -> dict[str, object] | None:
        got = json.loads(client.get("portfolio:paper_S1") or "{}")
        pos = got.get("positions", {}).get("7")
        return got if pos and pos["quantity"] == qty else None

    held = wait_for("the buy", lambda: position(9.99), diagnose=lambda: daemon.log()[-2000:])
    pos = held["positions"]["7"]  # type: ignore[index]
    assert pos["fees"] == 0.0
    assert pos["average_price"] == pytest.approx(34_525.5 / 9.99, rel=1e-12)
    assert held["cash"] == pytest.approx(50_000.0 - 34_525.5, abs=1e-9)
    daemon.kill()
    again = start_daemon(*args)
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("b", "SELL", 9.99, 3_500.0))])
    flat = wait_for("the sale", lambda: position(0), diagnose=lambda: again.log()[-2000:])
    assert flat["positions"]["7"]["realized_pnl"] == pytest.approx(439.5, abs=1e-8)  # type: ignore[index]
    assert flat["cash"] == pytest.approx(50_000.0 + 439.5, abs=1e-8)


def test_inr_daemon_converts_a_usd_stock_and_an_inverse_contract(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    """``support.currency_book``: a USD stock and an inverse XBTUSD in an INR account; the
    published documents, Overall and AUM = the engine's and the hand-worked figures, through
    a missing rate and two rate ticks alone; then FIFO across a kill -9 (``fifo_kill``)."""
    check_inr_book(broker.bootstrap, redis_srv.client(), topics, start_daemon, tmp_path,
                   fifo_kill=True)
