"""The read side (``pm_polars.client`` readers, ``pm-polars show``) against a real redis-server.

The state is published through the daemon's own code path (``support.book_writer``): a ``Book``,
``apply_batch`` and ``Checkpoint.commit`` (one MULTI/EXEC with the Lua aggregate and the
``portfolio-updates`` message), under a key prefix. The readers must give
the numbers of an in-process ``PortfolioEngine`` fed the same events, and the hand-worked
figures below.

Hand-worked state (starting cash 1,000,000, multiplier 1, A = 256265, B = 738561):

* paper_S1: BUY 100 A @ 10 fee 1, SELL 40 A @ 12 fee 1 -> 60 A avg 10, realized
  40 * 2 = 80, fees 2, cash 1e6 - 1000 - 1 + 480 - 1 = 999,478.
* paper_S2: SELL 10 B @ 50 fee 0.5, BUY 10 B @ 45 fee 0.5 -> B flat, realized 10 * 5 = 50;
  BUY 20 A @ 11 -> 20 A avg 11; cash 1e6 + 500 - 0.5 - 450 - 0.5 - 220 = 999,829.
* live_S3: SELL 10 B @ 50 fee 0.5 -> -10 B avg 50, cash 1,000,499.5.
* batch 1 ticks B @ 48, so A is marked at its latest fill, 11 (S2's buy). Batch 2 ticks A
  @ 11.5. After it: S1 unrealized 60 * 1.5 = 90, equity 999,478 + 690 = 1,000,168;
  S2 unrealized 20 * 0.5 = 10, equity 999,829 + 230 = 1,000,059, net 50 + 10 - 1 = 59;
  S3 unrealized (48 - 50) * -10 = 20, equity 1,000,499.5 - 480 = 1,000,019.5;
  paper_Overall: A 80 @ (600 + 220) / 80 = 10.25, equity 2,000,227;
  aum 3,000,246.5 (paper 2,000,227, live 1,000,019.5).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from polars.testing import assert_frame_equal
from reference import T0, fill, tick
from support import RedisServer
from support.book_writer import BookWriter
from support.ports import free_port

from pm_polars import PortfolioEngine
from pm_polars.client import (
    AsyncPortfolioReader,
    Aum,
    DocumentError,
    Portfolio,
    PortfolioReader,
    Price,
    Update,
)
from pm_polars.client.models import PORTFOLIO_FIELDS, POSITION_FIELDS
from pm_polars.daemon.checkpoint.plan import CommitOutcome, CommitPlan
from pm_polars.engine import views
from pm_polars.publish.keys import Keys

pytestmark = pytest.mark.integration

PREFIX = "desk1:"
GROUP = "g"
START = 1_000_000.0
A, B = 256265, 738561
REPO = Path(__file__).resolve().parents[2]

PAPER_FILLS = [
    fill("S1", A, "BUY", 100, 10.0, fee=1.0, ts=T0 + 1, fill_id="f1"),
    fill("S1", A, "SELL", 40, 12.0, fee=1.0, ts=T0 + 2, fill_id="f2"),
    fill("S2", B, "SELL", 10, 50.0, fee=0.5, ts=T0 + 3, fill_id="f3"),
    fill("S2", B, "BUY", 10, 45.0, fee=0.5, ts=T0 + 4, fill_id="f4"),
    fill("S2", A, "BUY", 20, 11.0, ts=T0 + 5, fill_id="f5"),
]
LIVE_FILLS = [fill("S3", B, "SELL", 10, 50.0, fee=0.5, ts=T0 + 6, fill_id="f6", source="live")]
BATCH1_TICKS = [tick(B, 48.0, ts=T0 + 10)]
BATCH2_TICKS = [tick(A, 11.5, ts=T0 + 20)]
STRATEGIES = ["live_S3", "paper_S1", "paper_S2"]
ALL_IDS = ["live_Overall", "live_S3", "paper_Overall", "paper_S1", "paper_S2"]


# ------------------------------------------------------------------ publishing
def _values(events: Sequence[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def Publisher(client: redis.Redis) -> BookWriter:  # noqa: N802 - reads as the writer it makes
    """One daemon instance's write path under ``PREFIX`` (see ``support.book_writer``)."""
    return BookWriter(client, PREFIX, group=GROUP, partitions=2, starting_cash=START)


def publish_all(client: redis.Redis) -> PortfolioEngine:
    """Both batches; returns the reference engine fed the same events in the same order."""
    daemon = Publisher(client)
    daemon.batch({0: PAPER_FILLS, 1: LIVE_FILLS}, BATCH1_TICKS)
    daemon.batch({}, BATCH2_TICKS)
    return reference(PAPER_FILLS + LIVE_FILLS + BATCH1_TICKS + BATCH2_TICKS)


def reference(events: Sequence[dict[str, Any]]) -> PortfolioEngine:
    ref = PortfolioEngine(starting_cash=START)
    ref.apply(_values(events))
    return ref


@pytest.fixture
def client(redis_srv: RedisServer) -> redis.Redis:
    return redis_srv.client()


@pytest.fixture
def reader(redis_srv: RedisServer) -> Any:
    with PortfolioReader.from_url(redis_srv.url, key_prefix=PREFIX) as r:
        yield r


# ------------------------------------------------------------------ comparison helpers
def approx_fields(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    """Same fields; strings/ints exact, floats to 1e-12 relative (Overall is summed in Lua)."""
    assert set(got) == set(want), where
    for name, value in want.items():
        if isinstance(value, float):
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-9), (where, name)
        elif name != "positions":
            assert got[name] == value and type(got[name]) is type(value), (where, name)


def approx_doc(got: dict[str, Any], want: dict[str, Any]) -> None:
    approx_fields(got, want, want["portfolio_id"])
    assert set(got["positions"]) == set(want["positions"])
    for tok, wpos in want["positions"].items():
        approx_fields(got["positions"][tok], wpos, f"{want['portfolio_id']}[{tok}]")


# ------------------------------------------------------------------ tests
def test_sync_reader_matches_engine_and_hand_numbers(client: redis.Redis,
                                                     reader: PortfolioReader) -> None:
    ref = publish_all(client)
    want = ref.portfolio_documents(ALL_IDS)

    assert reader.list_portfolios() == ALL_IDS
    for pid in ALL_IDS:
        pf = reader.get_portfolio(pid)
        assert pf is not None and pf.portfolio_id == pid and pf.extra == {}
        approx_doc(pf.as_dict(), want[pid])

    # hand-worked figures (module docstring)
    s1, s2, s3 = (reader.get_portfolio(p) for p in ("paper_S1", "paper_S2", "live_S3"))
    assert s1 is not None and s2 is not None and s3 is not None
    assert (s1.cash, s1.total_realized_pnl, s1.total_unrealized_pnl, s1.total_fees) == (
        999_478.0, 80.0, 90.0, 2.0)
    assert (s1.equity, s1.net_pnl, s1.gross_exposure, s1.open_positions) == (
        1_000_168.0, 168.0, 690.0, 1)
    assert s2.equity == 1_000_059.0 and s2.net_pnl == 59.0 and s2.open_positions == 1
    flat = s2.positions[B]
    assert (flat.quantity, flat.realized_pnl, flat.fees, flat.is_open) == (0, 50.0, 1.0, False)
    assert s3.positions[B].quantity == -10 and s3.total_unrealized_pnl == 20.0
    assert s3.equity == 1_000_019.5 and s3.net_exposure == -480.0
    overall = reader.get_portfolio("paper_Overall")
    assert overall is not None and overall.is_aggregate and not s1.is_aggregate
    assert overall.positions[A].quantity == 80
    assert overall.positions[A].average_price == pytest.approx(10.25, rel=1e-12)
    assert overall.equity == pytest.approx(2_000_227.0, rel=1e-12)
    aum = reader.aum()
    assert aum is not None and aum.extra == {}
    assert aum.total == pytest.approx(3_000_246.5, rel=1e-12)
    assert aum.by_source == {"live": 1_000_019.5, "paper": pytest.approx(2_000_227.0, rel=1e-12)}
    assert aum.total == pytest.approx(ref.aum()["total"], rel=1e-12)

    # batch reads, positions, per-position hashes, prices
    many = reader.get_portfolios(["paper_S1", "paper_nope", "live_S3"])
    assert list(many) == ["paper_S1", "live_S3"] and many["paper_S1"] == s1
    assert list(reader.get_portfolios()) == ALL_IDS
    assert reader.get_portfolios([]) == {}
    assert reader.get_portfolio("paper_nope") is None
    assert [p.instrument_token for p in reader.positions("paper_S2")] == [A, B]
    assert [p.instrument_token for p in reader.positions("paper_S2", open_only=True)] == [A]
    assert reader.positions("paper_nope") == []
    for pid in ALL_IDS:
        pf = reader.get_portfolio(pid)
        assert pf is not None
        for tok, pos in pf.positions.items():
            from_hash = reader.position(pid, tok)
            assert from_hash is not None and from_hash.portfolio_id == pid
            assert from_hash == pos, (pid, tok)  # hash text is repr/%.17g: exact
    assert reader.position("paper_S1", B) is None
    assert reader.prices() == {A: Price(11.5, (T0 + 20) * 10**6),
                               B: Price(48.0, (T0 + 10) * 10**6)}

    ov = reader.overview()
    assert ov.portfolios == reader.get_portfolios() and ov.aum == aum

    # frames: the engine's view columns, same numbers
    assert_frame_equal(reader.positions_frame(STRATEGIES), ref.positions(), check_exact=True)
    assert reader.positions_frame().columns == views.POSITION_COLUMNS
    assert_frame_equal(reader.portfolios_frame(),
                       ref.portfolios(aggregates=True).sort("portfolio_id"), rel_tol=1e-12)
    assert list(PORTFOLIO_FIELDS) == views.PORTFOLIO_COLUMNS
    assert ["portfolio_id", *POSITION_FIELDS] == views.POSITION_COLUMNS


def test_async_reader_returns_what_the_sync_reader_does(
    client: redis.Redis, redis_srv: RedisServer, reader: PortfolioReader
) -> None:
    publish_all(client)

    async def read() -> dict[str, Any]:
        async with AsyncPortfolioReader.from_url(redis_srv.url, key_prefix=PREFIX) as ar:
            return {
                "ids": await ar.list_portfolios(),
                "one": await ar.get_portfolio("paper_S1"),
                "none": await ar.get_portfolio("paper_nope"),
                "many": await ar.get_portfolios(["live_S3", "paper_nope", "paper_S2"]),
                "all": await ar.get_portfolios(),
                "positions": await ar.positions("paper_S2"),
                "open": await ar.positions("paper_S2", open_only=True),
                "position": await ar.position("live_S3", B),
                "prices": await ar.prices(),
                "aum": await ar.aum(),
                "overview": await ar.overview(),
                "pf_frame": await ar.portfolios_frame(),
                "pos_frame": await ar.positions_frame(),
            }

    got = asyncio.run(read())
    assert got["ids"] == reader.list_portfolios() == ALL_IDS
    assert got["one"] == reader.get_portfolio("paper_S1") and got["none"] is None
    assert list(got["many"]) == ["live_S3", "paper_S2"]
    assert got["many"] == reader.get_portfolios(["live_S3", "paper_S2"])
    assert got["all"] == reader.get_portfolios()
    assert got["positions"] == reader.positions("paper_S2")
    assert got["open"] == reader.positions("paper_S2", open_only=True)
    assert got["position"] == reader.position("live_S3", B)
    assert got["position"].quantity == -10 and got["position"].average_price == 50.0
    assert got["prices"] == reader.prices() and got["aum"] == reader.aum()
    assert got["overview"] == reader.overview()
    assert_frame_equal(got["pf_frame"], reader.portfolios_frame(), check_exact=True)
    assert_frame_equal(got["pos_frame"], reader.positions_frame(), check_exact=True)

    # an existing redis.asyncio client with bytes replies works too (and is left open)
    async def with_bytes_client() -> tuple[Portfolio | None, list[str]]:
        raw = redis.asyncio.Redis(host="127.0.0.1", port=redis_srv.port)
        async with AsyncPortfolioReader(raw, key_prefix=PREFIX) as ar:
            out = (await ar.get_portfolio("paper_S1"), await ar.list_portfolios())
        assert await raw.ping()
        await raw.aclose()
        return out

    one, ids = asyncio.run(with_bytes_client())
    assert one == reader.get_portfolio("paper_S1") and ids == ALL_IDS


def test_subscribers_receive_the_published_update(
    client: redis.Redis, redis_srv: RedisServer, reader: PortfolioReader
) -> None:
    daemon = Publisher(client)
    daemon.batch({0: PAPER_FILLS, 1: LIVE_FILLS}, BATCH1_TICKS)
    s1 = reader.get_portfolio("paper_S1")
    assert s1 is not None and s1.positions[A].last_price == 11.0  # A marked at its last fill
    assert s1.total_unrealized_pnl == 60.0

    async def scenario() -> tuple[Update | None, Update | None, CommitPlan, CommitOutcome]:
        async with AsyncPortfolioReader.from_url(redis_srv.url, key_prefix=PREFIX) as ar:
            async with ar.subscribe() as asub:
                with reader.subscribe() as sub:
                    # a malformed message is skipped, not fatal
                    client.publish(Keys(PREFIX).updates_channel, b"not json")
                    plan, outcome = daemon.batch({}, BATCH2_TICKS)
                    got_sync = sub.get(timeout=5)
                    assert sub.get(timeout=0.1) is None
                    # iteration; a newer writer's extra message fields are kept
                    client.publish(Keys(PREFIX).updates_channel,
                                   '{"portfolio_ids": ["x"], "ts": 7, "instance": "d2"}')
                    assert next(iter(sub)) == Update(["x"], 7, {"instance": "d2"})
                got_async = None
                async for update in asub:
                    got_async = update
                    break
        return got_sync, got_async, plan, outcome

    got_sync, got_async, plan, outcome = asyncio.run(scenario())
    # the tick on A rewrote its open holders S1 and S2 and their aggregate (hand-known)
    expected = Update(portfolio_ids=["paper_Overall", "paper_S1", "paper_S2"], ts=plan.ts_ns)
    assert outcome.updated == expected.portfolio_ids
    assert got_sync == expected and got_async == expected
    s1 = reader.get_portfolio("paper_S1")
    assert s1 is not None and s1.total_unrealized_pnl == 90.0 and s1.equity == 1_000_168.0


def test_unknown_fields_are_kept_and_do_not_break_readers(
    client: redis.Redis, redis_srv: RedisServer, reader: PortfolioReader
) -> None:
    publish_all(client)
    keys = Keys(PREFIX)
    raw = client.get(keys.portfolio("paper_S1"))
    assert isinstance(raw, str)
    doc = json.loads(raw)
    doc["currency"] = "INR"
    doc["risk"] = {"var_99": 1234.5}
    doc["positions"][str(A)]["isin"] = "INE000X01"
    client.set(keys.portfolio("paper_S1"), json.dumps(doc))
    client.hset(keys.position("paper_S1", A), "venue", "NSE")
    client.set(keys.aum, json.dumps({"total": 1.5, "by_source": {"paper": 1.5}, "as_of": 7}))

    pf = reader.get_portfolio("paper_S1")
    assert pf is not None
    assert pf.extra == {"currency": "INR", "risk": {"var_99": 1234.5}}
    assert pf.positions[A].extra == {"isin": "INE000X01"}
    assert pf.equity == 1_000_168.0 and pf.positions[A].quantity == 60
    assert pf.as_dict() == doc  # lossless: extras written back
    pos = reader.position("paper_S1", A)
    assert pos is not None and pos.extra == {"venue": "NSE"} and pos.quantity == 60
    assert reader.aum() == Aum(total=1.5, by_source={"paper": 1.5}, extra={"as_of": 7})
    assert "paper_S1" in reader.get_portfolios()

    async def via_async() -> Portfolio | None:
        async with AsyncPortfolioReader.from_url(redis_srv.url, key_prefix=PREFIX) as ar:
            return await ar.get_portfolio("paper_S1")

    assert asyncio.run(via_async()) == pf
    res = show(redis_srv.url, "paper_S1")
    assert res.returncode == 0 and "1,000,168.00" in res.stdout
    assert json.loads(show(redis_srv.url, "paper_S1", "--format", "json").stdout) == doc

    # a known field missing is an error that names the key and the field
    del doc["equity"]
    client.set(keys.portfolio("paper_S2"), json.dumps(doc))
    with pytest.raises(DocumentError, match=r"desk1:portfolio:paper_S2: missing field 'equity'"):
        reader.get_portfolio("paper_S2")
    res = show(redis_srv.url)
    assert res.returncode == 1 and res.stdout == ""
    assert_one_error_line(res.stderr, "missing field 'equity'")


# ------------------------------------------------------------------ pm-polars show
def show(url: str | None, *args: str, env: dict[str, str] | None = None,
         prefix: str | None = PREFIX) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pm_polars.cli", "show", *args]
    if url is not None:
        cmd += ["--redis-url", url]
    if prefix is not None:
        cmd += ["--key-prefix", prefix]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**base, **(env or {})})


def assert_one_error_line(stderr: str, text: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "ERROR" in lines[0] and text in lines[0], stderr


def test_show_prints_the_published_figures(client: redis.Redis, redis_srv: RedisServer,
                                           reader: PortfolioReader) -> None:
    publish_all(client)

    res = show(redis_srv.url)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for pid in ALL_IDS:
        assert f"| {pid} " in out
    s1_row = next(line for line in out.splitlines() if "| paper_S1 " in line)
    # m2m today, day net, equity, cash, realized, unrealized, fees, net P&L, gross exp,
    # net exp, open (one trading day: m2m = realized + unrealized, day net = net P&L)
    cells = [c.strip() for c in s1_row.strip("|").split("|")]
    assert cells == ["paper_S1", "170.00", "168.00", "1,000,168.00", "999,478.00", "80.00",
                     "90.00", "2.00", "168.00", "690.00", "690.00", "1"]
    assert out.rstrip().endswith("AUM 3,000,246.50 (live 1,000,019.50 | paper 2,000,227.00)"
                                 " | m2m today +250.00")
    assert out.startswith("trading day ")

    res = show(redis_srv.url, "paper_S2")
    assert res.returncode == 0, res.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in res.stdout.splitlines() if line.startswith("| 7") or
            line.startswith("| 2")}
    # token, m2m today, day P&L, overnight, qty, avg price, last, market value, realized,
    # unrealized, fees, net P&L
    assert rows[str(B)] == [str(B), "50.00", "50.00", "0", "0", "0.00", "48.00", "0.00",
                            "50.00", "0.00", "1.00", "49.00"]
    assert rows[str(A)] == [str(A), "10.00", "10.00", "0", "20", "11.00", "11.50", "230.00",
                            "0.00", "10.00", "0.00", "10.00"]
    assert "totals: equity 1,000,059.00 | cash 999,829.00" in res.stdout
    assert "net P&L 59.00" in res.stdout
    res = show(redis_srv.url, "paper_S2", "--open-only")
    assert str(A) in res.stdout and f"| {B} " not in res.stdout

    # json: the published documents, same as the reader's
    everything = json.loads(show(redis_srv.url, "--format", "json").stdout)
    assert [p["portfolio_id"] for p in everything["portfolios"]] == ALL_IDS
    assert everything["aum"]["total"] == pytest.approx(3_000_246.5, rel=1e-12)
    one = json.loads(show(redis_srv.url, "live_Overall", "--format", "json").stdout)
    pf = reader.get_portfolio("live_Overall")
    assert pf is not None and one == pf.as_dict()

    # settings from the daemon's environment variables
    res = show(None, "live_S3", prefix=None,
               env={"PM_REDIS_URL": redis_srv.url, "PM_KEY_PREFIX": PREFIX})
    assert res.returncode == 0 and "totals: equity 1,000,019.50" in res.stdout

    # unknown portfolio, wrong prefix, unreachable Redis: exit 1, one log line
    res = show(redis_srv.url, "paper_nope")
    assert res.returncode == 1 and res.stdout == ""
    assert_one_error_line(res.stderr, "unknown portfolio 'paper_nope' (5 published")
    res = show(redis_srv.url, prefix="other:")
    assert res.returncode == 0 and res.stdout == "(no portfolios published)\n"
    res = show(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert res.returncode == 1 and res.stdout == ""
    assert_one_error_line(res.stderr, "cannot read Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in res.stderr


def test_password_and_tls_urls(client: redis.Redis, redis_srv: RedisServer) -> None:
    publish_all(client)
    client.config_set("requirepass", "s3cret")
    try:
        port = redis_srv.port
        with PortfolioReader.from_url(redis_srv.url, PREFIX, password="s3cret") as r:
            assert r.list_portfolios() == ALL_IDS
        with PortfolioReader.from_url(f"redis://:s3cret@127.0.0.1:{port}/0", PREFIX) as r:
            assert r.aum() is not None
        with PortfolioReader.from_url(redis_srv.url, PREFIX) as r, pytest.raises(
                redis.AuthenticationError):
            r.list_portfolios()
        res = show(redis_srv.url, env={"PM_REDIS_PASSWORD": "s3cret"})
        assert res.returncode == 0 and "paper_Overall" in res.stdout
        res = show(redis_srv.url, env={"PM_REDIS_PASSWORD": "wrong"})
        assert res.returncode == 1
        assert_one_error_line(res.stderr, "cannot read Redis")
        assert "wrong" not in res.stderr
    finally:
        redis.Redis(host="127.0.0.1", port=redis_srv.port, password="s3cret").config_set(
            "requirepass", "")
    # rediss:// selects TLS connections (no TLS server here: only the client is checked)
    tls = PortfolioReader.from_url("rediss://:pw@redis.example:6380/0", PREFIX)
    assert tls.client.connection_pool.connection_class is redis.SSLConnection
    tls.close()
    atls = AsyncPortfolioReader.from_url("rediss://redis.example:6380/0")
    assert atls.client.connection_pool.connection_class is redis.asyncio.SSLConnection
