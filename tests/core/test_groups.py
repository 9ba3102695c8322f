"""Consumer groups driven through the hub core, with no server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.config import Config
from hubbub.core import Hub
from hubbub.engines import open_engine
from hubbub.protocol.errors import Conflict, InvalidRequest, NotFound
from hubbub.protocol.leases import Outcome
from tests.conftest import ENGINES, UNIT, store_url

CONFIG = Config.from_dict({"defaults": {"max_deliver": 3}})


class Clock:
    """A clock the test moves, so that lease expiry needs no sleeping."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=ENGINES)
async def hub(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[Hub]:
    h = Hub(open_engine(store_url(request.param, tmp_path)), CONFIG, clock=clock)
    async with h:
        yield h


async def publish(hub: Hub, topic: str, values: range) -> None:
    for v in values:
        await hub.publish(topic, b"%d" % v)


async def test_each_message_goes_to_one_worker(hub: Hub) -> None:
    """Pulls by several workers split the messages; none is leased twice."""
    await hub.groups.pull("w", ["q.*"], start="start")
    await publish(hub, "q.a", range(30))
    await publish(hub, "q.b", range(30, 60))
    pulls = await asyncio.gather(*(hub.groups.pull("w", max_messages=7) for _ in range(12)))
    got = [lease.message.value() for leases in pulls for lease in leases]
    assert sorted(got) == list(range(60))


async def test_new_group_starts_at_head_or_tail(hub: Hub) -> None:
    """start='start' takes retained history; start='end' only what comes next."""
    await publish(hub, "h.t", range(3))
    head = await hub.groups.pull("from-head", ["h.t"], max_messages=10, start="start")
    tail = await hub.groups.pull("from-tail", ["h.t"], max_messages=10, start="end")
    assert [x.message.value() for x in head] == [0, 1, 2] and tail == []
    await publish(hub, "h.t", range(3, 4))
    assert [x.message.value() for x in await hub.groups.pull("from-tail")] == [3]


async def test_unacked_messages_come_back_after_their_lease(hub: Hub, clock: Clock) -> None:
    """A lease that runs out makes its message available again, attempt 2, new lease id."""
    await hub.groups.pull("r", ["r.t"])
    await publish(hub, "r.t", range(2))
    first = await hub.groups.pull("r", max_messages=2, lease=10)
    assert await hub.groups.pull("r") == []
    await hub.groups.ack("r", [first[1].lease_id])
    clock.t += 11
    again = await hub.groups.pull("r", max_messages=5)
    assert [(x.message.value(), x.attempts) for x in again] == [(0, 2)]
    assert again[0].lease_id != first[0].lease_id
    # The first worker's late ack is refused: someone else holds the message now.
    outcome = await hub.groups.ack("r", [first[0].lease_id])
    assert outcome == {first[0].lease_id: Outcome.EXPIRED}


async def test_poison_message_is_dead_lettered_with_its_reason(hub: Hub, clock: Clock) -> None:
    """After max_deliver tries the message moves to dlq.<group> with attempts and last error."""
    await hub.groups.pull("p", ["p.t"])
    await hub.publish("p.t", b'{"bad":true}')
    for attempt in range(1, 4):
        (lease,) = await hub.groups.pull("p")
        assert lease.attempts == attempt
        await hub.groups.nack("p", [lease.lease_id], error=f"failed {attempt}")
    assert await hub.groups.pull("p") == []
    (dead,) = (await hub.poll(["dlq.p"])).messages
    body = json.loads(dead.data)
    assert (body["attempts"], body["error"], body["data"]) == (3, "failed 3", {"bad": True})
    assert (await hub.groups.info("p")).pending == 0


async def test_nack_delay_and_extend(hub: Hub, clock: Clock) -> None:
    """A nack with a delay holds the message back; an extension keeps a lease alive."""
    await hub.groups.pull("d", ["d.t"])
    await publish(hub, "d.t", range(2))
    a, b = await hub.groups.pull("d", max_messages=2, lease=5)
    await hub.groups.nack("d", [a.lease_id], delay=20)
    assert await hub.groups.settle("d", [b.lease_id], "extend", lease=60) == {
        b.lease_id: Outcome.OK
    }
    clock.t += 10
    assert await hub.groups.pull("d") == []
    clock.t += 11
    assert [x.message.value() for x in await hub.groups.pull("d", max_messages=5)] == [0]


async def test_waiting_pull_wakes_on_publish(hub: Hub) -> None:
    """A pull with wait answers as soon as a matching message is stored."""
    await hub.groups.pull("l", ["l.*"])
    task = asyncio.create_task(hub.groups.pull("l", wait=10 * UNIT))
    await asyncio.sleep(0.05)
    await hub.publish("l.new", b"1")
    async with asyncio.timeout(2 * UNIT):
        (lease,) = await task
    assert lease.message.topic == "l.new"


async def test_bad_input_changes_nothing(hub: Hub) -> None:
    """Bad names, numbers and ids are refused; unknown ids are reported, not applied."""
    await hub.groups.pull("b", ["b.t"])
    await publish(hub, "b.t", range(1))
    (lease,) = await hub.groups.pull("b", lease=30)
    for kwargs in ({"max_messages": 0}, {"max_messages": 10**6}, {"lease": -1},
                   {"lease": 10**9}, {"wait": -1}, {"wait": 3600}):
        with pytest.raises(InvalidRequest):
            await hub.groups.pull("b", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await hub.groups.pull("bad.name", ["b.t"])
    with pytest.raises(Conflict):
        await hub.groups.pull("b", ["other"])
    with pytest.raises(NotFound):
        await hub.groups.pull("never")
    with pytest.raises(InvalidRequest):
        await hub.groups.ack("b", ["not-a-lease"])
    with pytest.raises(NotFound):
        await hub.groups.ack("never", [lease.lease_id])
    other = await hub.groups.pull("b2", ["b.t"], start="start")
    assert await hub.groups.ack("b", [other[0].lease_id]) == {other[0].lease_id: Outcome.EXPIRED}
    assert await hub.groups.ack("b", ["999.0123456789ab"]) == {"999.0123456789ab": Outcome.UNKNOWN}
    assert (await hub.groups.info("b")).pending == 1
    assert await hub.groups.ack("b", [lease.lease_id]) == {lease.lease_id: Outcome.OK}
