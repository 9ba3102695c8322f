"""``Group.consume()`` ended early: what it pulled but did not hand out goes back at once.

The documented pattern is a plain ``async for`` with a ``break`` (or an
exception) in it; nothing closes the iterator explicitly, so the hub must get
the rest of the batch back by itself, quietly (no "Task exception was never
retrieved" on the loop), also when the client is closed right after.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from hubbub.client import AsyncClient
from tests.conftest import UNIT, HubServer


class Boom(Exception):
    pass


async def leftovers(hub_server: HubServer, group: str) -> list[Any]:
    """What a fresh worker of ``group`` can take at once (no wait): given back, due now."""
    async with AsyncClient(hub_server.url) as other:
        taken = await other.group(group).pull(10)
        return sorted((d.data, d.attempt) for d in taken)


@pytest.mark.parametrize("how", ["break", "raise", "aclosing"])
async def test_consume_ended_early_nacks_what_it_did_not_hand_out(
    hub_server: HubServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Five pulled in one batch, one handed out and acked, then the loop ends (break, an
    exception, or an explicit close) and the client closes: the other four are due at
    once (attempt 2), and the loop logs no error."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with asyncio.timeout(20 * UNIT):
        async with AsyncClient(hub_server.url) as hub:
            for i in range(5):
                await hub.publish("work.q", i)
            group = hub.group("g", ["work.q"], start="start", lease=300)
            if how == "aclosing":
                async with group.consume(max=5, wait=1) as deliveries:
                    async for d in deliveries:
                        await d.ack()
                        break
            else:
                try:
                    async for d in group.consume(max=5, wait=1):
                        await d.ack()
                        if how == "raise":
                            raise Boom
                        break
                except Boom:
                    pass
        gc.collect()
        assert await leftovers(hub_server, "g") == [(i, 2) for i in range(1, 5)]
    for _ in range(3):  # anything scheduled on the way out has run by now
        await asyncio.sleep(0)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_consume_dropped_while_the_client_stays_open(hub_server: HubServer) -> None:
    """A consume() abandoned with the client still open gives its batch back on its own."""
    async with AsyncClient(hub_server.url) as hub, asyncio.timeout(20 * UNIT):
        for i in range(3):
            await hub.publish("work.r", i)
        async for d in hub.group("h", ["work.r"], start="start", lease=300).consume(
                max=3, wait=1):
            await d.ack()
            break
        while not (got := await leftovers(hub_server, "h")):
            await asyncio.sleep(0.01)  # the nack is on its way
    assert got == [(1, 2), (2, 2)]
