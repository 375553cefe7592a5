"""The daemon's ``--cost-basis``: a state is reloaded only under the method that booked it."""

from __future__ import annotations

import json

import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.fixtures import StartDaemon
from support.names import Names

from pm_polars.client import PortfolioReader

pytestmark = pytest.mark.integration


def _fill(fid: str, side: str, qty: int, price: float) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "ts": 1_795_600_000_000,
        "original_signal": {"strategy_id": "S1", "instrument_token": 7, "signal_type": side},
    }).encode()


def test_fifo_daemon_books_fifo_and_refuses_to_switch_method(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names, client = topics, redis_srv.client()
    topic = names.fills("paper")
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("a", "BUY", 10, 100.0)),
                               (topic, b"paper_S1", _fill("b", "BUY", 10, 120.0)),
                               (topic, b"paper_S1", _fill("c", "SELL", 15, 130.0))])
    daemon = start_daemon("--cost-basis", "fifo")

    def doc() -> dict[str, object] | None:
        raw = client.get("portfolio:paper_S1")
        got = None if raw is None else json.loads(raw)
        return got if got and got["positions"]["7"]["quantity"] == 5 else None

    published = wait_for("the three fills", doc, diagnose=lambda: daemon.log()[-2000:])
    pos = published["positions"]["7"]  # type: ignore[index]
    # FIFO by hand: 10 @ 100 closed at 130 (+300), 5 of 10 @ 120 closed at 130 (+50)
    assert pos["realized_pnl"] == 350.0 and pos["average_price"] == 120.0
    lots = PortfolioReader(client).lots_frame(["paper_S1", "paper_nobody"], names.group)
    assert [(r["quantity"], r["price"], r["fill_id"]) for r in lots.to_dicts()] == [
        (5, 120.0, "b")]
    assert daemon.terminate() == 0
    average = start_daemon("--cost-basis", "average")
    assert average.wait(timeout=60) == 2, average.log()[-3000:]
    log = average.log()
    assert "reason=cost_basis_mismatch" in log and "holds FIFO lots" in log
    assert "--cost-basis the state was built with" in log
    # the state was not touched: FIFO resumes where it stopped
    again = start_daemon("--cost-basis", "fifo")
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("d", "SELL", 5, 110.0))])

    def flat() -> dict[str, object] | None:
        got = json.loads(client.get("portfolio:paper_S1") or "{}")
        return got if got["positions"]["7"]["quantity"] == 0 else None

    final = wait_for("the closing fill", flat, diagnose=lambda: again.log()[-2000:])
    assert final["positions"]["7"]["realized_pnl"] == 350.0 - 50.0  # type: ignore[index]
