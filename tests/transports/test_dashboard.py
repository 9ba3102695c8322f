"""The dashboard at ``/``, in a real Chromium driven by Playwright, against a real hub.

The page is a client of the hub's doors, so these tests publish over HTTP and
watch the page pick messages up live over SSE and over the WebSocket.

Chromium: ``HUBBUB_CHROMIUM`` if set, else ``/usr/bin/chromium`` or the first
``chromium``/``chromium-browser``/``google-chrome`` on the PATH (``make test``
installs Debian's ``chromium`` when none is there). Without one, or without
the ``playwright`` package, these tests are skipped, saying which is missing.

``HUBBUB_SCREENSHOT=1`` makes :func:`test_dashboard_screenshot` write
``docs/dashboard.png`` (the README's picture); otherwise it writes to a
temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from hubbub.config import Config
from hubbub.core import PublishItem
from tests.conftest import UNIT, HubServer, start_server, store_url

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed (pip install -e '.[test]')")

DOCS = Path(__file__).resolve().parents[2] / "docs"
BROWSER_ARGS = [
    # As root (CI) Chromium needs --no-sandbox; the rest keep it off the network.
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: Playwright's waits, in milliseconds.
WAIT_MS = 10_000 * UNIT


def chromium_path() -> str | None:
    candidates = [os.environ.get("HUBBUB_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found: install Debian's chromium (make test does) "
                    "or set HUBBUB_CHROMIUM")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"orders": {"max_deliver": 3}}})


@pytest.fixture
async def hub(tmp_path: Path, config: Config) -> AsyncIterator[HubServer]:
    srv = await start_server(store_url("sqlite", tmp_path), config)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = await context.new_page()
    pg.set_default_timeout(WAIT_MS)
    playwright_api.expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        await context.close()
    assert not errors, errors


async def publish(client: httpx.AsyncClient, topic: str, data: Any) -> int:
    r = await client.post(f"/v1/topics/{topic}", json=data)
    assert r.status_code == 201, r.text
    offset: int = r.json()["offset"]
    return offset


async def test_dashboard_follows_a_topic_live_over_sse_and_websocket(
    hub: HubServer, page: Any
) -> None:
    """Messages published over HTTP appear on the page as they are stored, over
    SSE and then over the WebSocket; the page counts as a subscriber of each door."""
    metrics = hub.hub.metrics
    async with hub.client() as client:
        await publish(client, "chat.room1", {"text": "before the page"})
        await page.goto(f"{hub.url}/#follow=chat.room1&door=sse&refresh=300")
        status = page.locator("#follow-status")
        await playwright_api.expect(status).to_have_attribute("data-state", "live")
        await playwright_api.expect(status).to_contain_text("over SSE")
        assert metrics.sse.open == 1

        for i in range(3):
            await publish(client, "chat.room1", {"text": f"hello {i}"})
        items = page.locator("#messages li")
        await playwright_api.expect(items).to_have_count(3)
        # Newest first; "new only" means the message stored before is not shown.
        await playwright_api.expect(items.first).to_contain_text('{"text":"hello 2"}')
        await playwright_api.expect(items.nth(2)).to_contain_text("#2")
        assert metrics.sse.deliveries >= 3

        # The periodic picture: the topic, its last offset, the open SSE stream.
        row = page.locator('#topics tbody tr[data-topic="chat.room1"]')
        await playwright_api.expect(row.locator("td").nth(1)).to_have_text("4")
        await playwright_api.expect(row).to_have_class("selected")
        await playwright_api.expect(page.locator("#status")).to_have_attribute(
            "data-state", "live")
        await playwright_api.expect(page.locator("#connected-doors")).to_contain_text("SSE 1")

        # Switch door: the WebSocket, from the start of the topic.
        await page.select_option("#follow-door", "ws")
        await page.select_option("#follow-from", "start")
        await page.click("#follow-go")
        await playwright_api.expect(status).to_contain_text("over WebSocket")
        await playwright_api.expect(items).to_have_count(4)  # the history, from offset 1
        await playwright_api.expect(items.last).to_contain_text("before the page")
        await publish(client, "chat.room1", {"text": "over the socket"})
        await playwright_api.expect(items).to_have_count(5)
        await playwright_api.expect(items.first).to_contain_text("over the socket")
        await playwright_api.expect(page.locator("#connected-doors")).to_contain_text(
            "WebSocket 1")
        assert metrics.ws.open == 1 and metrics.ws.deliveries >= 5
        await playwright_api.expect(page.locator("#connected-doors")).to_contain_text("SSE 0")
        assert page.url.endswith("#follow=chat.room1&door=ws&from=start&refresh=300")


async def test_clicking_a_topic_follows_it(hub: HubServer, page: Any) -> None:
    """A click on a row of the topics table follows that topic."""
    async with hub.client() as client:
        await publish(client, "news.today", {"headline": "first"})
        await page.goto(f"{hub.url}/#refresh=300")
        row = page.locator('#topics tbody tr[data-topic="news.today"]')
        await row.click()
        status = page.locator("#follow-status")
        await playwright_api.expect(status).to_have_attribute("data-state", "live")
        await playwright_api.expect(page.locator("#follow-topic")).to_have_value("news.today")
        await publish(client, "news.today", {"headline": "second"})
        await playwright_api.expect(page.locator("#messages li")).to_have_count(1)
        await playwright_api.expect(page.locator("#messages li")).to_contain_text("second")


async def test_message_text_is_never_markup(hub: HubServer, page: Any) -> None:
    """Data that looks like HTML is shown as text: nothing from a topic runs or renders."""
    async with hub.client() as client:
        await page.goto(f"{hub.url}/#follow=x.y&refresh=300")
        await playwright_api.expect(page.locator("#follow-status")).to_have_attribute(
            "data-state", "live")
        evil = '<img src=x onerror="document.title=\'owned\'"><b>bold</b>'
        await publish(client, "x.y", {"html": evil})
        item = page.locator("#messages li")
        await playwright_api.expect(item).to_have_count(1)
        await playwright_api.expect(item).to_contain_text("<img src=x")
        assert await page.locator("#messages img, #messages b").count() == 0
        assert await page.title() == "hubbub"


async def test_a_refused_pattern_says_why(hub: HubServer, page: Any) -> None:
    """Following a malformed pattern shows the hub's problem detail, on both doors."""
    await page.goto(f"{hub.url}/#follow=bad..topic&door=sse&refresh=300")
    status = page.locator("#follow-status")
    await playwright_api.expect(status).to_have_attribute("data-state", "error")
    await playwright_api.expect(status).to_contain_text("pattern tokens must be")
    await page.select_option("#follow-door", "ws")
    await page.click("#follow-go")
    await playwright_api.expect(status).to_contain_text("over WebSocket: refused")
    await playwright_api.expect(status).to_contain_text("pattern tokens must be")


async def _populate(hub: HubServer, client: httpx.AsyncClient) -> None:
    """A hub with some life in it: topics at different rates, a consumer group
    with leases out, jobs queued and running, an upload half way."""
    core = hub.hub
    for i in range(40):
        await core.publish_batch([
            PublishItem("orders.new", b'{"order": %d, "total": %d.50}' % (1000 + i, 20 + i)),
            PublishItem("sensors.temp.kitchen", b'{"celsius": %d.%d}' % (20 + i % 3, i % 10)),
        ])
    await core.publish("chat.room1", b'{"user":"ada","text":"deploying now"}')
    leases = await core.groups.pull("mailer", ["orders.*"], max_messages=12, start="start")
    await core.groups.ack("mailer", [x.lease_id for x in leases[:8]])
    for queue, n in (("transcode", 3), ("thumbnails", 2)):
        for i in range(n):
            await core.jobs.submit(queue, b'{"file": "clip-%d.mp4"}' % i)
    taken = await core.jobs.take("transcode", lease=300)
    assert taken is not None
    await core.jobs.progress(taken.job.id, taken.lease, 62.0, "encoding 1080p")
    r = await client.post("/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(4 << 20),
        "Upload-Metadata": "filename " + base64.b64encode(b"holiday.mov").decode()})
    assert r.status_code == 201, r.text
    r = await client.patch(r.headers["location"], content=b"\0" * (1 << 20), headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text


async def test_dashboard_screenshot(hub: HubServer, page: Any, tmp_path: Path) -> None:
    """The whole picture: groups, jobs and uploads from /v1/stats, rates from two
    reads of /v1/topics, a followed topic; saved as a PNG."""
    async with hub.client() as client:
        await _populate(hub, client)
        await page.goto(f"{hub.url}/#follow=orders.new&door=ws&refresh=500")
        await playwright_api.expect(page.locator("#follow-status")).to_have_attribute(
            "data-state", "live")
        await playwright_api.expect(page.locator('#groups tr[data-group="mailer"]')).to_contain_text(
            "orders.*")
        # Traffic while the page watches, so rates and sparklines have something to show.
        for i in range(16):
            await hub.hub.publish_batch([
                PublishItem("orders.new", b'{"order": %d, "total": 42.00}' % (2000 + i)),
                PublishItem("sensors.temp.kitchen", b'{"celsius": 21.%d}' % i),
                PublishItem("sensors.temp.kitchen", b'{"celsius": 21.%d}' % i),
            ])
            await asyncio.sleep(0.2)
        await playwright_api.expect(page.locator("#messages li")).to_have_count(16)
        group = page.locator('#groups tr[data-group="mailer"]')
        await playwright_api.expect(group.locator("td").nth(2)).to_have_text("4")  # pending
        await playwright_api.expect(group.locator("td").nth(3)).to_have_text("4")  # leased
        await playwright_api.expect(page.locator("#job-states")).to_contain_text("queued 4")
        await playwright_api.expect(page.locator("#jobs tbody")).to_contain_text("encoding 1080p")
        await playwright_api.expect(page.locator("#uploads tbody")).to_contain_text("holiday.mov")
        await playwright_api.expect(page.locator("#upload-bytes")).to_contain_text("1.0 MB")
        await playwright_api.expect(page.locator("#published-rate")).not_to_have_text("0 /s")
        target = DOCS / "dashboard.png" if os.environ.get("HUBBUB_SCREENSHOT") else (
            tmp_path / "dashboard.png")
        await page.screenshot(path=str(target), full_page=True)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_dashboard_works_where_the_hub_is_mounted(tmp_path: Path, page: Any) -> None:
    """Mounted at /hub, the page, its files and the doors it uses are all under /hub/."""
    from hubbub.transports.app import create_app

    hub_app = create_app("memory://")
    parent = Starlette(routes=[Mount("/hub", hub_app)])
    srv = await start_server_app(parent)
    try:
        async with httpx.AsyncClient(base_url=srv[0], timeout=10 * UNIT) as client:
            await page.goto(f"{srv[0]}/hub/#follow=chat.a&refresh=300")
            await playwright_api.expect(page.locator("#follow-status")).to_have_attribute(
                "data-state", "live")
            await playwright_api.expect(page.locator("#status")).to_have_attribute(
                "data-state", "live")
            r = await client.post("/hub/v1/topics/chat.a", json={"mounted": True})
            assert r.status_code == 201
            await playwright_api.expect(page.locator("#messages li")).to_contain_text("mounted")
    finally:
        await page.goto("about:blank")  # its streams end with it
        await hub_app.state.hub.stop()
        await srv[1]()


async def start_server_app(app: Any) -> tuple[str, Any]:
    """Serve any ASGI app on a free port; returns its URL and a stop function."""
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10 * UNIT):
        while not server.started:
            await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await asyncio.wait_for(task, 10 * UNIT)

    return f"http://127.0.0.1:{port}", stop
