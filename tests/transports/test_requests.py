"""Request-reply over HTTP, on a real server: every caller gets its own reply, in time or 504.

Workers read requests either through a consumer group or by polling the
request topic (with a group's worker present, so that requests are not refused
as having no responders); bad replies change nothing, which is checked by
reading the inbox topics afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import httpx
import pytest

from hubbub.protocol.message import ERROR_TYPE
from tests.conftest import UNIT, HubServer

HEX = "0123456789abcdef" * 2


def problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert doc["code"] == code and doc["detail"], doc
    if field is not None:
        assert doc.get("field") == field, doc


async def next_request(client: httpx.AsyncClient, topic: str, after: str | None = None
                       ) -> dict[str, Any]:
    """The next request envelope on ``topic`` (a worker that polls instead of pulling)."""
    params: dict[str, Any] = {"wait": 5 * UNIT, "limit": 1}
    if after is not None:
        params["after"] = after
    r = await client.get(f"/v1/topics/{topic}/messages", params=params)
    assert r.status_code == 200, r.text
    (msg,) = r.json()["messages"]
    env: dict[str, Any] = msg["data"]
    return env


async def worker_present(client: httpx.AsyncClient, topic: str) -> None:
    """Make a consumer group's worker take ``topic`` (for the lease's 30 s): a
    request to it is no longer refused with ``no-responders``."""
    r = await client.post("/v1/groups/present/pull", params={"topic": topic})
    assert r.status_code == 200, r.text


async def inbox(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every reply stored on any inbox."""
    r = await client.get("/v1/messages", params={"topic": "_inbox.>"})
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


@pytest.mark.smoke
@pytest.mark.sockets
async def test_three_responders_share_requests_and_each_caller_gets_its_own_reply(
    client: httpx.AsyncClient,
) -> None:
    """30 concurrent requests, 3 group workers: each reply carries its request's n; all work."""
    r = await client.post("/v1/groups/echo/pull", params={"topic": "svc.echo"})
    assert r.status_code == 200 and r.json() == {"messages": []}
    stop = asyncio.Event()
    answered: dict[int, int] = {0: 0, 1: 0, 2: 0}

    async def worker(i: int) -> None:
        while not stop.is_set():
            r = await client.post("/v1/groups/echo/pull", params={"wait": 0.2, "max": 1})
            assert r.status_code == 200, r.text
            for item in r.json()["messages"]:
                env = item["data"]
                await asyncio.sleep(0.02)  # a little work, so the others take their share
                rep = await client.post(f"/v1/replies/{env['request']}",
                                        json={"n": env["data"]["n"], "worker": i})
                assert rep.status_code == 201, rep.text
                answered[i] += 1
                ack = await client.post("/v1/groups/echo/ack", json={"ids": [item["lease"]]})
                assert ack.status_code == 200, ack.text

    async def call(n: int) -> None:
        r = await client.post("/v1/requests/svc.echo", params={"timeout": 10 * UNIT},
                              json={"n": n})
        assert r.status_code == 200, r.text
        reply = r.json()
        assert reply["topic"].startswith("_inbox.") and reply["data"]["n"] == n

    async with asyncio.timeout(20 * UNIT):
        workers = [asyncio.create_task(worker(i)) for i in range(3)]
        try:
            await asyncio.gather(*(call(n) for n in range(30)))
        finally:
            stop.set()
            await asyncio.gather(*workers)
    assert sum(answered.values()) == 30
    assert all(answered.values()), answered


async def test_request_with_no_responder_is_503_at_once(client: httpx.AsyncClient) -> None:
    """No group's worker takes the topic: 503 no-responders at once; nothing published."""
    async with asyncio.timeout(5 * UNIT):  # the timeout asked for is far longer
        r = await client.post("/v1/requests/nobody.home", params={"timeout": 60}, json={"q": 1})
    problem(r, 503, "no-responders", "topic")
    assert r.json()["temporary"] is True
    assert (await client.get("/v1/topics/nobody.home/messages")).json()["messages"] == []
    # a worker of a group on another topic, or on a pattern that does not match, is none
    r = await client.post("/v1/groups/other/pull", params={"topic": "nobody.*.x"})
    assert r.status_code == 200, r.text
    r = await client.post("/v1/requests/nobody.home", json={"q": 1})
    problem(r, 503, "no-responders", "topic")
    # one on a matching pattern is
    r = await client.post("/v1/groups/wild/pull", params={"topic": "nobody.>"})
    assert r.status_code == 200, r.text
    r = await client.post("/v1/requests/nobody.home", params={"timeout": 0.1}, json={"q": 1})
    problem(r, 504, "timeout", "timeout")


async def test_a_responders_error_reaches_its_caller_at_once(client: httpx.AsyncClient) -> None:
    """An error reply (content type application/vnd.hubbub.responder-error): the caller
    gets a 502 responder-error with the responder's message, long before its timeout."""
    await worker_present(client, "err.svc")
    async with asyncio.timeout(10 * UNIT):  # the timeout asked for is far longer
        caller = asyncio.create_task(
            client.post("/v1/requests/err.svc", params={"timeout": 60}, json=1))
        env = await next_request(client, "err.svc")
        for bad in (b"", b"\xff\xfe", b"x" * 1001):
            r = await client.post(f"/v1/replies/{env['request']}", content=bad,
                                  headers={"content-type": ERROR_TYPE})
            problem(r, 400, "invalid-request", "error")
        r = await client.post(f"/v1/replies/{env['request']}", content="KeyError: 'n'",
                              headers={"content-type": ERROR_TYPE})
        assert r.status_code == 201, r.text
        r = await caller
    problem(r, 502, "responder-error")
    assert r.json()["detail"] == "KeyError: 'n'" and r.json()["request"] == env["request"]
    # the request is answered: a second (error) reply is a conflict
    r = await client.post(f"/v1/replies/{env['request']}", json="late")
    problem(r, 409, "conflict", "to")


async def test_request_nobody_answers_times_out_with_504(client: httpx.AsyncClient) -> None:
    """A responder there but silent: a 504 problem (code timeout) once the timeout has
    passed, not much later."""
    await worker_present(client, "nobody.home")
    t0 = time.monotonic()
    r = await client.post("/v1/requests/nobody.home", params={"timeout": 0.5}, json={"q": 1})
    elapsed = time.monotonic() - t0
    problem(r, 504, "timeout", "timeout")
    assert 0.5 <= elapsed < 0.5 + UNIT
    # the request itself was published, as an envelope
    r = await client.get("/v1/topics/nobody.home/messages")
    (msg,) = r.json()["messages"]
    assert set(msg["data"]) == {"request", "deadline", "data"} and msg["data"]["data"] == {"q": 1}


async def test_late_reply_is_refused_and_reaches_nobody(client: httpx.AsyncClient) -> None:
    """A reply after the deadline answers 410 request-expired and stores nothing anywhere."""
    await worker_present(client, "slow.svc")
    caller = asyncio.create_task(
        client.post("/v1/requests/slow.svc", params={"timeout": 0.3}, json="ping"))
    async with asyncio.timeout(5 * UNIT):
        env = await next_request(client, "slow.svc")
        problem(await caller, 504, "timeout")
    r = await client.post(f"/v1/replies/{env['request']}", json="pong")
    problem(r, 410, "request-expired", "to")
    assert await inbox(client) == []


async def test_second_reply_is_a_conflict_and_the_caller_gets_the_first(
    client: httpx.AsyncClient,
) -> None:
    """Only the first reply is stored and delivered; a second one answers 409 and adds nothing."""
    await worker_present(client, "dup.svc")
    caller = asyncio.create_task(
        client.post("/v1/requests/dup.svc", params={"timeout": 5 * UNIT}, json=1))
    async with asyncio.timeout(10 * UNIT):
        env = await next_request(client, "dup.svc")
        first = await client.post(f"/v1/replies/{env['request']}", json="first")
        assert first.status_code == 201, first.text
        r = await caller
    assert r.status_code == 200 and r.json()["data"] == "first"
    second = await client.post(f"/v1/replies/{env['request']}", json="second")
    problem(second, 409, "conflict", "to")
    assert [m["data"] for m in await inbox(client)] == ["first"]


async def test_bytes_travel_base64_with_their_content_type(client: httpx.AsyncClient) -> None:
    """A text/plain request is base64 in the envelope; a text/plain reply comes back as such."""
    await worker_present(client, "txt.svc")
    caller = asyncio.create_task(client.post(
        "/v1/requests/txt.svc", params={"timeout": 5 * UNIT}, content=b"hello",
        headers={"content-type": "text/plain"}))
    async with asyncio.timeout(10 * UNIT):
        env = await next_request(client, "txt.svc")
        assert env["content_type"] == "text/plain"
        assert base64.b64decode(env["data"]) == b"hello"
        rep = await client.post(f"/v1/replies/{env['request']}", content=b"HELLO",
                                headers={"content-type": "text/plain"})
        assert rep.status_code == 201, rep.text
        r = await caller
    reply = r.json()
    assert reply["content_type"] == "text/plain" and base64.b64decode(reply["data"]) == b"HELLO"


@pytest.mark.parametrize("request_id", [
    "abc", "1." + HEX[:31], "1." + HEX + "0", "01." + HEX, "-1." + HEX, "1." + HEX.upper(),
    "1.." + HEX,
])
async def test_malformed_request_id_is_refused(client: httpx.AsyncClient, request_id: str) -> None:
    """A reply to something that is not a request id: 400 on field "to", nothing stored."""
    r = await client.post(f"/v1/replies/{request_id}", json="x")
    problem(r, 400, "invalid-request", "to")
    assert await inbox(client) == []


async def test_bad_reply_and_bad_request_change_nothing(client: httpx.AsyncClient) -> None:
    """Bad timeouts, malformed JSON and forged envelopes are 400s; nothing is published."""
    await worker_present(client, "bad.svc")
    for timeout in ("0", "-1", "abc", "61", "1e3"):
        r = await client.post("/v1/requests/bad.svc", params={"timeout": timeout}, json=1)
        problem(r, 400, "invalid-request", "timeout")
    for body in (b"{", b'1,"request":"forged"'):
        r = await client.post("/v1/requests/bad.svc", content=body,
                              headers={"content-type": "application/json"})
        problem(r, 400, "invalid-request", "data")
    r = await client.post("/v1/requests/bad..svc", json=1)
    problem(r, 400, "invalid-topic", "topic")
    assert (await client.get("/v1/topics/bad.svc/messages")).json()["messages"] == []
    # a malformed reply to a live request stores nothing; a good one still gets through
    caller = asyncio.create_task(
        client.post("/v1/requests/bad.svc", params={"timeout": 5 * UNIT}, json=2))
    async with asyncio.timeout(10 * UNIT):
        env = await next_request(client, "bad.svc")
        r = await client.post(f"/v1/replies/{env['request']}", content=b"{",
                              headers={"content-type": "application/json"})
        problem(r, 400, "invalid-request", "data")
        assert await inbox(client) == []
        r = await client.post(f"/v1/replies/{env['request']}", json="ok")
        assert r.status_code == 201, r.text
        assert (await caller).json()["data"] == "ok"


async def test_reply_to_an_unknown_request_is_404_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    """A well-formed id nobody waits for (never made, or its caller left): 404, nothing stored."""
    deadline = int(time.time() * 1000) + 60_000
    r = await client.post(f"/v1/replies/{deadline}.{HEX}", json="nobody")
    problem(r, 404, "not-found", "to")
    assert r.json()["request"] == f"{deadline}.{HEX}"
    assert await inbox(client) == []


async def test_reply_after_the_caller_left_is_404(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A caller that hangs up gives its request up: a reply then gets 404, stored nowhere."""
    await worker_present(client, "left.svc")
    async with hub_server.client() as caller_client, asyncio.timeout(10 * UNIT):
        caller = asyncio.create_task(caller_client.post(
            "/v1/requests/left.svc", params={"timeout": 30 * UNIT}, json=1))
        env = await next_request(client, "left.svc")
        caller.cancel()  # the client closes its connection
        with contextlib.suppress(asyncio.CancelledError):
            await caller
    hub = hub_server.hub
    async with asyncio.timeout(5 * UNIT):
        # The hub sees the hang-up as the socket closes, and removes the request's record.
        while await hub.engine.scan("request/", hub.now()):
            await asyncio.sleep(0.01)
    r = await client.post(f"/v1/replies/{env['request']}", json="late")
    problem(r, 404, "not-found", "to")
    assert await inbox(client) == []
