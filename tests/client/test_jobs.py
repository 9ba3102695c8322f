"""The client's jobs API against a real hub over real sockets, every engine:
``submit``, ``get``, ``wait``, ``follow`` over each door, and the worker helper."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from hubbub.client import AsyncClient, Client, JobError, Progress
from hubbub.config import Config
from hubbub.protocol import errors
from tests.conftest import UNIT, HubServer
from tests.job_handlers import hash_slowly


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"jobs": {"max_attempts": 2}})


async def test_follow_over_every_door_sees_every_state(hub_server: HubServer) -> None:
    """follow() yields each state once, in order, ending with the final one, whichever
    door it uses; wait() returns the same final job."""
    async with AsyncClient(hub_server.url) as hub:
        job = await hub.jobs.submit("transcode", {"steps": 5, "pause": 0.02})
        assert job["state"] == "queued"

        async def follow(door: Any) -> list[dict[str, Any]]:
            return [s async for s in hub.jobs.follow(job["id"], transport=door)]

        doors = ("ws", "sse", "longpoll", "poll")
        followers = [asyncio.create_task(follow(d)) for d in doors]
        waiter = asyncio.create_task(hub.jobs.wait(job["id"], timeout=20 * UNIT))
        done: list[dict[str, Any]] = []
        assert await hub.jobs.work("transcode", hash_slowly, count=1, report_every=0.01,
                                   on_done=done.append) == 1
        async with asyncio.timeout(10 * UNIT):
            seen = await asyncio.gather(*followers)
        final = await waiter
    assert final == done[0] and final["state"] == "succeeded"
    assert final["result"] == hash_slowly({"steps": 5, "pause": 0}, lambda *a: None)
    for door, states in zip(doors, seen, strict=True):
        assert states == seen[0], door
    versions = [s["version"] for s in seen[0]]
    assert versions == list(range(1, final["version"] + 1))
    assert [s["state"] for s in seen[0]][:2] == ["queued", "running"]
    assert seen[0][-1] == final
    progress = [s["progress"] for s in seen[0] if s["state"] == "running"]
    assert progress[0] is None and progress == sorted(progress[:1]) + sorted(progress[1:])


async def test_a_failing_handler_is_retried_then_fails(hub_server: HubServer) -> None:
    """An exception queues the job again while attempts are left; JobError fails it."""
    tries: list[int] = []

    async def flaky(data: Any, progress: Progress) -> str:
        tries.append(data)
        if len(tries) == 1:
            raise ValueError("first try")
        return "ok"

    async with AsyncClient(hub_server.url) as hub:
        job = await hub.jobs.submit("q", 7)
        ended: list[dict[str, Any]] = []
        await hub.jobs.work("q", flaky, count=2, on_done=ended.append)
        assert [(j["state"], j["attempts"]) for j in ended] == [("queued", 1),
                                                                ("succeeded", 2)]
        assert ended[0]["error"] == "ValueError: first try"
        assert (await hub.jobs.get(job["id"]))["result"] == "ok"

        def refuse(data: Any, progress: Progress) -> None:
            raise JobError("bad input")

        bad = await hub.jobs.submit("q", 8)
        await hub.jobs.work("q", refuse, count=1)
        out = await hub.jobs.wait(bad["id"], timeout=5 * UNIT)
        assert (out["state"], out["attempts"], out["error"]) == ("failed", 1, "bad input")

        always = await hub.jobs.submit("q", 9)
        await hub.jobs.work("q", lambda d, p: 1 / 0, count=2)
        out = await hub.jobs.get(always["id"])
        assert (out["state"], out["attempts"]) == ("failed", 2)
        assert out["error"].startswith("ZeroDivisionError")


async def test_take_by_hand_and_errors(hub_server: HubServer) -> None:
    """take/progress/complete by hand; errors carry the hub's problem."""
    async with AsyncClient(hub_server.url) as hub:
        assert await hub.jobs.take("q", wait=0.1) is None
        job = await hub.jobs.submit("q", b"\x00\x01", content_type="video/mp4", key="k1")
        assert await hub.jobs.submit("q", b"other", key="k1") == {**job, "duplicate": True}
        taken = await hub.jobs.take("q", lease=5)
        assert taken is not None and taken.data == b"\x00\x01" and taken.attempt == 1
        assert taken.content_type == "video/mp4" and 4.5 <= taken.lease_seconds <= 5.5
        assert (await taken.progress(25, "a quarter"))["progress"] == 25
        done = await taken.complete({"ok": True})
        assert await taken.complete({"ok": True}) == done  # repeated: safe
        with pytest.raises(errors.Conflict) as conflict:
            await taken.progress(50)
        assert conflict.value.status == 409 and conflict.value.field == "lease"
        with pytest.raises(errors.NotFound) as missing:
            await hub.jobs.get("0" * 32)
        assert missing.value.status == 404
        with pytest.raises(errors.InvalidTopic):
            await hub.jobs.submit("not.a.queue", 1)
        with pytest.raises(errors.GatewayTimeout):
            await hub.jobs.wait((await hub.jobs.submit("idle", 1))["id"], timeout=0.3)


async def test_the_sync_client_works_jobs_from_threads(hub_server: HubServer) -> None:
    """Client.jobs, from plain threads (the hub runs on this test's loop): one thread
    submits and follows while another runs the worker helper."""
    result: dict[str, Any] = {}

    def worker() -> None:
        with Client(hub_server.url) as hub:
            result["handled"] = hub.jobs.work("sync", hash_slowly, count=1)

    def caller() -> list[dict[str, Any]]:
        with Client(hub_server.url) as hub:
            job = hub.jobs.submit("sync", {"steps": 3, "pause": 0.01})
            thread = threading.Thread(target=worker)
            thread.start()
            states = list(hub.jobs.follow(job["id"]))
            thread.join(10 * UNIT)
            assert hub.jobs.get(job["id"]) == states[-1]
            assert hub.jobs.wait(job["id"]) == states[-1]
            assert hub.jobs.take("sync") is None
            return states

    states = await asyncio.wait_for(asyncio.to_thread(caller), 30 * UNIT)
    assert result["handled"] == 1
    assert [s["state"] for s in states][:2] == ["queued", "running"]
    assert states[-1]["state"] == "succeeded" and states[-1]["result"]["steps"] == 3
