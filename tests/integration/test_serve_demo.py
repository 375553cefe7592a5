"""``pm-polars demo --serve``: the paced synthetic feed served from memory (no Redis, Kafka).

The served documents must be well-formed read-model documents whose numbers hold together
(equity = cash + market value, net = realized + unrealized - fees, each ``{source}_Overall``
the sum of its strategies, aum the sum of strategy equity), and the stream must keep moving.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from support.serve_process import ServeProcess, SSEReader

from pm_polars.client.models import parse_portfolio

pytestmark = pytest.mark.integration


def test_demo_serve_is_live_and_consistent(tmp_path: Path) -> None:
    server = ServeProcess(["demo", "--serve", "--rate", "2000", "--live-batch", "200",
                           "--heartbeat-s", "1"], tmp_path / "demo.log").wait_ready()
    reader = SSEReader(server.url + "/api/stream")
    try:
        first = reader.next("snapshot", timeout=15)
        updates = [reader.next("update", timeout=10) for _ in range(3)]
        assert [int(u.id or 0) for u in updates] == sorted({int(u.id or 0) for u in updates})
        assert all(u.data["portfolios"] for u in updates)
        assert int(updates[0].id or 0) > int(first.id or 0)

        # a snapshot is one consistent read of every document and the aum (the first one
        # may predate the feed's first batch: take a new connection's)
        again = SSEReader(server.url + "/api/stream")
        try:
            snapshot = again.next("snapshot")
        finally:
            again.close()
        docs = {d["portfolio_id"]: d for d in snapshot.data["portfolios"]}
        aum = snapshot.data["aum"]
        body = httpx.get(server.url + "/api/portfolios", timeout=10).json()
        assert set(docs) <= {d["portfolio_id"] for d in body}  # portfolios only get added
        assert len(docs) >= 4 and any(p.endswith("_Overall") for p in docs)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for pid, doc in docs.items():
            pf = parse_portfolio(doc, pid)  # the client's models read it
            assert pf.equity == pytest.approx(pf.cash + pf.market_value, rel=1e-12)
            assert pf.net_pnl == pytest.approx(
                pf.total_realized_pnl + pf.total_unrealized_pnl - pf.total_fees, abs=1e-6)
            if not pf.is_aggregate:
                for f in ("cash", "equity", "total_realized_pnl", "total_fees"):
                    sums[pf.source][f] += getattr(pf, f)
        for source, want in sums.items():
            overall = docs[f"{source}_Overall"]
            for f, v in want.items():
                assert overall[f] == pytest.approx(v, rel=1e-9), (source, f)
            assert aum["by_source"][source] == pytest.approx(want["equity"], rel=1e-9)
        assert aum["total"] == pytest.approx(sum(w["equity"] for w in sums.values()), rel=1e-9)
        assert httpx.get(server.url + "/healthz", timeout=5).json()["source"] == "memory"
    finally:
        reader.close()
        server.stop()
