"""1,000 WebSocket subscribers through ``hubbub serve``, every frame checked.

The hub runs as ``hubbub serve`` does (its own server process, the
``hubbub.frames`` writer, uvloop), so a message for 1,000 subscribers is one
loop pass of 1,000 writes: past ``hubbub.server.writes.SPLIT_AT`` those are
made over several threads. One publisher keeps its pubs pipelined on one
WebSocket. Each subscriber must get every message of each topic once, in
order, with the offset, id and payload its publish was answered with; half of
them speak JSON, half MessagePack.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import UNIT

SUBSCRIBERS = 1000
MESSAGES = 120  # well below the default subscriber buffer: nobody may be cut off
TOPICS = ("many.a", "many.b")
WINDOW = 64
PROTOS = ("hubbub.v1.json", "hubbub.v1.msgpack")


def decode(raw: str | bytes) -> dict[str, Any]:
    frame: dict[str, Any] = (msgspec.msgpack.decode(raw) if isinstance(raw, bytes)
                             else json.loads(raw))
    return frame


async def open_ws(url: str, proto: str) -> ClientConnection:
    return await connect(url, subprotocols=[proto],  # type: ignore[list-item]
                         proxy=None, compression=None, open_timeout=30 * UNIT)


async def subscriber(ws: ClientConnection, subscribed: asyncio.Queue[None]
                     ) -> list[dict[str, Any]]:
    """Subscribe to every topic (say so on ``subscribed``); the ``msg`` frames
    until ``MESSAGES`` came."""
    await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["many.>"]})
                  if ws.subprotocol == PROTOS[0]
                  else msgspec.msgpack.encode({"op": "sub", "id": 1, "topics": ["many.>"]}))
    ok = decode(await ws.recv())
    assert ok["op"] == "ok" and ok["id"] == 1, ok
    subscribed.put_nowait(None)
    got = []
    while len(got) < MESSAGES:
        frame = decode(await ws.recv())
        assert frame["op"] == "msg", frame
        got.append(frame)
    return got


async def publisher(ws: ClientConnection) -> list[dict[str, Any]]:
    """Publish ``MESSAGES`` messages round the topics, ``WINDOW`` in flight; the oks."""
    room = asyncio.Semaphore(WINDOW)
    oks: list[dict[str, Any]] = []

    async def answers() -> None:
        while len(oks) < MESSAGES:
            frame = decode(await ws.recv())
            assert frame["op"] == "ok" and frame["id"] == len(oks), frame
            oks.append(frame)
            room.release()

    reader = asyncio.create_task(answers())
    for n in range(MESSAGES):
        await room.acquire()
        await ws.send(json.dumps({"op": "pub", "id": n, "topic": TOPICS[n % len(TOPICS)],
                                  "data": {"n": n, "pad": "x" * 200}}))
    await reader
    return oks


@pytest.mark.timeout(180 * UNIT)
async def test_a_thousand_subscribers_get_every_frame_once_in_order(spawn_hub: Any) -> None:
    """Every subscriber gets each topic's messages once each, in order, none lost,
    each as its publish was answered."""
    hub = spawn_hub("memory://")
    url = hub.url.replace("http://", "ws://") + "/v1/ws"
    subs: list[ClientConnection] = []
    try:
        async with asyncio.timeout(150 * UNIT):
            for i in range(0, SUBSCRIBERS, 50):  # a burst of 50 handshakes at a time
                subs += await asyncio.gather(*(open_ws(url, PROTOS[j % 2])
                                               for j in range(i, i + 50)))
            subscribed: asyncio.Queue[None] = asyncio.Queue()
            readers = [asyncio.create_task(subscriber(ws, subscribed)) for ws in subs]
            for _ in subs:  # every sub answered before the first publish
                await subscribed.get()
            async with await open_ws(url, PROTOS[0]) as pub:
                oks = await publisher(pub)
            received = await asyncio.gather(*readers)
    finally:
        await asyncio.gather(*(ws.close() for ws in subs), return_exceptions=True)
    expected = {}
    for n, ok in enumerate(oks):
        assert ok["topic"] == TOPICS[n % len(TOPICS)]
        assert ok["offset"] == n // len(TOPICS) + 1
        expected[ok["topic"], ok["offset"]] = (ok["msg_id"], n)
    for frames in received:
        got = [(f["topic"], f["offset"]) for f in frames]
        assert len(set(got)) == MESSAGES  # no duplicate, and with the count: no loss
        for topic in TOPICS:
            offsets = [o for t, o in got if t == topic]
            assert offsets == list(range(1, MESSAGES // len(TOPICS) + 1))
        for f in frames:
            assert (f["id"], f["data"]["n"]) == expected[f["topic"], f["offset"]]
    hub.terminate()
    hub.output()

