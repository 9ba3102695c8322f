"""The hub as an ASGI app mounted inside a FastAPI application, on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect

from hubbub.transports.app import create_app
from tests.conftest import UNIT, free_port, store_url


@pytest.fixture
async def mounted(engine: str, tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    hub_app = create_app(store_url(engine, tmp_path))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub_app.state.hub:  # mounted apps get no lifespan of their own
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/hub", hub_app)

    @app.post("/orders")
    async def order(body: dict[str, Any]) -> dict[str, Any]:
        result = await hub_app.state.hub.publish("orders.new", json.dumps(body).encode())
        return {"cursor": result.message.cursor}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10 * UNIT):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}", hub_app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10 * UNIT)


@pytest.mark.smoke
async def test_mounted_hub_serves_every_door(mounted: tuple[str, Any]) -> None:
    """Mounted under /hub, with the parent's lifespan; the app publishes in-process."""
    host, _ = mounted
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=10 * UNIT) as c:
        first = await c.post("/orders", json={"sku": "a0"})  # before any hub request
        assert first.status_code == 200
        async with connect(f"ws://{host}/hub/v1/ws") as ws:
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["orders.*"]}))
            assert json.loads(await ws.recv())["op"] == "ok"
            r = await c.post("/orders", json={"sku": "a1"})
            assert r.status_code == 200
            async with asyncio.timeout(5 * UNIT):
                frame = json.loads(await ws.recv())
            assert frame["op"] == "msg" and frame["data"] == {"sku": "a1"}
            assert frame["cursor"] == r.json()["cursor"]
        page = await c.get("/hub/v1/topics/orders.new/messages")
        assert [m["data"] for m in page.json()["messages"]] == [{"sku": "a0"}, {"sku": "a1"}]
        missing = await c.get("/hub/v1/nothing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
