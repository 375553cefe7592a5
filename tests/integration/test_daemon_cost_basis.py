"""The daemon's ``--cost-basis`` and ``--mark``: a state is reloaded only under the method
that booked it and the mark that published it; ``--mark bid_ask`` and an instrument with
``allow_negative_price`` through the published documents (one daemon run for both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.fixtures import StartDaemon
from support.names import Names

from pm_polars.client import PortfolioReader, Price
from pm_polars.engine.engine import PortfolioEngine

pytestmark = pytest.mark.integration


TS = 1_795_600_000_000  # ms
WTI = 9  # a crude future: 1000 bbl, allow_negative_price (NYMEX WTI May 2020: -37.63)


def _fill(fid: str, side: str, qty: int, price: float, strategy: str = "S1",
          token: int = 7) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "ts": TS,
        "original_signal": {"strategy_id": strategy, "instrument_token": token,
                            "signal_type": side},
    }).encode()


def _tick(token: int, last: float, **quote: float) -> bytes:
    return json.dumps({"event_type": "market_tick", "instrument_token": token,
                       "last_price": last, "ts": TS + 1, **quote}).encode()


FILLS = [_fill("a", "BUY", 10, 100.0), _fill("b", "BUY", 10, 120.0),
         _fill("c", "SELL", 15, 130.0), _fill("s", "SELL", 4, 126.0, "S2"),
         _fill("w", "BUY", 1, 18.27, token=WTI),
         _fill("bad", "BUY", 3, -5.0)]  # token 7 does not allow it: refused by the engine
TICKS = [_tick(7, 125.0, bid=124.5, ask=125.5), _tick(WTI, -37.63)]


def test_fifo_bid_ask_daemon_books_and_refuses_to_switch_method_or_mark(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    names, client = topics, redis_srv.client()
    topic = names.fills("paper")
    instruments = tmp_path / "instruments.csv"
    instruments.write_text("instrument_token,tradingsymbol,multiplier,allow_negative_price\n"
                           f"7,X,1,false\n{WTI},CLK20,1000,true\n")
    produce(broker.bootstrap, [(topic, f"paper_{'S2' if i == 3 else 'S1'}".encode(), v)
                               for i, v in enumerate(FILLS)]
            + [(names.ticks, str(t).encode(), v) for t, v in ((7, TICKS[0]), (WTI, TICKS[1]))])
    marked = ("--mark", "bid_ask", "--instruments", str(instruments))
    daemon = start_daemon("--cost-basis", "fifo", *marked)

    def doc() -> dict[str, object] | None:
        raw = client.get("portfolio:paper_S1")
        if raw is None:
            return None
        got: dict[str, Any] = json.loads(raw)
        held = got["positions"]
        done = str(WTI) in held and held["7"]["quantity"] == 5
        return got if done and held[str(WTI)]["last_price"] == -37.63 else None

    published = wait_for("the fills and ticks", doc, diagnose=lambda: daemon.log()[-2000:])
    pos = published["positions"]["7"]  # type: ignore[index]
    # FIFO by hand: 10 @ 100 closed at 130 (+300), 5 of 10 @ 120 closed at 130 (+50)
    assert pos["realized_pnl"] == 350.0 and pos["average_price"] == 120.0
    # bid/ask by hand: the long 5 @ 120 at the bid 124.5, the short 4 @ 126 at the ask 125.5
    assert (pos["last_price"], pos["unrealized_pnl"], pos["market_value"]) == (
        125.0, 22.5, 622.5)
    short = json.loads(client.get("portfolio:paper_S2") or "{}")["positions"]["7"]
    assert (short["unrealized_pnl"], short["market_value"]) == (2.0, -502.0)
    # WTI: 1 x 1000 bbl bought at 18.27, marked at -37.63 (no quote: the last price)
    wti = published["positions"][str(WTI)]  # type: ignore[index]
    assert wti["unrealized_pnl"] == pytest.approx((-37.63 - 18.27) * 1000, abs=0.005)
    assert wti["market_value"] == pytest.approx(-37_630.0, abs=0.005)
    overall = json.loads(client.get("portfolio:paper_Overall") or "{}")["positions"]["7"]
    assert (overall["quantity"], overall["unrealized_pnl"], overall["last_price"]) == (
        1, 24.5, 125.0)
    assert json.loads(client.hget("prices", "7") or "{}") == {
        "last_price": 125.0, "ts": (TS + 1) * 10**6, "bid": 124.5, "ask": 125.5}
    assert PortfolioReader(client).prices()[7] == Price(125.0, (TS + 1) * 10**6, 124.5, 125.5)
    # the published documents are the engine's (same events, same settings)
    engine = PortfolioEngine(instruments=pl.read_csv(instruments), cost_basis="fifo",
                             mark="bid_ask")
    result = engine.apply([*FILLS, *TICKS])
    assert result.rejects["reason"].to_list() == ["fill_price: must be > 0, got -5.0"]
    for pid in ("paper_S1", "paper_S2"):
        mine = json.loads(client.get(f"portfolio:{pid}") or "{}")
        assert mine["positions"] == engine.portfolio(pid)["positions"]
    lots = PortfolioReader(client).lots_frame(["paper_S1", "paper_nobody"], names.group)
    assert [(r["quantity"], r["price"], r["fill_id"]) for r in lots.to_dicts()] == [
        (5, 120.0, "b"), (1, 18.27, "w")]
    assert daemon.terminate() == 0
    last = start_daemon("--cost-basis", "fifo", "--instruments", str(instruments))
    assert last.wait(timeout=60) == 2, last.log()[-3000:]
    assert "reason=mark_mismatch" in last.log() and "--mark bid_ask" in last.log()
    average = start_daemon("--cost-basis", "average", *marked)
    assert average.wait(timeout=60) == 2, average.log()[-3000:]
    log = average.log()
    assert "reason=cost_basis_mismatch" in log and "holds FIFO lots" in log
    assert "--cost-basis the state was built with" in log
    # the state was not touched: FIFO resumes where it stopped
    again = start_daemon("--cost-basis", "fifo", *marked)
    produce(broker.bootstrap, [(topic, b"paper_S1", _fill("d", "SELL", 5, 110.0))])

    def flat() -> dict[str, object] | None:
        got = json.loads(client.get("portfolio:paper_S1") or "{}")
        return got if got["positions"]["7"]["quantity"] == 0 else None

    final = wait_for("the closing fill", flat, diagnose=lambda: again.log()[-2000:])
    assert final["positions"]["7"]["realized_pnl"] == 350.0 - 50.0  # type: ignore[index]
