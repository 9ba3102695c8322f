"""Long polls waiting together (core.polls), driven with no server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hubbub.core import Hub, Page
from hubbub.core.subscription import Subscription
from hubbub.engines.memory import MemoryEngine
from hubbub.protocol.errors import HubbubError, Unavailable
from tests.conftest import UNIT


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with Hub(MemoryEngine()) as hub:
        yield hub


async def _waiting(hub: Hub, answers: list[Page | HubbubError | None]) -> None:
    got = await hub.poll_now(["p.a"], "end", limit=10, raise_gap=True)
    assert isinstance(got, Subscription)  # nothing to read: it waits in a group
    hub.polls.wait(got, 10, answers.append, None)


async def until(answers: list[Page | HubbubError | None], n: int) -> None:
    async with asyncio.timeout(5 * UNIT):
        while len(answers) < n:
            await asyncio.sleep(0.01)


async def test_one_publish_answers_every_member_with_one_page(hub: Hub) -> None:
    """Polls at one position share a group; a publish answers each with the same page."""
    answers: list[Page | HubbubError | None] = []
    for _ in range(3):
        await _waiting(hub, answers)
    await hub.publish("p.a", b"1")
    await until(answers, 3)
    assert all(isinstance(a, Page) and [m.value() for m in a.messages] == [1] for a in answers)
    assert answers[0] is answers[1] is answers[2]


async def test_a_failed_feed_answers_every_member_with_its_error(hub: Hub) -> None:
    """When the engine loses its live feed, the group's members get the error with the
    cursor to resume from (a re-read of the store would not say it), each its own copy."""
    answers: list[Page | HubbubError | None] = []
    for _ in range(2):
        await _waiting(hub, answers)
    hub.fail_subscriptions(Unavailable("lost the link to the store; resume from the cursor"))
    await until(answers, 2)
    first, second = answers
    assert isinstance(first, Unavailable) and isinstance(second, Unavailable)
    assert first is not second and first.extra["cursor"] == second.extra["cursor"]
    assert first.message == "lost the link to the store; resume from the cursor"
