"""``hubbub serve`` as a process: graceful drain, durability across ``kill -9``, safe binding.

The crash test is a promise of the project (DESIGN.md, "Promises"): a publish
that returned success survives ``kill -9`` on the SQLite store, and a
subscriber resuming from its cursor gets every later message once, in order,
on every door.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from hubbub.client import TRANSPORTS, AsyncClient, Subscription, Transport
from hubbub.config import Config
from hubbub.protocol.cursor import decode as decode_cursor
from hubbub.protocol.errors import HubbubError
from hubbub.server import GC_THRESHOLDS, HubServer, ServerSettings, is_loopback
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubProcess, free_port

Spawn = Callable[..., HubProcess]
Followers = dict[tuple[Transport, str], list[dict[str, Any]]]
JSON_WS = [Subprotocol("hubbub.v1.json")]


def seq(message: dict[str, Any]) -> int:
    return decode_cursor(message["cursor"]).seq


async def history(http: httpx.AsyncClient, topic: str) -> list[dict[str, Any]]:
    """Every retained message of a topic, page by page."""
    out: list[dict[str, Any]] = []
    after = "start"
    while True:
        r = await http.get(f"/v1/topics/{topic}/messages", params={"after": after, "limit": 500})
        r.raise_for_status()
        page = r.json()
        if not page["messages"]:
            return out
        out += page["messages"]
        after = page["cursor"]


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """The exit status, once the process ends (within 10 units)."""
    return await asyncio.to_thread(proc.wait, 10 * UNIT)


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (at most 15 units) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15 * UNIT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- drain -----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.smoke
async def test_signal_drains_then_exits_zero(spawn_hub: Spawn, sig: signal.Signals) -> None:
    """On SIGTERM or SIGINT, WebSockets close with 1012 and their cursor, SSE streams end
    with a close event, held long polls answer, and the process exits 0 promptly."""
    hub = spawn_hub("memory://")
    assert hub.proc is not None
    ws_url = hub.url.replace("http", "ws", 1) + "/v1/ws"
    async with asyncio.timeout(15 * UNIT), httpx.AsyncClient(
        base_url=hub.url, timeout=10 * UNIT
    ) as http:
        receipt = (await http.post("/v1/topics/drain.a", json={"n": 1})).json()
        async with connect(ws_url, subprotocols=JSON_WS) as ws, http.stream(
            "GET", "/v1/topics/drain.a/events", params={"after": "start"}
        ) as sse:
            await ws.send('{"op":"sub","id":1,"topics":["drain.a"],"after":"start"}')
            frames = [msgspec.json.decode(await ws.recv()) for _ in range(2)]
            assert [f["op"] for f in frames] == ["ok", "msg"]
            lines = sse.aiter_lines()
            async for line in lines:
                if line == "event: message":
                    break
            held = asyncio.create_task(http.get(
                "/v1/topics/drain.a/messages", params={"after": receipt["cursor"], "wait": 30}))
            await asyncio.sleep(0.3 * UNIT)  # the long poll is held by now
            hub.proc.send_signal(sig)

            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            assert receipt["cursor"] in closed.value.rcvd.reason
            rest = [line async for line in lines]
            assert "event: close" in rest
            answer = await held
            assert answer.status_code == 200 and answer.json()["messages"] == []
        assert await wait_exit(hub.proc) == 0
    assert f"hubbub listening on {hub.url} (store: memory://)" in hub.output()


async def test_second_signal_forces_exit(spawn_hub: Spawn) -> None:
    """A drain stops listening at once and waits for WebSockets to finish closing;
    a second signal cuts it short (exit 1)."""
    hub = spawn_hub("memory://")
    assert hub.proc is not None
    # A client that never answers the closing handshake (RFC 6455 §5.5.1 says
    # it should): the sans-I/O protocol writes our frames, and nothing reads.
    client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{hub.port}/v1/ws"), subprotocols=JSON_WS)
    client.send_request(client.connect())
    async with asyncio.timeout(15 * UNIT):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        try:
            writer.write(b"".join(client.data_to_send()))
            client.receive_data(await reader.readuntil(b"\r\n\r\n"))
            assert client.handshake_exc is None
            client.send_text(b'{"op":"sub","id":1,"topics":["drain.c"]}')
            writer.write(b"".join(client.data_to_send()))
            await reader.readuntil(b'"ok"')
            hub.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1 * UNIT)
            assert hub.proc.poll() is None, "the drain did not wait for the WebSocket"
            with pytest.raises(ConnectionRefusedError):  # it stopped listening at once
                await asyncio.open_connection("127.0.0.1", hub.port)
            hub.proc.send_signal(signal.SIGTERM)
            assert await wait_exit(hub.proc) == 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_drain_keeps_every_acknowledged_publish(spawn_hub: Spawn, tmp_path: Path) -> None:
    """Publishes racing a SIGTERM either succeed (and are stored) or are refused; none hangs."""
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = spawn_hub(store)
    assert hub.proc is not None
    acks: list[dict[str, Any]] = []
    refused: list[HubbubError] = []

    async def publisher(tag: int) -> None:
        async with AsyncClient(hub.url, retry_for=0) as client:
            for n in range(10_000):
                try:
                    acks.append(await client.publish("drain.b", [tag, n]))
                except HubbubError as exc:
                    refused.append(exc)
                    return

    async with asyncio.timeout(20 * UNIT):
        tasks = [asyncio.create_task(publisher(i)) for i in range(4)]
        await until(lambda: len(acks) >= 50, "publishes")
        hub.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
        assert await wait_exit(hub.proc) == 0
    assert len(refused) == 4 and all(e.temporary for e in refused)
    again = await asyncio.to_thread(spawn_hub, store)
    async with httpx.AsyncClient(base_url=again.url, timeout=10 * UNIT) as http:
        stored = {m["offset"]: m for m in await history(http, "drain.b")}
    for ack in acks:
        assert stored[ack["offset"]]["cursor"] == ack["cursor"]


# -- the crash test ----------------------------------------------------------------


async def publish_until_killed(url: str, topic: str, tag: int, acks: list[dict[str, Any]]) -> None:
    """Publish ``{"p": tag, "n": n}`` for n = 0, 1, ... until the hub stops answering."""
    async with AsyncClient(url, retry_for=0, timeout=5 * UNIT) as client:
        for n in range(100_000):
            data = {"p": tag, "n": n}
            try:
                receipt = await client.publish(topic, data)
            except HubbubError:
                return
            acks.append({**receipt, "data": data})


async def collect(url: str, topics: list[str], after: str, transport: Transport,
                  into: list[dict[str, Any]], subs: list[Subscription]) -> None:
    """Follow a subscription forever (cancel to stop), appending what it yields."""
    async with AsyncClient(url) as client, client.subscribe(
        topics, after=after, transport=transport, interval=0.05, wait=5, max_backoff=0.2
    ) as sub:
        subs.append(sub)
        async for item in sub:
            into.append(item)


async def test_kill_9_keeps_every_acknowledged_message(spawn_hub: Spawn, tmp_path: Path) -> None:
    """After kill -9 and a restart on the same file, every acknowledged message is there
    unchanged, and subscribers resuming from a cursor taken before the crash get every
    later message once, in order, on every door: fresh ones and ones that lived through it."""
    store, port = f"sqlite:///{tmp_path / 'hub.db'}", free_port()
    hub = spawn_hub(store, port=port)
    assert hub.proc is not None
    acks: dict[str, list[dict[str, Any]]] = {"crash.a": [], "crash.b": []}
    async with AsyncClient(hub.url) as client:
        for n in range(5):
            for topic in acks:
                acks[topic].append({**await client.publish(topic, n), "data": n})
    before_a = acks["crash.a"][-1]["cursor"]  # resumes crash.a at offset 6
    before_all = acks["crash.b"][2]["cursor"]  # resumes crash.* after crash.b #3
    # Subscribers that live through the crash: one topic and a pattern, on every door.
    live_subs: list[Subscription] = []
    live: Followers = {(door, kind): [] for door in TRANSPORTS for kind in ("one", "all")}
    followers = [
        asyncio.create_task(collect(
            hub.url, ["crash.a"] if kind == "one" else ["crash.*"],
            before_a if kind == "one" else before_all, door, items, live_subs))
        for (door, kind), items in live.items()
    ]
    try:
        publishers = [
            asyncio.create_task(publish_until_killed(hub.url, topic, tag, acks[topic]))
            for tag, topic in enumerate(["crash.a", "crash.b"] * 2)
        ]
        await until(lambda: all(live.values()), "the followers to start")
        await until(lambda: sum(map(len, acks.values())) >= 150, "publishes")
        os.kill(hub.proc.pid, signal.SIGKILL)  # mid-stream: the publishers are still going
        async with asyncio.timeout(15 * UNIT):
            await asyncio.gather(*publishers)
        await wait_exit(hub.proc)
        await asyncio.to_thread(spawn_hub, store, port=port)

        async with httpx.AsyncClient(base_url=hub.url, timeout=10 * UNIT) as http:
            stored = {topic: await history(http, topic) for topic in acks}
        for topic, messages in stored.items():
            assert [m["offset"] for m in messages] == list(range(1, len(messages) + 1))
            datas = [msgspec.json.encode(m["data"]) for m in messages]
            assert len(set(datas)) == len(datas), "a message was stored twice"
            # Each of the two publishers of a topic had at most one publish in flight.
            assert len(acks[topic]) <= len(messages) <= len(acks[topic]) + 2
            for ack in acks[topic]:
                m = messages[ack["offset"] - 1]
                assert (m["cursor"], m["id"], m["time"], m["data"]) == (
                    ack["cursor"], ack["id"], ack["time"], ack["data"])
        expected = {
            "one": stored["crash.a"][5:],
            "all": sorted((m for ms in stored.values() for m in ms
                           if seq(m) > decode_cursor(before_all).seq), key=seq),
        }

        # Fresh subscribers, from the same cursors, after the restart.
        fresh: Followers = {(door, kind): [] for door in TRANSPORTS for kind in ("one", "all")}
        followers += [
            asyncio.create_task(collect(
                hub.url, ["crash.a"] if kind == "one" else ["crash.*"],
                before_a if kind == "one" else before_all, door, items, []))
            for (door, kind), items in fresh.items()
        ]
        for name, got in [("live", live), ("fresh", fresh)]:
            for (door, kind), items in got.items():
                want = expected[kind]
                await until(lambda items=items, want=want: len(items) >= len(want),
                            f"{name} {door} {kind} to catch up")
                assert items == want, f"{name} subscriber on {door} ({kind})"
        await asyncio.sleep(0.2 * UNIT)  # and nothing more comes (no repeats)
        assert all(len(items) == len(expected[kind])
                   for got in (live, fresh) for (_, kind), items in got.items())
        # The live ones did live through the crash: each lost its connection.
        assert len(live_subs) == 8 and all(sub.reconnects >= 1 for sub in live_subs)
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


# -- binding -------------------------------------------------------------------


def test_refuses_a_public_address_without_insecure() -> None:
    """``serve --host 0.0.0.0`` with no [auth] exits 2 and explains what would do."""
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--host", "0.0.0.0", "--port",
         str(free_port()), "--store", "memory://"],
        capture_output=True, text=True, timeout=20 * UNIT,
    )
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out.stderr
    assert "no [auth] is configured" in out.stderr and "--insecure" in out.stderr
    assert "listening" not in out.stdout


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.7", False),
    ("no-such-host.invalid", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only addresses (and names) that mean this machine count as loopback."""
    assert is_loopback(host) is loopback


async def test_a_hub_process_tunes_the_garbage_collector_once_started() -> None:
    """``hubbub serve`` freezes what it holds at startup and raises the thresholds
    (src/hubbub/server/run.py); a server that does not own the process leaves them."""
    saved = gc.get_threshold()
    app = create_app("memory://", Config())
    port = free_port()
    for tune in (False, True):
        server = HubServer(app, ServerSettings(port=port), app.state.hub)
        server.tune_gc = tune
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10 * UNIT):
                while not server.started:
                    await asyncio.sleep(0.01)
            if tune:
                assert gc.get_threshold() == GC_THRESHOLDS
                assert gc.get_freeze_count() > 0
            else:
                assert gc.get_threshold() == saved
                assert gc.get_freeze_count() == 0
        finally:
            gc.unfreeze()
            gc.set_threshold(*saved)
            server.should_exit = True
            await asyncio.wait_for(task, 10 * UNIT)
