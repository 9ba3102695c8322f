"""Chromium over HTTP/2: twenty EventSources on one origin, all live.

Over HTTP/1.1 a browser opens at most six connections to an origin, so a
page's seventh EventSource waits for one of the six to end; over HTTP/2
they are streams of one connection. Chromium and Playwright as in
``tests/transports/test_dashboard.py`` (skipped without them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..conftest import UNIT
from ..transports.test_dashboard import BROWSER_ARGS, WAIT_MS, chromium_path, playwright_api
from .conftest import H2Hub

pytestmark = pytest.mark.timeout(90 * UNIT)

SOURCES = 20

OPEN_SOURCES = """(n) => {
  window.got = Array(n).fill(0);
  window.opened = Array(n).fill(false);
  for (let i = 0; i < n; i++) {
    const es = new EventSource(`/v1/topics/browser.t${i % 4}/events?after=end`);
    es.onopen = () => { window.opened[i] = true; };
    es.addEventListener("message", () => { window.got[i] += 1; });
  }
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found: install Debian's chromium or set HUBBUB_CHROMIUM")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=path,
                                    args=[*BROWSER_ARGS, "--ignore-certificate-errors"])
        try:
            yield b
        finally:
            await b.close()


async def test_twenty_event_sources_on_one_origin_all_live(h2_hub: H2Hub, browser: Any) -> None:
    """Twenty EventSources of one page, over one HTTP/2 connection, all get
    the message published after they opened."""
    context = await browser.new_context(ignore_https_errors=True)
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(f"{h2_hub.url}/healthz")
        assert await page.evaluate(
            "performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        await page.evaluate(OPEN_SOURCES, SOURCES)
        await page.wait_for_function("window.opened.every(Boolean)")
        async with h2_hub.client() as client:
            for t in range(4):
                r = await client.post(f"/v1/topics/browser.t{t}", json={"t": t})
                assert r.status_code == 201
        await page.wait_for_function("window.got.every(n => n >= 1)")
        streams = [len(p.streams) for p in h2_hub.protocols if p not in h2_hub.lost]
        assert max(streams) >= SOURCES  # the page's connection carries them all
    finally:
        await context.close()
