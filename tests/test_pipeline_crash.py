"""Crash safety of pipelined publishes: ``kill -9`` under load, restart, check the log.

A publisher keeps many ``pub`` ops in flight on one WebSocket while subscribers
follow the topics; the hub (``hubbub serve``, a child process) is killed with
SIGKILL mid-stream and started again on the same store. Then, on SQLite and on
Redis (a redis-server of the test's own, which stays up):

- every publish that was answered ``ok`` is stored, at the offset and with the
  id its answer named (a success answer means stored);
- every message any subscriber saw is stored, at that offset with that id
  (nothing is delivered before it is committed);
- each topic holds offsets 1..last with no hole, in the order the publisher
  sent them (order per connection);
- no offset is used again: a publish after the restart gets the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import UNIT, RedisServer

TOPICS = ("crash.a", "crash.b", "crash.c")
WINDOW = 64
#: (topic, offset) -> (message id, n): what a topic holds or someone was told.
Seen = dict[tuple[str, int], tuple[str, int]]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A durable store of the test's own: a SQLite file, or a redis-server that
    fsyncs its append-only file (it outlives the hub's crash)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", persist=True).start()
    try:
        yield redis.store()
    finally:
        redis.stop()


def ws_url(hub: Any) -> str:
    return hub.url.replace("http://", "ws://") + "/v1/ws"


async def publish(hub: Any, start: int, oks: Seen, errors: list[dict[str, Any]]) -> None:
    """Publish ``{"n": start}``, ``{"n": start + 1}``, ... round the topics with
    ``WINDOW`` pubs in flight until the connection drops; record the answers."""
    room = asyncio.Semaphore(WINDOW)
    sent: dict[int, tuple[str, int]] = {}

    async def answers(ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                topic, n = sent.pop(frame["id"])
                if frame["op"] == "ok":
                    assert frame["topic"] == topic
                    oks[topic, frame["offset"]] = (frame["msg_id"], n)
                else:
                    errors.append(frame)  # the store going away may be said before the end
                room.release()
        finally:
            for _ in range(WINDOW):
                room.release()  # a sender waiting for room finds the connection gone

    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(ws_url(hub), subprotocols=["hubbub.v1.json"],  # type: ignore[list-item]
                           proxy=None, compression=None, open_timeout=5 * UNIT) as ws:
            reader = asyncio.create_task(answers(ws))
            try:
                n = start
                while not reader.done():
                    await room.acquire()
                    topic = TOPICS[n % len(TOPICS)]
                    sent[n] = (topic, n)
                    await ws.send(json.dumps({"op": "pub", "id": n, "topic": topic,
                                              "data": {"n": n}}))
                    n += 1
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await reader


async def follow(hub: Any, seen: Seen, ready: asyncio.Event) -> None:
    """Subscribe to every topic at the live end; record each message until the end,
    checking that each topic's offsets come one by one."""
    last: dict[str, int] = {}
    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(ws_url(hub), subprotocols=["hubbub.v1.json"],  # type: ignore[list-item]
                           proxy=None, compression=None, open_timeout=5 * UNIT) as ws:
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["crash.>"]}))
            ready.set()
            async for raw in ws:
                frame = json.loads(raw)
                if frame["op"] != "msg":
                    continue
                topic, offset = frame["topic"], frame["offset"]
                if topic in last:
                    assert offset == last[topic] + 1, (topic, offset, last[topic])
                last[topic] = offset
                seen[topic, offset] = (frame["id"], frame["data"]["n"])


async def stored(url: str) -> Seen:
    """Every message of every topic, read back over HTTP."""
    out: Seen = {}
    async with httpx.AsyncClient(base_url=url, timeout=10 * UNIT) as client:
        for topic in TOPICS:
            after = "start"
            while True:
                r = await client.get(f"/v1/topics/{topic}/messages",
                                     params={"after": after, "limit": 1000})
                assert r.status_code == 200, r.text
                page = r.json()
                for m in page["messages"]:
                    out[topic, m["offset"]] = (m["id"], m["data"]["n"])
                if not page["messages"]:
                    break
                after = page["cursor"]
    return out


async def crash_round(spawn_hub: Any, store: str, start: int, kill_after: int,
                      oks: Seen, seen: list[Seen]) -> None:
    """One hub under load, killed once ``kill_after`` more publishes were answered."""
    hub = spawn_hub(store)
    followers: list[Seen] = [{} for _ in range(3)]
    seen += followers
    ready = [asyncio.Event() for _ in followers]
    tasks = [asyncio.create_task(follow(hub, s, r)) for s, r in zip(followers, ready,
                                                                         strict=True)]
    errors: list[dict[str, Any]] = []
    async with asyncio.timeout(60 * UNIT):
        for r in ready:
            await r.wait()
        await asyncio.sleep(0.1 * UNIT)  # let the subs be answered before publishing
        before = len(oks)
        tasks.append(asyncio.create_task(publish(hub, start, oks, errors)))
        while len(oks) < before + kill_after:
            assert not tasks[-1].done(), "the publisher stopped early"
            await asyncio.sleep(0.005)
        hub.kill()  # SIGKILL, with pubs in flight and deliveries on their way
        await asyncio.gather(*tasks)
    hub.output()
    assert all(e["code"] == "unavailable" for e in errors), errors


def check(log: Seen, oks: Seen, seen: list[Seen]) -> None:
    for key, value in oks.items():
        assert log.get(key) == value, f"answered ok but not stored: {key} {value}"
    for follower in seen:
        for key, value in follower.items():
            assert log.get(key) == value, f"delivered but not stored: {key} {value}"
    for topic in TOPICS:
        offsets = sorted(o for t, o in log if t == topic)
        assert offsets == list(range(1, len(offsets) + 1)), f"holes in {topic}"
        ns = [log[topic, o][1] for o in offsets]
        assert ns == sorted(set(ns)), f"{topic} is not in the order sent"
        assert all(n % len(TOPICS) == TOPICS.index(topic) for n in ns)


async def run_crashes(spawn_hub: Any, store: str, rounds: int, kill_after: int) -> None:
    oks: Seen = {}
    seen: list[Seen] = []
    start = 0
    for _ in range(rounds):
        await crash_round(spawn_hub, store, start, kill_after, oks, seen)
        start += 1_000_000  # the next round's publishes are told apart from these
    hub = spawn_hub(store)
    log = await stored(hub.url)
    assert len(oks) >= rounds * kill_after
    check(log, oks, seen)
    async with httpx.AsyncClient(base_url=hub.url, timeout=10 * UNIT) as client:
        for topic in TOPICS:
            last = max((o for t, o in log if t == topic), default=0)
            r = await client.post(f"/v1/topics/{topic}", json={"n": -1})
            assert r.status_code == 201, r.text
            assert r.json()["offset"] == last + 1  # no offset used twice
    hub.terminate()
    hub.output()


async def test_pipelined_publishes_survive_kill_9(spawn_hub: Any, store: str) -> None:
    """kill -9 with pipelined pubs in flight: whatever was answered ok or delivered
    is stored, in order, with no hole, and no offset is used again."""
    await run_crashes(spawn_hub, store, rounds=1, kill_after=300)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_pipelined_publishes_survive_repeated_kill_9(spawn_hub: Any, store: str) -> None:
    """The same, five times over on one store, with more in flight each time."""
    await run_crashes(spawn_hub, store, rounds=5, kill_after=5000)
