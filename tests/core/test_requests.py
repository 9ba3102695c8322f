"""Request-reply in the core (``hub.requests``), with no server: the Python API's rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.config import Config
from hubbub.core import Hub
from hubbub.core.requests import parse_request_id
from hubbub.engines import open_engine
from hubbub.protocol.errors import (
    Conflict,
    Expired,
    GatewayTimeout,
    InvalidRequest,
    NoResponders,
    NotFound,
    ResponderError,
)
from hubbub.protocol.message import ERROR_TYPE
from tests.conftest import ENGINES, UNIT, store_url


@pytest.fixture(params=ENGINES)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(open_engine(store_url(request.param, tmp_path)), Config()) as h:
        yield h


async def test_group_worker_answers_and_the_caller_gets_the_reply(hub: Hub) -> None:
    """A worker takes the envelope through a group, replies and acks; the caller gets it."""
    assert await hub.groups.pull("w", ["svc.add"]) == []

    async def worker() -> None:
        (lease,) = await hub.groups.pull("w", wait=5 * UNIT)
        env = lease.message.value()
        assert set(env) == {"request", "deadline", "data"}
        await hub.requests.reply(env["request"], b"%d" % (env["data"]["a"] + env["data"]["b"]))
        await hub.groups.ack("w", [lease.lease_id])

    async with asyncio.timeout(10 * UNIT):
        task = asyncio.create_task(worker())
        reply = await hub.requests.request("svc.add", b'{"a": 2, "b": 3}', timeout=5 * UNIT)
        await task
    assert reply.value() == 5 and reply.topic.startswith("_inbox.")
    # inboxes keep one message for a minute unless configured otherwise
    assert hub.config.for_topic(reply.topic).history_size == 1


async def test_no_responders_fails_at_once_and_publishes_nothing(hub: Hub) -> None:
    """No group's worker takes the topic: NoResponders, whatever the timeout; a worker
    on a matching pattern counts; one that stopped pulling stops counting once its
    wait and lease have passed."""
    async with asyncio.timeout(5 * UNIT):
        with pytest.raises(NoResponders) as info:
            await hub.requests.request("svc.none", b"1", timeout=60)
    assert info.value.field == "topic"
    assert (await hub.poll(["svc.none"])).messages == []
    assert await hub.groups.pull("w", ["svc.*"], lease=0.1) == []
    assert await hub.groups.has_workers("svc.none")
    assert not await hub.groups.has_workers("other.none")
    async with asyncio.timeout(5 * UNIT):
        while await hub.groups.has_workers("svc.none"):  # the record expires with the lease
            await asyncio.sleep(0.02)
    with pytest.raises(NoResponders):
        await hub.requests.send("svc.none", b"1")


async def test_error_reply_raises_responder_error(hub: Hub) -> None:
    """An error reply: the caller raises ResponderError with its message; bad ones
    (empty, not UTF-8, too long) are refused and store nothing."""
    await hub.groups.pull("present", ["svc.err"])
    pending = await hub.requests.send("svc.err", b"0", timeout=30 * UNIT)
    for bad in (b"", b"\xff", b"x" * 1001):
        with pytest.raises(InvalidRequest) as info:
            await hub.requests.reply(pending.id, bad, ERROR_TYPE)
        assert info.value.field == "error"
    await hub.requests.reply(pending.id, b"ValueError: no", ERROR_TYPE)
    async with asyncio.timeout(5 * UNIT):
        with pytest.raises(ResponderError) as caught:
            await pending.wait()
    assert caught.value.message == "ValueError: no"
    assert caught.value.extra["request"] == pending.id


async def test_timeout_expiry_and_duplicates(hub: Hub) -> None:
    """No reply: GatewayTimeout; then a reply is Expired; a second reply is a Conflict."""
    await hub.groups.pull("present", ["svc.*"])
    async with asyncio.timeout(5 * UNIT):
        with pytest.raises(GatewayTimeout):
            await hub.requests.request("svc.none", b"1", timeout=0.1)
    page = await hub.poll(["svc.none"])
    request_id = page.messages[0].value()["request"]
    with pytest.raises(Expired):
        await hub.requests.reply(request_id, b"1")
    pending = await hub.requests.send("svc.live", b"0", timeout=5 * UNIT)
    await hub.requests.reply(pending.id, b"1")
    with pytest.raises(Conflict):
        await hub.requests.reply(pending.id, b"2")
    async with asyncio.timeout(5 * UNIT):
        assert (await pending.wait()).value() == 1
    with pytest.raises(Conflict):  # the caller has its reply; the request is still answered
        await hub.requests.reply(pending.id, b"3")
    assert [m.value() for m in (await hub.poll([parse_request_id(pending.id)[1]])).messages] == [1]


async def test_replies_to_requests_nobody_waits_for_store_nothing(hub: Hub) -> None:
    """A well-formed id never issued, one with a forged deadline, and one whose
    caller gave up are NotFound; nothing reaches any inbox."""
    forged = f"{hub.now() + 60_000}.{'ab' * 16}"
    with pytest.raises(NotFound) as info:
        await hub.requests.reply(forged, b"1")
    assert info.value.field == "to"
    await hub.groups.pull("present", ["svc.gone"])
    pending = await hub.requests.send("svc.gone", b"0", timeout=30 * UNIT)
    deadline, token = pending.id.split(".")
    with pytest.raises(NotFound):
        await hub.requests.reply(f"{int(deadline) + 1000}.{token}", b"1")
    await pending.close()  # the caller gives up before its deadline
    with pytest.raises(NotFound):
        await hub.requests.reply(pending.id, b"1")
    assert (await hub.poll(["_inbox.>"])).messages == []


async def test_expired_request_records_are_swept(hub: Hub) -> None:
    """The record of a request that timed out is removed by the sweep."""
    await hub.groups.pull("present", ["svc.sweep"])
    async with asyncio.timeout(5 * UNIT):
        with pytest.raises(GatewayTimeout):
            await hub.requests.request("svc.sweep", b"1", timeout=0.05)
    assert await hub.requests.sweep() == 1
    assert await hub.engine.scan("request/", hub.now() - 10_000) == []


@pytest.mark.parametrize("timeout", [0, -1, 61, float("nan"), True])
async def test_bad_timeout_publishes_nothing(hub: Hub, timeout: float) -> None:
    """A timeout out of (0, max_wait] is refused before anything is published."""
    with pytest.raises(InvalidRequest) as info:
        await hub.requests.request("svc.t", b"1", timeout=timeout)
    assert info.value.field == "timeout"
    assert (await hub.poll(["svc.t"])).messages == []
