"""A clock a test moves, for hubs whose leases should run out without sleeping.

``Hub(engine, config, clock=clock)`` reads every lease deadline, nack delay and
record expiry from ``clock``; :meth:`Clock.advance` makes them pass at once. A
test module that imports :func:`clock_fixture` and :func:`clocked_hub_server` runs its
``hub_server`` with the ``clock`` fixture.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.config import Config
from hubbub.core import Hub
from hubbub.engines import open_engine
from tests.conftest import HubServer, start_server, store_url


class Clock:
    """The wall clock plus what the test added with :meth:`advance`.

    Time still passes between advances, so a pull's ``wait`` and every other
    timer on the loop end as they would on the wall clock.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (leases and delays that end meanwhile end)."""
        self.offset += seconds


@contextlib.asynccontextmanager
async def clocked_server(
    engine: str, tmp_path: Path, config: Config, clock: Clock
) -> AsyncIterator[HubServer]:
    """A hub on a real server, as the ``hub_server`` fixture makes, whose clock is ``clock``."""
    hub = Hub(open_engine(store_url(engine, tmp_path)), config, clock=clock)
    srv = await start_server(hub, config)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="hub_server")
async def clocked_hub_server(
    engine: str, tmp_path: Path, config: Config, clock: Clock
) -> AsyncIterator[HubServer]:
    """``hub_server``, its hub on the ``clock`` fixture."""
    async with clocked_server(engine, tmp_path, config, clock) as srv:
        yield srv
