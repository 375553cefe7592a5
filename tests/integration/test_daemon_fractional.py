"""The daemon with ``--quantity-decimals 8`` (crypto-style quantities), end to end: real
broker, real Redis, FIFO lots, a kill -9 and a restart, checked against hand-worked values.

Hand-worked (starting cash 10,000,000, multiplier 1, fees 0; FIFO):

* S1, token 1 (BTC): BUY 0.015 @ 60,000 (a), BUY 0.005 @ 62,000 (b), SELL 0.012 @ 63,000:
  the sell closes 0.012 of lot a: realized 0.012 x 3,000 = 36; open lots 0.003 @ 60,000 and
  0.005 @ 62,000, average (180 + 310) / 0.008 = 61,250.
* S2, token 2: BUY 0.1 @ 3,000 and 0.2 @ 3,000: 0.3 exactly (not 0.30000000000000004);
  S3, token 2: BUY 0.25 @ 3,100; tick 2 @ 3,200: S2 unrealized 0.3 x 200 = 60;
  paper_Overall token 2: 0.55 at (900 + 775) / 0.55.
* S4, token 3: BUY 75 @ 100 stays the JSON integer 75; a fill of 0.123456789 (9 places) is
  refused (S5 never appears).
* kill -9; a restart with ``--quantity-decimals 0`` is refused (the state's atoms are 10^-8
  units); then, at 8: S1 SELL 0.008 @ 61,000 closes lot a's 0.003 (+3) and lot b (-5):
  realized 36 - 2 = 34, flat exactly 0, cash 10,000,000 - 900 - 310 + 756 + 488 =
  10,000,034; a redelivery of fill a is dropped; S2 SELL 0.3 @ 3,200: realized 60, flat;
  paper_Overall token 2 holds exactly 0.25.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.fixtures import StartDaemon
from support.names import STARTING_CASH, Names

from pm_polars.client import PortfolioReader

pytestmark = pytest.mark.integration

TS = 1_795_600_000_000


def _fill(strategy: str, token: int, fid: str, side: str, qty: float, price: float) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "ts": TS, "fee": 0.0,
        "original_signal": {"strategy_id": strategy, "instrument_token": token,
                            "signal_type": side},
    }).encode()


def _doc(client: Any, pid: str) -> tuple[str, dict[str, Any]] | None:
    raw = client.get(f"portfolio:{pid}")
    return None if raw is None else (str(raw), json.loads(raw))


def test_daemon_books_fractional_quantities_exactly_across_a_kill_9(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon
) -> None:
    names, client = topics, redis_srv.client()
    topic = names.fills("paper")

    def key(strategy: str) -> bytes:
        return f"paper_{strategy}".encode()

    produce(broker.bootstrap, [
        (topic, key("S1"), _fill("S1", 1, "a", "BUY", 0.015, 60_000.0)),
        (topic, key("S1"), _fill("S1", 1, "b", "BUY", 0.005, 62_000.0)),
        (topic, key("S1"), _fill("S1", 1, "c", "SELL", 0.012, 63_000.0)),
        (topic, key("S2"), _fill("S2", 2, "d", "BUY", 0.1, 3_000.0)),
        (topic, key("S2"), _fill("S2", 2, "e", "BUY", 0.2, 3_000.0)),
        (topic, key("S3"), _fill("S3", 2, "f", "BUY", 0.25, 3_100.0)),
        (topic, key("S4"), _fill("S4", 3, "g", "BUY", 75, 100.0)),
        (topic, key("S5"), _fill("S5", 3, "h", "BUY", 0.123456789, 100.0)),
        (names.ticks, b"2", json.dumps({"event_type": "market_tick", "instrument_token": 2,
                                        "last_price": 3_200.0, "ts": TS}).encode()),
    ])
    args = ("--cost-basis", "fifo", "--quantity-decimals", "8", "--tick-publish-ms", "0")
    daemon = start_daemon(*args)

    def first() -> dict[str, tuple[str, dict[str, Any]]] | None:
        docs = {s: _doc(client, f"paper_{s}") for s in ("S1", "S2", "S3", "S4")}
        if any(d is None for d in docs.values()):
            return None
        ok = (docs["S1"][1]["positions"]["1"]["quantity"] == 0.008  # type: ignore[index]
              and docs["S2"][1]["positions"]["2"]["last_price"] == 3_200.0)  # type: ignore[index]
        return docs if ok else None  # type: ignore[return-value]

    docs = wait_for("the first fills", first, diagnose=lambda: daemon.log()[-3000:])
    s1 = docs["S1"][1]["positions"]["1"]
    assert s1["average_price"] == pytest.approx(61_250.0, rel=1e-12)
    assert s1["realized_pnl"] == pytest.approx(36.0, abs=1e-9)
    assert (s1["buy_quantity"], s1["sell_quantity"]) == (0.02, 0.012)
    lots = PortfolioReader(client).lots_frame(["paper_S1"], names.group)
    assert [(r["quantity"], r["price"], r["fill_id"]) for r in lots.to_dicts()] == [
        (0.003, 60_000.0, "a"), (0.005, 62_000.0, "b")]
    s2_text, s2 = docs["S2"]
    assert '"quantity":0.3,' in s2_text
    assert s2["positions"]["2"]["unrealized_pnl"] == pytest.approx(60.0, abs=1e-9)
    assert s2["cash"] == pytest.approx(STARTING_CASH - 900.0, abs=1e-6)
    assert '"quantity":75,' in docs["S4"][0]  # an integer feed keeps its integers
    overall = json.loads(str(client.get("portfolio:paper_Overall")))["positions"]["2"]
    assert overall["quantity"] == 0.55
    assert overall["average_price"] == pytest.approx(1_675.0 / 0.55, rel=1e-12)
    assert client.get("portfolio:paper_S5") is None  # 9 decimal places: refused
    reader = PortfolioReader(client)
    read = reader.get_portfolio("paper_S2")
    assert read is not None and read.positions[2].quantity == 0.3
    hashed = reader.position("paper_Overall", 2)  # from the hash's text "0.55"
    assert hashed is not None and hashed.quantity == 0.55
    s4 = reader.get_portfolio("paper_S4")
    assert s4 is not None and type(s4.positions[3].quantity) is int
    frame = reader.positions_frame(["paper_S1", "paper_S4"])
    assert frame["quantity"].to_list() == [0.008, 75.0]

    daemon.kill()  # SIGKILL
    wrong = start_daemon(*args[:2], "--quantity-decimals", "0")
    assert wrong.wait(timeout=60) == 2, wrong.log()[-3000:]
    log = wrong.log()
    assert "reason=quantity_decimals_mismatch" in log
    assert "restart with --quantity-decimals 8" in log
    produce(broker.bootstrap, [
        (topic, key("S1"), _fill("S1", 1, "i", "SELL", 0.008, 61_000.0)),
        (topic, key("S1"), _fill("S1", 1, "a", "BUY", 0.015, 60_000.0)),  # redelivery
        (topic, key("S2"), _fill("S2", 2, "j", "SELL", 0.3, 3_200.0)),
    ])
    again = start_daemon(*args)

    def flat() -> dict[str, tuple[str, dict[str, Any]]] | None:
        docs = {s: _doc(client, f"paper_{s}") for s in ("S1", "S2")}
        if any(d is None for d in docs.values()):
            return None
        done = all(d[1]["positions"][t]["quantity"] == 0  # type: ignore[index]
                   for d, t in ((docs["S1"], "1"), (docs["S2"], "2")))
        return docs if done else None  # type: ignore[return-value]

    final = wait_for("the closing fills", flat, diagnose=lambda: again.log()[-3000:])
    s1_text, s1_doc = final["S1"]
    assert '"quantity":0,' in s1_text  # flat exactly: a JSON integer 0
    assert s1_doc["positions"]["1"]["realized_pnl"] == pytest.approx(34.0, abs=1e-9)
    assert s1_doc["cash"] == pytest.approx(STARTING_CASH + 34.0, abs=1e-6)
    assert s1_doc["positions"]["1"]["buy_quantity"] == 0.02  # the redelivery was dropped
    assert PortfolioReader(client).lots_frame(["paper_S1"], names.group).height == 0
    assert final["S2"][1]["positions"]["2"]["realized_pnl"] == pytest.approx(60.0, abs=1e-9)
    overall_text = str(client.get("portfolio:paper_Overall"))
    assert json.loads(overall_text)["positions"]["2"]["quantity"] == 0.25
    assert json.loads(overall_text)["positions"]["1"]["quantity"] == 0
    assert again.terminate() == 0
