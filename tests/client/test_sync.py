"""The blocking Client: in a plain script, in threads, with no event loop of the caller's.

The hub runs in the test's event loop, so the sync client is always driven
from another thread (``asyncio.to_thread``) or another process; both are the
real situations the sync client is for.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import httpx
import pytest

from hubbub.client import Client
from hubbub.protocol.errors import GatewayTimeout, InvalidTopic, NoResponders, UsageError
from tests.conftest import UNIT, HubServer

SCRIPT = """
import json, sys, threading
from hubbub.client import Client

before = threading.active_count()
with Client(sys.argv[1]) as hub:
    first = hub.publish("script.t", {"n": 0})
    hub.publish_batch([{"topic": "script.t", "data": {"n": i}} for i in (1, 2)])
    hub.publish("script.t", b"raw")
    got = []
    with hub.subscribe("script.t", after="start") as sub:
        for msg in sub:
            got.append(msg.get("data"))
            if len(got) == 4:
                break
        door, cursor = sub.transport, sub.cursor
print(json.dumps({"first": first, "got": got, "door": door, "cursor": cursor,
                  "threads_after_close": threading.active_count() - before}))
"""


async def test_in_a_plain_script(hub_server: HubServer) -> None:
    """A script with no asyncio in sight publishes and subscribes; close() ends the
    client's thread."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, hub_server.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30 * UNIT)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["first"]["offset"] == 1
    assert result["got"][:3] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert result["got"][3] == "cmF3"  # b"raw", base64: not JSON
    assert result["door"] == "ws" and result["cursor"]
    assert result["threads_after_close"] == 0


async def test_threads_share_one_client(hub_server: HubServer,
                                        client: httpx.AsyncClient) -> None:
    """Several threads publish through one Client at once; each message is stored once."""

    def work() -> list[int]:
        with Client(hub_server.url) as hub:
            results: list[int] = []

            def publish(t: int) -> None:
                for i in range(10):
                    results.append(hub.publish("threads.t", {"t": t, "i": i})["offset"])

            threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return results

    offsets = await asyncio.to_thread(work)
    assert sorted(offsets) == list(range(1, 41))
    r = await client.get("/v1/topics/threads.t/messages", params={"after": "start"})
    stored = r.json()["messages"]
    assert len(stored) == 40
    assert len({(m["data"]["t"], m["data"]["i"]) for m in stored}) == 40


async def test_subscribe_in_a_thread_follows_new_messages(hub_server: HubServer) -> None:
    """A thread iterating a subscription gets messages published while it waits."""
    got: list[Any] = []
    ready = threading.Event()

    def follow() -> str:
        with Client(hub_server.url) as hub, hub.subscribe("live.t", after="end") as sub:
            ready.set()
            for msg in sub:
                got.append(msg["data"])
                if len(got) == 5:
                    return sub.transport
        return "ended"

    reader = asyncio.ensure_future(asyncio.to_thread(follow))
    await asyncio.to_thread(ready.wait, 10 * UNIT)
    await asyncio.sleep(0.3 * UNIT)  # "end" is taken when the stream opens
    async with hub_server.client() as http:
        for i in range(5):
            await http.post("/v1/topics/live.t", json=i)
    assert await asyncio.wait_for(reader, 20 * UNIT) == "ws"
    assert got == [0, 1, 2, 3, 4]


async def test_errors_cross_the_bridge(hub_server: HubServer) -> None:
    """The sync client raises the same exceptions, with the hub's details."""

    def work() -> None:
        with Client(hub_server.url) as hub:
            with pytest.raises(InvalidTopic) as bad:
                hub.publish("no..topic", 1)
            assert bad.value.status == 400 and bad.value.field == "topic"
            with pytest.raises(NoResponders):
                hub.request("nobody.home", 1, timeout=60)
            assert hub.group("mute", "nobody.home").pull() == []  # a worker, but mute
            with pytest.raises(GatewayTimeout):
                hub.request("nobody.home", 1, timeout=0.2)
        with pytest.raises(UsageError, match="closed"):
            hub.publish("after.close", 1)
        hub.close()  # idempotent

    await asyncio.to_thread(work)


async def test_upload_with_progress(hub_server: HubServer, tmp_path: Any) -> None:
    """upload() through the bridge: chunks go up, progress is reported, the file arrives."""
    data = bytes(range(256)) * 40
    (tmp_path / "f.bin").write_bytes(data)
    progress: list[tuple[int, int]] = []

    def work() -> dict[str, Any]:
        with Client(hub_server.url) as hub:
            return hub.upload(tmp_path / "f.bin", chunk_size=4096, state_file=tmp_path / "s.json",
                              on_progress=lambda done, total: progress.append((done, total)))

    result = await asyncio.to_thread(work)
    assert result["size"] == len(data) and result["resumed_from"] == 0
    assert progress == [(0, 10240), (4096, 10240), (8192, 10240), (10240, 10240)]
    async with hub_server.client() as http:
        assert (await http.get(result["url"])).content == data


async def test_request_respond_and_groups(hub_server: HubServer) -> None:
    """respond() in one thread answers request() from another; a group consumes and acks."""

    loop = asyncio.get_running_loop()

    def work() -> tuple[Any, list[Any], int]:
        with Client(hub_server.url) as hub:
            responder = threading.Thread(
                target=hub.respond, args=("svc.double", lambda x: x * 2), kwargs={"count": 2})
            responder.start()
            # Until the responder took the topic, a request is refused (no-responders).
            asyncio.run_coroutine_threadsafe(
                hub_server.until_responder("svc.double"), loop).result()
            replies = [hub.request("svc.double", n, timeout=10 * UNIT)["data"] for n in (3, 4)]
            responder.join(10 * UNIT)
            for i in range(3):
                hub.publish("jobs.x", i)
            group = hub.group("workers", "jobs.x", start="start")
            seen = []
            with group.consume(max=2, wait=1) as deliveries:
                for d in deliveries:
                    seen.append(d.data)
                    d.ack()
                    if len(seen) == 3:
                        break
            return replies, seen, group.info()["pending"]

    replies, seen, pending = await asyncio.to_thread(work)
    assert replies == [6, 8]
    assert seen == [0, 1, 2]
    assert pending == 0
