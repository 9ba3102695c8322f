"""Resumption against a real ``hubbub serve`` process on SQLite.

The hub is stopped gracefully (SIGTERM: it drains) and killed (SIGKILL: a
crash), then started again on the same file and port. A subscriber that
lived through both, on every door, must see every message once, in order; a
publisher that keeps publishing through the restarts must store each message
once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.client import AsyncClient, BackoffPolicy
from tests.conftest import UNIT, HubProcess, free_port

FAST = BackoffPolicy(base=0.05, cap=0.5)
PER_PHASE = 10


async def wait_for_count(got: list[Any], n: int) -> None:
    async with asyncio.timeout(30 * UNIT):
        while len(got) < n:
            await asyncio.sleep(0.02)


async def follow(url: str, topic: str, transport: Any, got: list[Any], subs: list[Any]) -> None:
    async with AsyncClient(url, backoff=FAST) as client, client.subscribe(
        topic, after="start", transport=transport, interval=0.05, wait=5
    ) as sub:
        subs.append(sub)
        async for msg in sub:
            got.append(msg["data"])


@pytest.mark.parametrize("transport", ["auto", "sse", "longpoll", "poll"])
async def test_subscriber_resumes_across_restart_and_sigkill(
    spawn_hub: Any, tmp_path: Path, transport: str
) -> None:
    """Through a graceful restart and a kill -9, the stream goes on with nothing lost
    or twice (auto settles on WebSocket here)."""
    store, port = f"sqlite:///{tmp_path / 'hub.db'}", free_port()
    hub: HubProcess = spawn_hub(store, port=port)
    got: list[Any] = []
    subs: list[Any] = []
    reader = asyncio.create_task(follow(hub.url, "resume.t", transport, got, subs))
    try:
        async with AsyncClient(hub.url, backoff=FAST) as pub:
            for phase, stop in enumerate((hub.terminate, hub.kill, None)):
                for i in range(PER_PHASE):
                    await pub.publish("resume.t", phase * PER_PHASE + i)
                await wait_for_count(got, (phase + 1) * PER_PHASE)
                if stop is not None:
                    # In threads: the subscriber keeps running (and failing to
                    # reconnect) while the hub is down.
                    await asyncio.to_thread(stop)
                    hub = await asyncio.to_thread(spawn_hub, store, port=port)
        assert got == list(range(3 * PER_PHASE))
        assert subs[0].reconnects >= 2
        if transport == "auto":
            assert subs[0].transport == "ws"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_publishes_through_restarts_are_stored_once(
    spawn_hub: Any, tmp_path: Path
) -> None:
    """A publisher that keeps going while the hub is stopped, killed and restarted
    gets a receipt for each message, and each is stored exactly once, in order."""
    store, port = f"sqlite:///{tmp_path / 'hub.db'}", free_port()
    hub: HubProcess = spawn_hub(store, port=port)
    total = 60
    receipts: list[dict[str, Any]] = []

    async def publisher() -> None:
        async with AsyncClient(hub.url, retry_for=60 * UNIT, backoff=FAST) as pub:
            for i in range(total):
                receipts.append(await pub.publish("retry.t", {"n": i}))
                await asyncio.sleep(0.01)

    task = asyncio.create_task(publisher())
    for stop in ("terminate", "kill"):
        await wait_for_count(receipts, len(receipts) + 10)
        await asyncio.to_thread(getattr(hub, stop))
        await asyncio.sleep(0.3)  # publishes fail meanwhile, and are retried
        hub = await asyncio.to_thread(spawn_hub, store, port=port)
    await asyncio.wait_for(task, 60 * UNIT)
    async with httpx.AsyncClient(base_url=hub.url) as http:
        r = await http.get("/v1/topics/retry.t/messages", params={"after": "start",
                                                                  "limit": "1000"})
    stored = r.json()["messages"]
    assert [m["data"]["n"] for m in stored] == list(range(total))
    assert [m["offset"] for m in stored] == [rc["offset"] for rc in receipts]
