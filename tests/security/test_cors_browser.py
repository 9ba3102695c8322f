"""A page on another origin, in a real Chromium, against a real hub.

The page is served on ``127.0.0.1:PORT2``; the hub listens on ``localhost:PORT1``
(another site). The page reads, publishes (a "simple" text/plain POST and a
preflighted JSON one), uploads with tus's headers, opens an EventSource and a
WebSocket: by default every one of them fails and nothing is stored; with
the page's origin in ``[server] cors_origins``, every one works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import HubServer, serve_app, start_server
from tests.transports.test_dashboard import browser  # noqa: F401 (the fixture)

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed (pip install -e '.[test]')")

#: Run in the page: each door, one result each (an error's name when it failed).
SCRIPT = """async (hub) => {
  const out = {};
  const attempt = async (name, f) => {
    try { out[name] = await f(); } catch (e) { out[name] = "error: " + e.name; }
  };
  await attempt("read", async () => (await fetch(hub + "/v1/topics")).status);
  await attempt("simple", async () => (await fetch(hub + "/v1/topics/web.a", {
    method: "POST", body: "hi", headers: {"content-type": "text/plain"}})).status);
  await attempt("json", async () => (await fetch(hub + "/v1/topics/web.a", {
    method: "POST", body: JSON.stringify({n: 1}),
    headers: {"content-type": "application/json", "idempotency-key": "k1"}})).status);
  await attempt("tus", async () => {
    const r = await fetch(hub + "/v1/uploads/", {method: "POST", headers: {
      "tus-resumable": "1.0.0", "upload-length": "2", "upload-metadata": "filename YS50eHQ="}});
    const where = r.headers.get("location");
    const p = await fetch(new URL(where, hub), {method: "PATCH", body: "ok", headers: {
      "tus-resumable": "1.0.0", "upload-offset": "0",
      "content-type": "application/offset+octet-stream"}});
    return r.status + " " + (where ? "location" : "none") + " " + p.status + " "
      + p.headers.get("upload-offset");
  });
  out.sse = await new Promise((done) => {
    const source = new EventSource(hub + "/v1/topics/web.a/events?after=start");
    source.addEventListener("ready", () => { source.close(); done("ready"); });
    source.onerror = () => { source.close(); done("error"); };
  });
  out.ws = await new Promise((done) => {
    const ws = new WebSocket(hub.replace("http", "ws") + "/v1/ws");
    ws.onopen = () => ws.send(JSON.stringify({op: "sub", id: 1, topics: ["web.>"]}));
    ws.onmessage = (e) => { ws.close(); done(JSON.parse(e.data).op); };
    ws.onerror = () => done("error");
  });
  return out;
}"""


async def _page_server() -> HubServer:
    page = Starlette(routes=[Route("/", lambda _: HTMLResponse("<!doctype html><p>app</p>"))])
    # The server runs a hub beside any app it serves; this one only serves the page.
    return await serve_app(page, create_app("memory://", Config()))


@pytest.fixture
async def app_page() -> AsyncIterator[HubServer]:
    srv = await _page_server()
    try:
        yield srv
    finally:
        await srv.stop()


async def _run(browser: Any, page_url: str, hub_url: str) -> dict[str, Any]:  # noqa: F811
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(page_url)
        result: dict[str, Any] = await page.evaluate(SCRIPT, hub_url)
        return result
    finally:
        await context.close()


def _hub_url(srv: HubServer) -> str:
    return srv.url.replace("127.0.0.1", "localhost")


async def test_a_page_on_another_origin_gets_nothing_by_default(
    browser: Any, app_page: HubServer, tmp_path: Path  # noqa: F811
) -> None:
    hub = await start_server("memory://", Config.from_dict(
        {"uploads": {"dir": str(tmp_path / "uploads")}}))
    try:
        got = await _run(browser, app_page.url + "/", _hub_url(hub))
        assert got == {"read": "error: TypeError", "simple": "error: TypeError",
                       "json": "error: TypeError", "tus": "error: TypeError",
                       "sse": "error", "ws": "error"}, got
        async with hub.client() as c:
            r = await c.get("/v1/topics/web.a/messages", params={"after": "start"})
            assert r.json()["messages"] == []  # the simple POST was refused, not just unread
    finally:
        await hub.stop()


async def test_a_configured_origin_works_on_every_door(
    browser: Any, app_page: HubServer, tmp_path: Path  # noqa: F811
) -> None:
    config = Config.from_dict({"server": {"cors_origins": [app_page.url]},
                               "uploads": {"dir": str(tmp_path / "uploads")}})
    hub = await start_server("memory://", config)
    try:
        got = await _run(browser, app_page.url + "/", _hub_url(hub))
        assert got == {"read": 200, "simple": 201, "json": 201, "tus": "201 location 204 2",
                       "sse": "ready", "ws": "ok"}, got
    finally:
        await hub.stop()
