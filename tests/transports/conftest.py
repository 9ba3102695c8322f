"""The transport tests reach the hub in-process unless they are marked ``sockets``.

``hub_server`` (and so ``client``) is an :class:`tests.inprocess.InProcessHub`:
the hub's app with its lifespan running, driven through
:class:`tests.inprocess.StreamingASGITransport` with no socket and no server.
A test marked ``@pytest.mark.sockets`` gets hubbub's own server on a loopback
port instead (:func:`tests.conftest.start_server`): every door keeps tests
over real sockets, and so does every test about the server itself (its
``hubbub.respond`` and ``hubbub.frames`` paths, limits, timeouts) or that
needs an address (WebSocket clients, third-party clients).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import hub_store, start_server
from tests.inprocess import HubUnderTest, InProcessHub


@pytest.fixture
async def hub_server(
    engine: str, tmp_path: Path, config: Config, request: pytest.FixtureRequest
) -> AsyncIterator[HubUnderTest]:
    store = hub_store(engine, tmp_path, request)
    hub: HubUnderTest
    if request.node.get_closest_marker("sockets") is not None:
        hub = await start_server(store, config)
    else:
        hub = await InProcessHub(create_app(store, config)).start()
    try:
        yield hub
    finally:
        await hub.stop()
