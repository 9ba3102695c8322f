"""Hostile input on the HTTP, polling and SSE doors never gets a 5xx.

Hypothesis generates topic names, patterns, cursors, limits, waits and bodies
and sends them to a real server over a real socket. Every answer is either a
success or a 4xx RFC 9457 problem with a ``code`` and a ``detail``; a refused
publish stores nothing; the server stays healthy afterwards.

One server serves all of a test's examples (hence the suppressed
function-scoped-fixture health check: sharing it is the point).
"""

from __future__ import annotations

import asyncio
import string
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import UNIT, HubServer

SETTINGS = settings(
    max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

HOSTILE = [
    "", ".", "..", "a..b", "a.", ".a", "*", ">", "a.>.b", "a.*", "a.>", "x" * 256, "%00",
    "../etc/passwd", "a/b", "a?b=1", "a#b", "a b", "\x00", "\u202e", "💥", "a\r\nb", "NaN",
]
token_chars = st.sampled_from(string.ascii_letters + string.digits + "_-:@*>.%/?# \x00\u00e9💥")
topics = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(token_chars, max_size=40),
    st.text(max_size=40),
    st.from_regex(r"[a-z]{1,5}(\.[a-z]{1,5}){0,3}", fullmatch=True),
)
cursors = st.one_of(
    st.sampled_from(["start", "end", "START", " start", "0", "-1", "a.b.c", "..", "0.0.0"]),
    st.from_regex(r"[0-9a-z]{10}\.[0-9]{1,25}\.[0-9]{1,25}", fullmatch=True),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "1e3", "0x10", "1_000", " 5", "5 ", "+5", "٣", "1.", ".5", "0.0000001"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
batch_items = st.fixed_dictionaries(
    {"topic": topics, "data": json_values},
    optional={
        "key": st.text(max_size=30) | st.integers(),
        "content_type": st.sampled_from(["application/json", "text/plain", "x", "", "a/b+json"]),
        "extra": st.none(),
    },
)


def check(r: httpx.Response) -> None:
    """A success, or a 4xx problem document with a code and a detail."""
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.text
        body = r.json()
        assert body["status"] == r.status_code and body["code"] and body["detail"]


async def still_healthy(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, with a message in ``seed.t`` so that long polls answer at once."""
    assert (await client.post("/v1/topics/seed.t", json=1)).status_code == 201
    return client


@SETTINGS
@given(topic=topics)
async def test_hostile_topic_names(seeded: httpx.AsyncClient, topic: str) -> None:
    """Any topic name, in every path that takes one: never a 5xx."""
    t = quote(topic, safe="")
    async with asyncio.timeout(10 * UNIT):
        check(await seeded.post(f"/v1/topics/{t}", json={"x": 1}))
        check(await seeded.get(f"/v1/topics/{t}"))
        check(await seeded.get(f"/v1/topics/{t}/messages"))
        async with seeded.stream("GET", f"/v1/topics/{t}/events") as r:
            if r.status_code != 200:
                await r.aread()
                check(r)
    await still_healthy(seeded)


@SETTINGS
@given(patterns=st.lists(topics, max_size=4), pattern=topics)
async def test_hostile_patterns(
    seeded: httpx.AsyncClient, patterns: list[str], pattern: str
) -> None:
    """Any list of patterns on the multi-topic doors, any topic list filter: never a 5xx."""
    params: list[tuple[str, Any]] = [("topic", p) for p in patterns]
    async with asyncio.timeout(10 * UNIT):
        check(await seeded.get("/v1/messages", params=[*params, ("after", "start")]))
        check(await seeded.get("/v1/topics", params={"pattern": pattern}))
        async with seeded.stream("GET", "/v1/events", params=params) as r:
            if r.status_code != 200:
                await r.aread()
                check(r)
    await still_healthy(seeded)


@SETTINGS
@given(cursor=cursors)
async def test_hostile_cursors(seeded: httpx.AsyncClient, cursor: str) -> None:
    """Any cursor as ?after= or Last-Event-ID: never a 5xx."""
    async with asyncio.timeout(10 * UNIT):
        check(await seeded.get("/v1/topics/seed.t/messages", params={"after": cursor}))
        check(await seeded.get("/v1/messages", params={"topic": "seed.*", "after": cursor}))
        for path in ("/v1/topics/seed.t/events", "/v1/events?topic=seed.>"):
            # Header values cannot carry edge whitespace (RFC 9110 §5.5): h11 refuses.
            headers = {"Last-Event-ID": cursor.strip()}
            async with seeded.stream("GET", path, headers=headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    check(r)
    await still_healthy(seeded)


@SETTINGS
@given(
    epoch=st.sampled_from(["topic", "store", "other-topic", "unknown"]),
    offset=st.integers(0, 2**64),
    seq=st.integers(0, 2**64),
)
async def test_forged_cursors(
    seeded: httpx.AsyncClient, hub_server: HubServer, epoch: str, offset: int, seq: int
) -> None:
    """Well-formed cursors with real epochs and made-up positions: an answer or a 4xx."""
    await seeded.post("/v1/topics/other.t", json=2)
    epochs = {
        "topic": (await seeded.get("/v1/topics/seed.t")).json()["epoch"],
        "store": hub_server.hub.engine.store_epoch,
        "other-topic": (await seeded.get("/v1/topics/other.t")).json()["epoch"],
        "unknown": "zzzzzzzzzz",
    }
    cursor = f"{epochs[epoch]}.{offset}.{seq}"
    async with asyncio.timeout(10 * UNIT):
        check(await seeded.get("/v1/topics/seed.t/messages", params={"after": cursor}))
        check(await seeded.get("/v1/messages", params={"topic": "seed.*", "after": cursor}))
        for path in ("/v1/topics/seed.t/events", "/v1/events?topic=seed.>"):
            async with seeded.stream("GET", path, headers={"Last-Event-ID": cursor}) as r:
                if r.status_code != 200:
                    await r.aread()
                    check(r)
    await still_healthy(seeded)


@SETTINGS
@given(limit=numbers, wait=numbers)
async def test_hostile_limit_and_wait(seeded: httpx.AsyncClient, limit: str, wait: str) -> None:
    """Any limit and wait text: a 400 naming the field, or an answer (seed.t has a message)."""
    async with asyncio.timeout(10 * UNIT):
        for path, extra in (("/v1/topics/seed.t/messages", {}), ("/v1/messages",
                                                                {"topic": "seed.*"})):
            r = await seeded.get(path, params={**extra, "limit": limit, "wait": wait})
            check(r)
            if r.status_code == 400:
                assert r.json()["field"] in ("limit", "wait")
            else:
                assert len(r.json()["messages"]) == 1
    await still_healthy(seeded)


@SETTINGS
@given(body=st.one_of(st.lists(batch_items, max_size=5), json_values))
async def test_hostile_batches(
    seeded: httpx.AsyncClient, hub_server: HubServer, body: Any
) -> None:
    """Any JSON body on /v1/publish: all stored, or refused with nothing stored."""
    before = await hub_server.hub.engine.head_seq()
    async with asyncio.timeout(10 * UNIT):
        r = await seeded.post("/v1/publish", json=body)
    check(r)
    after = await hub_server.hub.engine.head_seq()
    if r.status_code >= 400:
        assert after == before
    else:
        fresh = [x for x in r.json()["results"] if not x.get("duplicate")]
        assert after - before == len(fresh)


@SETTINGS
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "application/x+json", "text/plain",
                                  "bogus", "a/b; c=\"d\""]),
)
async def test_hostile_bytes(seeded: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    """Any bytes as a single publish or a batch: stored as given, or a 4xx."""
    headers = {"Content-Type": content_type}
    async with asyncio.timeout(10 * UNIT):
        check(await seeded.post("/v1/topics/bytes.t", content=body, headers=headers))
        check(await seeded.post("/v1/publish", content=body, headers=headers))
    await still_healthy(seeded)


@pytest.mark.sockets
async def test_lying_or_huge_content_length(hub_server: HubServer) -> None:
    """A declared Content-Length over the limit is refused before the body is read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(hub_server.url.rsplit(":")[-1]))
    try:
        writer.write(
            b"POST /v1/topics/big.t HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000000000000\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(5 * UNIT):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in head
    async with hub_server.client() as c:
        await still_healthy(c)
        assert (await c.get("/v1/topics/big.t")).status_code == 404
