"""What an idle WebSocket costs the hub: it should cost little (docs/operations.md,
"Idle connections"), and these tests keep what made it so.

- The app's task of an idle connection awaits through the few layers that
  must stay (the server's, Starlette's, the WebSocket door's): the hub's own
  middleware hands on the next layer's awaitable rather than awaiting it, so
  none of their frames is kept for the connection's life, and the door's
  reading loop keeps nothing it read while it waits for the next frame.
- The Python memory an idle, subscribed connection holds stays within a
  budget, measured with :mod:`tracemalloc` over a few hundred connections
  opened by another process (a resource budget, not a timing).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import tracemalloc
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import UNIT, HubServer

pytestmark = pytest.mark.sockets

#: Python memory (bytes, as tracemalloc counts it) one idle WebSocket with one
#: subscription may hold on the server. About 9,200-9,800 on CPython 3.11 at
#: the time of writing; 12,200 before the hub's own layers stopped keeping
#: frames, bound methods and empty containers per connection.
IDLE_BUDGET = 11_000

#: The WebSockets the budget is measured over.
CONNECTIONS = 300

_CLIENTS = textwrap.dedent("""
    import asyncio, json, sys
    from websockets.asyncio.client import connect

    async def main(url, n):
        sockets = []
        for i in range(n):
            ws = await connect(url, compression=None)
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": [f"idle.t{i}"]}))
            await ws.recv()
            sockets.append(ws)
        print("held", flush=True)
        sys.stdin.readline()  # until the test is done

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


def _awaited_chain(task: asyncio.Task[Any]) -> list[Any]:
    """The coroutines ``task`` awaits through, outermost first."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        chain.append(coro)
        coro = coro.cr_await
    return chain


async def test_an_idle_websocket_keeps_only_the_layers_that_must_stay(
        hub_server: HubServer) -> None:
    async with connect(hub_server.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["idle.one"]}))
        assert json.loads(await ws.recv())["op"] == "ok"
        await ws.send(json.dumps({"op": "ping", "id": 2}))
        assert json.loads(await ws.recv())["op"] == "pong"
        tasks = list(hub_server.server.state.tasks)
        chains = [_awaited_chain(t) for t in tasks]
        names = [[c.cr_code.co_qualname for c in chain] for chain in chains]
        (chain,) = [c for c, n in zip(chains, names, strict=True) if "Connection.serve" in n]
        qualnames = [c.cr_code.co_qualname for c in chain]
        assert qualnames[0] == "WebSocketProtocol._app"
        assert "WebSocketDoor.__call__" in qualnames
        assert qualnames[-1] == "WebSocketProtocol.receive"
        for layer in ("BrowserGuard", "Authenticate", "_StartHub"):
            assert not any(q.startswith(layer + ".") for q in qualnames), qualnames
        serve = next(c for c in chain if c.cr_code.co_qualname == "Connection.serve")
        kept = serve.cr_frame.f_locals
        assert "event" not in kept and "frame" not in kept and "text" not in kept, kept


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
async def test_an_idle_subscribed_websocket_stays_within_its_memory_budget(
        hub_server: HubServer) -> None:
    url = hub_server.ws_url + "/v1/ws"

    async def held_by(n: int) -> tuple[int, asyncio.subprocess.Process]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENTS, url, str(n),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60 * UNIT)
        assert line.strip() == b"held"
        await asyncio.sleep(0.2)  # the last answers written, the server idle
        return tracemalloc.get_traced_memory()[0], proc

    tracemalloc.start()
    procs = []
    try:
        # A few connections first, so what is made once (caches, first
        # topics of the fan-out) is not counted against the many.
        before, proc = await held_by(20)
        procs.append(proc)
        after, proc = await held_by(CONNECTIONS)
        procs.append(proc)
    finally:
        tracemalloc.stop()
        for proc in procs:
            await asyncio.wait_for(proc.communicate(b"\n"), 30 * UNIT)
    per_connection = (after - before) / CONNECTIONS
    assert 1_000 < per_connection < IDLE_BUDGET, per_connection
