"""A currency book through a running daemon (``--account-currency INR``, the default): the
scenario ``tests/integration/test_daemon_currency.py`` runs on one Redis node and
``tests/faults/test_cluster_currency.py`` on Redis Cluster.

Sources: BitMEX "Inverse Perpetuals Guide" (XBTUSD: 1 USD a contract, "PnL = # Contracts x
Multiplier x (1/Entry Price - 1/Exit Price)" in XBT); the RBI reference rate convention
(USDINR = INR per 1 USD).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pm_polars.client import PortfolioReader
from pm_polars.engine.engine import PortfolioEngine
from pm_polars.engine.instruments import load_instruments

from .daemon import DaemonProcess, wait_for
from .documents import same
from .kafka_broker import produce
from .names import Names

AAPL, XBTUSD, NIFTY, USDINR, BTCINR = 1, 2, 3, 9, 8
INSTRUMENTS_CSV = (  # XBTUSD: BitMEX's inverse perpetual (1 USD a contract, settled in XBT)
    "instrument_token,tradingsymbol,multiplier,quote_currency,base_currency,inverse,fx_pair\n"
    f"{AAPL},AAPL,1,USD,,false,\n{XBTUSD},XBTUSD,1,USD,BTC,true,\n{NIFTY},NIFTY,1,INR,,false,\n"
    f"{USDINR},USDINR,1,INR,USD,false,USDINR\n{BTCINR},BTCINR,1,INR,BTC,false,BTCINR\n")


def _trade(fid: str, strategy: str, token: int, side: str, qty: int, price: float,
           fee: float = 0.0) -> bytes:
    return json.dumps({
        "event_type": "order_fill", "source": "paper", "fill_id": fid, "quantity": qty,
        "fill_price": price, "fee": fee, "ts": 1_795_600_000_000,
        "original_signal": {"strategy_id": strategy, "instrument_token": token,
                            "signal_type": side},
    }).encode()


def _tick(token: int, price: float, at: int) -> bytes:
    return json.dumps({"event_type": "market_tick", "instrument_token": token,
                       "last_price": price, "ts": 1_795_600_000_000 + at}).encode()


def check_inr_book(bootstrap: str, client: Any, names: Names,
                   start: Callable[..., DaemonProcess], tmp_path: Path,
                   fifo_kill: bool = False) -> None:
    """Run the scenario: ``start(*args)`` starts a daemon of ``names``' group, ``client`` is
    a Redis or RedisCluster client with ``decode_responses``.

    An INR account (``--account-currency INR``): S1 long 10 AAPL @ 150 USD (fee 1 USD) and
    100,000 XBTUSD @ 10,000; S2 long 2 NIFTY @ 200 INR. Marks AAPL 160, XBTUSD 10,500,
    NIFTY 210, USDINR 83 (INR per USD, the RBI reference-rate convention); starting cash
    1,000 INR. The published documents, the Overall row and AUM are the engine's fed the
    same events, and by hand:

    1. no BTCINR tick yet: S1 has no rate for its BTC P&L, so its money totals, the Overall
       totals and AUM are null with ``missing_rate``; S2's equity is 1,000 - 400 + 420 = 1,020;
    2. BTCINR 5,000,000 alone: XBTUSD unrealized 100,000 x (1/10,000 - 1/10,500) BTC (BitMEX
       inverse guide) x 5,000,000 = 2,380,952.38 INR; S1 cash 1,000 + (-1,500 - 1) x 83 =
       -123,583; equity -123,583 + 1,600 x 83 + 2,380,952.38 (an inverse contract adds its
       unrealized P&L, not its face value);
    3. USDINR 84 alone: S1 equity up by 84 - 83 per net USD held (1,600 - 1,501 = 99): +99.

    ``fifo_kill``: the daemon runs ``--cost-basis fifo``; after step 3 it is killed (kill -9),
    S1 buys 10 AAPL @ 170 and sells 15 @ 180 while it is down, and a restarted daemon
    publishes the engine's FIFO book: the sale closes the 10 @ 150 lot, then 5 of the 10 @
    170 (realized 10 x 30 + 5 x 10 = 350 USD = 29,400 INR at 84; average cost would give
    15 x (180 - 160) = 300), 5 AAPL left at 170.
    """
    fifo = ("--cost-basis", "fifo") if fifo_kill else ()
    path = tmp_path / "instruments.csv"
    path.write_text(INSTRUMENTS_CSV)
    fills = [(f"paper_{s}".encode(), _trade(f, s, t, side, q, p, fee)) for f, s, t, side, q, p, fee
             in (("a", "S1", AAPL, "BUY", 10, 150.0, 1.0),
                 ("b", "S1", XBTUSD, "BUY", 100_000, 10_000.0, 0.0),
                 ("c", "S2", NIFTY, "BUY", 2, 200.0, 0.0))]
    ticks = [_tick(USDINR, 83.0, 1), _tick(AAPL, 160.0, 2), _tick(XBTUSD, 10_500.0, 3),
             _tick(NIFTY, 210.0, 4)]
    produce(bootstrap, [(names.fills("paper"), k, v) for k, v in fills]
            + [(names.ticks, b"t", v) for v in ticks])
    daemon = start("--instruments", str(path), "--starting-cash", "1000",
                   "--tick-publish-ms", "0", *fifo)
    engine = PortfolioEngine(instruments=load_instruments(path), starting_cash=1_000.0,
                             account_currency="INR",
                             cost_basis="fifo" if fifo_kill else "average")
    engine.apply([v for _, v in fills] + ticks)

    def doc(pid: str) -> dict[str, Any]:
        return json.loads(client.get(f"portfolio:{pid}") or "{}")  # type: ignore[no-any-return]

    def matches() -> bool:
        """Every published document is the engine's (once the daemon caught up)."""
        try:
            for pid in ("paper_S1", "paper_S2", "paper_Overall"):
                same(doc(pid), engine.portfolio(pid), pid)
            same(json.loads(client.get("aum") or "{}"), engine.aum(), "aum")
        except AssertionError:
            return False
        return True

    def caught_up(what: str) -> None:
        wait_for(what, matches, diagnose=lambda: f"{doc('paper_S1')}\n{daemon.log()[-2000:]}")
        for pid in ("paper_S1", "paper_S2", "paper_Overall"):  # the failure, if any, shown
            same(doc(pid), engine.portfolio(pid), pid)

    caught_up("the book without a BTC rate")
    s1, s2, overall = doc("paper_S1"), doc("paper_S2"), doc("paper_Overall")
    assert s1["missing_rate"] is True and s1["equity"] is None and s1["cash"] is None
    assert s1["positions"][str(XBTUSD)]["missing_rate"] is True
    assert s1["positions"][str(AAPL)]["fx_rate"] == 83.0
    assert s1["positions"][str(AAPL)]["unrealized_pnl"] == 100.0  # USD, its pnl currency
    assert (s2["missing_rate"], s2["equity"]) == (False, 1_020.0)
    assert overall["missing_rate"] is True and overall["equity"] is None
    assert overall["open_positions"] == 3
    aum = json.loads(client.get("aum") or "{}")
    assert aum["total"] is None and aum["by_source"] == {"paper": None}
    assert client.hget(f"position:paper_S1:{XBTUSD}", "missing_rate") == "true"
    reader = PortfolioReader(client)  # readers see null totals as nan, the flag in extra
    got = reader.get_portfolio("paper_S1")
    assert got is not None and math.isnan(got.equity) and got.extra == {"missing_rate": True}

    rate = [_tick(BTCINR, 5_000_000.0, 5)]
    produce(bootstrap, [(names.ticks, b"t", v) for v in rate])
    engine.apply(rate)
    caught_up("the BTCINR rate")
    btc_inr = 100_000 * (1 / 10_000 - 1 / 10_500) * 5_000_000.0
    s1 = doc("paper_S1")
    xbt = s1["positions"][str(XBTUSD)]
    assert (xbt["pnl_currency"], xbt["inverse"], xbt["fx_rate"]) == ("BTC", True, 5e6)
    assert xbt["average_price"] == pytest.approx(10_000.0, rel=1e-12)
    assert xbt["market_value"] == pytest.approx(100_000 / 10_500, rel=1e-12)  # BTC
    assert s1["missing_rate"] is False and s1["total_fees"] == 83.0
    assert s1["cash"] == pytest.approx(-123_583.0, abs=1e-6)
    equity = -123_583.0 + 1_600 * 83.0 + btc_inr
    assert s1["equity"] == pytest.approx(equity, abs=1e-6)
    assert s1["total_unrealized_pnl"] == pytest.approx(100 * 83.0 + btc_inr, abs=1e-6)
    assert json.loads(client.get("aum") or "{}")["total"] == pytest.approx(equity + 1_020.0,
                                                                          abs=1e-6)
    assert doc("paper_Overall")["positions"][str(XBTUSD)]["average_price"] == pytest.approx(
        10_000.0, rel=1e-12)

    rate = [_tick(USDINR, 84.0, 6)]
    produce(bootstrap, [(names.ticks, b"t", v) for v in rate])
    engine.apply(rate)
    caught_up("the new USDINR rate")
    assert doc("paper_S1")["equity"] == pytest.approx(equity + 99.0, abs=1e-6)
    assert doc("paper_Overall")["equity"] == pytest.approx(equity + 99.0 + 1_020.0, abs=1e-6)
    if not fifo_kill:
        assert daemon.terminate() == 0
        return
    daemon.kill()
    more = [(b"paper_S1", _trade("d", "S1", AAPL, "BUY", 10, 170.0)),
            (b"paper_S1", _trade("e", "S1", AAPL, "SELL", 15, 180.0))]
    produce(bootstrap, [(names.fills("paper"), k, v) for k, v in more])
    engine.apply([v for _, v in more])
    daemon = start("--instruments", str(path), "--starting-cash", "1000",
                   "--tick-publish-ms", "0", *fifo)
    caught_up("the FIFO sale after a kill -9")
    aapl = doc("paper_S1")["positions"][str(AAPL)]
    assert (aapl["quantity"], aapl["average_price"]) == (5, 170.0)  # the 10 @ 170 lot's rest
    assert aapl["realized_pnl"] == pytest.approx(350.0)  # USD: 10 x 30 + 5 x 10
    assert doc("paper_S1")["total_realized_pnl"] == pytest.approx(350.0 * 84.0)
    assert daemon.terminate() == 0
