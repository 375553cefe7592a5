"""The dashboard in headless Chromium over ``pm-polars serve`` and a real Redis.

The page must show the published numbers exactly (``data-value`` is the full-precision
number, compared with the Redis documents read independently), take a new batch without a
reload (a ``window`` marker set before survives), sort, open positions, and show the
disconnected state when the server goes away. The hand-worked book is ``test_serve_api``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from reference import T0, fill
from support import RedisServer
from support.browser import available, chromium
from support.published import documents
from support.serve_book import IDS, PREFIX, A, publish_book, serve
from support.serve_process import ServeProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and /usr/bin/chromedriver "
                       "(make test installs them: apt-get install chromium chromium-driver)"),
]

FIELDS = ("cash", "total_realized_pnl", "total_unrealized_pnl", "total_pnl", "net_pnl",
          "equity", "gross_exposure", "open_positions")
READ_CELLS = """
const out = {};
for (const row of document.querySelectorAll('[data-portfolio-id]')) {
  const cells = {};
  for (const c of row.querySelectorAll('[data-field][data-value]')) cells[c.dataset.field] = c.dataset.value;
  out[row.dataset.portfolioId] = cells;
}
const aum = document.querySelector('[data-field="aum_total"]');
return {rows: out, aum: aum ? aum.dataset.value : null,
        conn: document.getElementById('conn').dataset.state, marker: window.__marker || null,
        order: [...document.querySelectorAll('#rows [data-portfolio-id]')].map(r => r.dataset.portfolioId)};
"""


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with chromium() as d:
        yield d


def wait(driver: Any, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the page's cells (one script per poll) until ``predicate(state)`` holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}

    def check(d: Any) -> bool:
        seen.clear()
        seen.update(d.execute_script(READ_CELLS))
        return bool(predicate(seen))

    try:
        WebDriverWait(driver, timeout, 0.05).until(check)
    except Exception as exc:
        raise AssertionError(f"page never satisfied the condition; last state: {seen}") from exc
    return seen


def matches(state: dict[str, Any], docs: dict[str, dict[str, Any]]) -> bool:
    rows = state["rows"]
    return set(rows) == set(docs) and all(
        float(rows[p][f]) == docs[p][f] for p in docs for f in FIELDS if f in rows[p])


def test_page_shows_redis_live_and_disconnects(driver: Any, redis_srv: RedisServer,
                                               tmp_path: Path) -> None:
    client = redis_srv.client()
    writer = publish_book(client)
    server = serve(redis_srv.url, tmp_path)
    try:
        driver.get(server.url + "/")
        docs = documents(client, PREFIX)
        state = wait(driver, lambda s: matches(s, docs) and s["aum"])
        assert sorted(state["rows"]) == IDS
        for pid in IDS:  # exactly one element per portfolio, every hook field present
            assert driver.execute_script(
                f"return document.querySelectorAll('[data-portfolio-id=\"{pid}\"]').length") == 1
            assert set(FIELDS) <= set(state["rows"][pid])
            for f in FIELDS:
                assert float(state["rows"][pid][f]) == docs[pid][f], (pid, f)
        aum = json.loads(client.get(f"{PREFIX}aum") or "null")
        assert float(state["aum"]) == aum["total"]
        assert state["conn"] == "live"
        assert state["order"][:2] == ["live_Overall", "paper_Overall"]  # Overall rows on top
        overall, strategy = (driver.execute_script(
            f"return getComputedStyle(document.querySelector('[data-portfolio-id=\"{p}\"]'))"
            ".backgroundColor") for p in ("paper_Overall", "paper_S1"))
        assert overall != strategy  # visually distinct

        # a new batch shows without reload
        driver.execute_script("window.__marker = 'same page'")
        writer.batch({0: [fill("S1", A, "SELL", 60, 13.0, fee=1.0, ts=T0 + 30, fill_id="f7")]})
        docs = documents(client, PREFIX)
        assert docs["paper_S1"]["total_realized_pnl"] == 260.0
        state = wait(driver, lambda s: matches(s, docs), timeout=5)
        assert state["marker"] == "same page"

        # sorting by net P&L (descending first), Overall rows stay on top
        driver.find_element("css selector", '[data-sort="net_pnl"]').click()
        order = wait(driver, lambda s: True)["order"]
        strategies = [p for p in order if not p.endswith("_Overall")]
        assert strategies == sorted(strategies, key=lambda p: -docs[p]["net_pnl"])

        # a click opens the positions of the portfolio
        driver.find_element("css selector", '[data-portfolio-id="paper_S2"]').click()
        rows = driver.execute_script(
            "return document.getElementById('positions').hidden ? null : "
            "[...document.querySelectorAll('#pos-rows tr')].map(r => r.cells[0].textContent)")
        assert rows == [str(t) for t in sorted(map(int, docs["paper_S2"]["positions"]))]

        # every request of the page went to the server itself
        hosts = set()
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                url = msg["params"]["request"]["url"]
                if not url.startswith("data:"):
                    hosts.add(urlparse(url).netloc)
        assert hosts == {urlparse(server.url).netloc}

        # Redis goes away: the page says the data is stale, and is live again after
        redis_srv.stop()
        wait(driver, lambda s: s["conn"] == "stale", timeout=10)
        assert "read model unavailable" in driver.find_element("id", "conn").text
        redis_srv.start()
        wait(driver, lambda s: s["conn"] == "live" and matches(s, docs), timeout=15)

        server.stop()
        state = wait(driver, lambda s: s["conn"] == "disconnected", timeout=10)
        text = driver.find_element("id", "conn").text
        assert text.startswith("disconnected since")
    finally:
        server.stop()


def test_page_asks_for_the_token_once(driver: Any, redis_srv: RedisServer,
                                      tmp_path: Path) -> None:
    client = redis_srv.client()
    publish_book(client)
    server = ServeProcess(["serve", "--redis-url", redis_srv.url, "--key-prefix", PREFIX,
                           "--host", "127.0.0.2", "--auth-token", "s3cret"],
                          tmp_path / "auth.log", host="127.0.0.2").wait_ready()
    try:
        driver.get(server.url + "/")
        wait(driver, lambda s: driver.find_element("id", "login").is_displayed())
        assert wait(driver, lambda s: True)["rows"] == {}  # nothing without the token
        driver.find_element("id", "login-token").send_keys("s3cret")
        driver.find_element("css selector", "#login-form button").click()
        docs = documents(client, PREFIX)
        wait(driver, lambda s: matches(s, docs) and s["conn"] == "live")
        driver.refresh()  # asked once: the tab remembers it
        wait(driver, lambda s: matches(s, docs) and s["conn"] == "live")
        assert not driver.find_element("id", "login").is_displayed()
    finally:
        server.stop()


def test_todays_figures_come_first_when_documents_carry_them(driver: Any) -> None:
    """The live day P&L work adds ``day_pnl``/``m2m``/``trading_day`` to the documents; no
    writer publishes them yet, so they are added here to engine documents, in memory."""
    import threading

    import uvicorn
    from support.ports import free_port, wait_for_port

    from pm_polars import PortfolioEngine
    from pm_polars.demo.feed import generate_batches
    from pm_polars.serve.app import create_app
    from pm_polars.serve.memory import MemorySource, document_text

    eng = PortfolioEngine(starting_cash=1e6)
    eng.apply(next(generate_batches(7, 3000, 3000)))
    docs = eng.portfolio_documents(eng.portfolio_ids() + ["paper_Overall", "live_Overall"])
    source = MemorySource()
    for pid, doc in docs.items():
        doc.update(day_pnl=12.5 + len(pid), m2m=-3.25, day_net_pnl=-4.0,
                   trading_day="2026-12-03")
        source.docs[pid] = document_text(doc)
    source.aum_text = document_text(eng.aum())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(source), port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        driver.get(f"http://127.0.0.1:{port}/")
        wait(driver, lambda s: len(s["rows"]) == len(docs))
        heads = driver.execute_script(
            "return [...document.querySelectorAll('#head [data-sort]')].map(e => e.dataset.sort)")
        assert heads[:6] == ["portfolio_id", "source", "m2m", "day_net_pnl", "day_pnl", "cash"]
        assert driver.find_element("id", "day").text == "trading day 2026-12-03"
        state = wait(driver, lambda s: True)
        for pid, doc in docs.items():
            assert float(state["rows"][pid]["day_pnl"]) == doc["day_pnl"]
    finally:
        driver.get("about:blank")  # closes the page's stream
        server.should_exit = True
        thread.join(timeout=10)
