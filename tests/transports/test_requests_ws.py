"""Request-reply over WebSockets: the ``req`` and ``reply`` ops, on a real server, every engine.

Callers send ``req`` and get the reply as the op's ``ok`` (or ``err``
``timeout``); responders take the request envelopes through a group
subscription and answer with ``reply`` (or a group's worker is made present
and the test reads the request topic itself). What must not happen (a late or
stray reply stored, a reply reaching another caller) is checked by reading
the inbox topics afterwards and by asserting that callers get nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.transports.ws import MAX_REQUESTS
from tests.conftest import UNIT, HubServer
from tests.transports.test_requests import worker_present
from tests.transports.test_ws import MSGPACK_PROTO, Client, ws_client

# Every test here speaks WebSocket: hubbub's own server on a loopback port.
pytestmark = pytest.mark.sockets

HEX = "0123456789abcdef" * 2


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"small": {"max_message_size": 1000}}})


async def inbox(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every reply stored on any inbox."""
    r = await client.get("/v1/messages", params={"topic": "_inbox.>"})
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def next_request(client: httpx.AsyncClient, topic: str) -> dict[str, Any]:
    """The first request envelope on ``topic`` (a worker that polls)."""
    r = await client.get(f"/v1/topics/{topic}/messages",
                         params={"after": "start", "wait": 5 * UNIT, "limit": 1})
    assert r.status_code == 200, r.text
    (msg,) = r.json()["messages"]
    env: dict[str, Any] = msg["data"]
    return env


async def answer(c: Client, id_: Any) -> dict[str, Any]:
    """The answer to the ``req`` with op id ``id_``, keeping other frames."""
    for i, frame in enumerate(c.pushed):
        if frame.get("op") in ("ok", "err") and frame.get("id") == id_:
            del c.pushed[i]
            return frame
    while True:
        frame = await c.recv(10 * UNIT)
        if frame.get("op") in ("ok", "err") and frame.get("id") == id_:
            return frame
        c.pushed.append(frame)


async def test_req_gets_the_reply_of_a_group_responder(hub_server: HubServer) -> None:
    """A responder takes the envelope through a group sub, replies and acks; the caller's
    ``req`` is answered with the request id and the reply message object."""
    async with ws_client(hub_server) as worker, ws_client(hub_server) as caller:
        await worker.ok({"op": "sub", "id": 1, "topics": ["svc.add"], "group": "adders"})
        await caller.send({"op": "req", "id": "r1", "topic": "svc.add",
                           "data": {"a": 2, "b": 3}, "timeout": 5 * UNIT})
        (delivery,) = await worker.messages(1)
        env = delivery["data"]
        assert set(env) == {"request", "deadline", "data"} and env["data"] == {"a": 2, "b": 3}
        receipt = await worker.ok({"op": "reply", "id": 2, "to": env["request"],
                                   "data": env["data"]["a"] + env["data"]["b"]})
        assert receipt["topic"].startswith("_inbox.") and receipt["offset"] == 1
        await worker.ok({"op": "ack", "id": 3, "ids": [delivery["lease"]]})
        got = await answer(caller, "r1")
    assert got["op"] == "ok" and got["request"] == env["request"]
    reply = got["reply"]
    assert reply["data"] == 5 and reply["topic"] == receipt["topic"]
    assert reply["cursor"] == receipt["cursor"] and reply["id"] == receipt["msg_id"]
    assert set(reply) == {"topic", "offset", "cursor", "time", "id", "data"}


async def test_msgpack_req_and_reply_carry_bytes_raw(hub_server: HubServer) -> None:
    """On MessagePack, bytes go out and come back raw, with their content types."""
    async with ws_client(hub_server, MSGPACK_PROTO) as caller, \
            ws_client(hub_server, MSGPACK_PROTO) as worker:
        await worker.ok({"op": "sub", "id": 1, "topics": ["svc.bin"], "group": "bin"})
        await caller.send({"op": "req", "id": 1, "topic": "svc.bin", "data": b"\x00\xff",
                           "content_type": "image/x-test"})
        (delivery,) = await worker.messages(1)
        env = delivery["data"]
        assert env["content_type"] == "image/x-test"
        assert base64.b64decode(env["data"]) == b"\x00\xff"
        await worker.ok({"op": "reply", "id": 2, "to": env["request"], "data": b"\x01\x02"})
        got = await answer(caller, 1)
    assert got["reply"]["data"] == b"\x01\x02"
    assert got["reply"]["content_type"] == "application/octet-stream"


async def test_req_with_no_responder_is_a_no_responders_err_at_once(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """No group's worker takes the topic: ``err`` no-responders (HTTP's 503) at once,
    nothing published; the connection goes on."""
    async with ws_client(hub_server) as caller, asyncio.timeout(5 * UNIT):
        got = await caller.op({"op": "req", "id": 9, "topic": "nobody.home", "data": 1,
                               "timeout": 60})
        assert got["op"] == "err" and got["code"] == "no-responders" and got["field"] == "topic"
        await caller.ok({"op": "ping", "id": 10})
    assert (await client.get("/v1/topics/nobody.home/messages")).json()["messages"] == []


async def test_error_reply_reaches_the_caller_as_responder_error(
    hub_server: HubServer,
) -> None:
    """A ``reply`` with ``error``: the caller's ``req`` is answered at once with ``err``
    responder-error carrying the message; ``data`` and ``error`` together are refused."""
    async with ws_client(hub_server) as worker, ws_client(hub_server) as caller, \
            asyncio.timeout(10 * UNIT):
        await worker.ok({"op": "sub", "id": 1, "topics": ["svc.div"], "group": "dividers"})
        await caller.send({"op": "req", "id": "r1", "topic": "svc.div", "data": {"a": 1},
                           "timeout": 60})
        (delivery,) = await worker.messages(1)
        to = delivery["data"]["request"]
        for bad in ({"error": "x", "data": 1}, {"error": ""}, {"error": 5}):
            got = await worker.op({"op": "reply", "id": 2, "to": to, **bad})
            assert got["op"] == "err" and got["code"] == "invalid-request", got
            assert got["field"] == "error", got
        await worker.ok({"op": "reply", "id": 3, "to": to,
                         "error": "ZeroDivisionError: division by zero"})
        got = await answer(caller, "r1")
    assert got["op"] == "err" and got["code"] == "responder-error"
    assert got["message"] == "ZeroDivisionError: division by zero" and got["request"] == to


async def test_req_nobody_answers_is_a_timeout_err(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A responder there but silent: ``err`` with code ``timeout`` (HTTP's 504) at the
    timeout, naming the request; the connection goes on."""
    await worker_present(client, "nobody.home")
    async with ws_client(hub_server) as caller:
        t0 = time.monotonic()
        got = await caller.op({"op": "req", "id": 9, "topic": "nobody.home", "data": 1,
                               "timeout": 0.3})
        elapsed = time.monotonic() - t0
        assert got["op"] == "err" and got["code"] == "timeout" and got["field"] == "timeout"
        deadline, token = got["request"].split(".")
        assert int(deadline) > 0 and len(token) == 32
        assert 0.3 <= elapsed < 0.3 + UNIT
        await caller.ok({"op": "ping", "id": 10})


async def test_other_ops_go_on_while_a_req_waits(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A waiting ``req`` holds up nothing: the same connection pings and even answers it."""
    await worker_present(client, "self.svc")
    async with ws_client(hub_server) as c:
        await c.send({"op": "req", "id": "q", "topic": "self.svc", "data": "hi",
                      "timeout": 5 * UNIT})
        assert await c.ok({"op": "ping", "id": "p"}) == {"op": "pong", "id": "p"}
        env = await next_request(client, "self.svc")
        await c.ok({"op": "reply", "id": "a", "to": env["request"], "data": "hello"})
        got = await answer(c, "q")
    assert got["op"] == "ok" and got["reply"]["data"] == "hello"


async def test_three_ws_responders_share_the_load_and_each_caller_gets_its_own(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """30 concurrent ``req``s over two connections, 3 responders with a window of 1:
    every responder answers some, every caller gets exactly its own replies."""
    answered: Counter[int] = Counter()
    stop = asyncio.Event()

    async def responder(i: int, ready: asyncio.Event) -> None:
        async with ws_client(hub_server) as w:
            await w.ok({"op": "sub", "id": 0, "topics": ["svc.echo"], "group": "echo",
                        "window": 1})
            ready.set()
            n = 0
            while not stop.is_set():
                try:
                    frame = await w.next(0.2 * UNIT)
                except TimeoutError:
                    continue
                env = frame["data"]
                await asyncio.sleep(0.02)  # a little work, so the others take their share
                n += 1
                await w.ok({"op": "reply", "id": f"r{n}", "to": env["request"],
                            "data": {"n": env["data"]["n"], "worker": i}})
                await w.ok({"op": "ack", "id": f"a{n}", "ids": [frame["lease"]]})
                answered[i] += 1

    async def caller(c: Client, ns: range) -> None:
        for n in ns:
            await c.send({"op": "req", "id": n, "topic": "svc.echo", "data": {"n": n},
                          "timeout": 10 * UNIT})
        for n in ns:
            got = await answer(c, n)
            assert got["op"] == "ok", got
            assert got["reply"]["data"]["n"] == n
        await c.quiet()  # nothing more: no reply of another caller

    async with asyncio.timeout(30 * UNIT):
        workers = []
        for i in range(3):
            ready = asyncio.Event()
            workers.append(asyncio.create_task(responder(i, ready)))
            await ready.wait()
        try:
            async with ws_client(hub_server) as one, ws_client(hub_server) as two:
                await asyncio.gather(caller(one, range(0, 15)), caller(two, range(15, 30)))
        finally:
            stop.set()
            await asyncio.gather(*workers)
    assert sum(answered.values()) == 30
    assert len(answered) == 3 and min(answered.values()) > 0, answered
    assert len(await inbox(client)) == 30


async def test_late_reply_is_refused_and_reaches_nobody(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A reply after the deadline: ``err`` request-expired, stored nowhere; the caller,
    which got its timeout, gets nothing more."""
    await worker_present(client, "slow.svc")
    async with ws_client(hub_server) as caller, ws_client(hub_server) as worker:
        await caller.send({"op": "req", "id": 1, "topic": "slow.svc", "data": 1,
                           "timeout": 0.3})
        env = await next_request(client, "slow.svc")
        assert (await answer(caller, 1))["code"] == "timeout"
        late = await worker.op({"op": "reply", "id": 2, "to": env["request"], "data": 2})
        assert late["op"] == "err" and late["code"] == "request-expired"
        assert late["field"] == "to"
        await caller.quiet()
    assert await inbox(client) == []


async def test_a_closed_callers_requests_are_given_up(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """When the caller's connection ends, a reply to its waiting request is not-found."""
    await worker_present(client, "gone.svc")
    async with ws_client(hub_server) as caller:
        await caller.send({"op": "req", "id": 1, "topic": "gone.svc", "data": 1,
                           "timeout": 30 * UNIT})
        env = await next_request(client, "gone.svc")
    hub = hub_server.hub
    async with asyncio.timeout(5 * UNIT):
        # The hub sees the close, and removes the request's record.
        while await hub.engine.scan("request/", hub.now()):
            await asyncio.sleep(0.01)
    async with ws_client(hub_server) as worker:
        got = await worker.op({"op": "reply", "id": 1, "to": env["request"], "data": 2})
    assert got["code"] == "not-found" and got["field"] == "to"
    assert await inbox(client) == []


#: A deadline a day after collection: still ahead however long the suite runs
#: before this test (it was 10 minutes, which a slow machine's run passed).
FUTURE_MS = int(time.time() * 1000) + 86_400_000

BAD_OPS = [
    ({"op": "reply", "to": f"{FUTURE_MS}.{HEX}", "data": 1},
     "not-found", "to"),
    ({"op": "reply", "to": "abc", "data": 1}, "invalid-request", "to"),
    ({"op": "reply", "to": f"1.{HEX}", "data": 1}, "request-expired", "to"),
    ({"op": "reply", "to": f"1.{HEX}"}, "invalid-request", "data"),
    ({"op": "reply", "data": 1}, "invalid-request", "to"),
    ({"op": "reply", "to": 5, "data": 1}, "invalid-request", "to"),
    ({"op": "req", "topic": "bad.svc", "data": 1, "timeout": 0}, "invalid-request", "timeout"),
    ({"op": "req", "topic": "bad.svc", "data": 1, "timeout": -1}, "invalid-request", "timeout"),
    ({"op": "req", "topic": "bad.svc", "data": 1, "timeout": 61}, "invalid-request", "timeout"),
    ({"op": "req", "topic": "bad.svc", "data": 1, "timeout": "5"}, "invalid-request", "timeout"),
    ({"op": "req", "topic": "bad.svc", "data": 1, "timeout": True},
     "invalid-request", "timeout"),
    ({"op": "req", "topic": "bad.*", "data": 1}, "invalid-topic", "topic"),
    ({"op": "req", "topic": "bad.svc"}, "invalid-request", "data"),
    ({"op": "req", "topic": "bad.svc", "data": "%%", "content_type": "text/plain"},
     "invalid-request", "data"),
    ({"op": "req", "topic": "small.svc", "data": "x" * 2000}, "payload-too-large", "data"),
]


@pytest.mark.parametrize(("frame", "code", "field"), BAD_OPS)
async def test_bad_req_and_reply_ops_change_nothing(
    hub_server: HubServer, client: httpx.AsyncClient, frame: dict[str, Any], code: str,
    field: str,
) -> None:
    """Malformed, unknown or expired: an ``err`` naming the field; nothing is published
    anywhere, and the connection goes on."""
    async with ws_client(hub_server) as c:
        got = await c.op({**frame, "id": "x"})
        assert (got["op"], got["code"], got.get("field")) == ("err", code, field), got
        assert got["message"]
        await c.ok({"op": "ping", "id": 2})
    r = await client.get("/v1/messages", params={"topic": ">", "after": "start"})
    assert r.json()["messages"] == []


async def test_requests_waiting_per_connection_are_bounded(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """At most MAX_REQUESTS ``req``s wait at once per connection; the next is refused."""
    await worker_present(client, "many.svc")
    async with ws_client(hub_server) as c:
        for i in range(MAX_REQUESTS):
            await c.send({"op": "req", "id": i, "topic": "many.svc", "data": i,
                          "timeout": 30 * UNIT})
        got = await c.op({"op": "req", "id": "over", "topic": "many.svc", "data": 0})
        assert got["op"] == "err" and got["code"] == "invalid-request" and got["field"] == "op"
        assert await c.ok({"op": "ping", "id": "p"}) == {"op": "pong", "id": "p"}
