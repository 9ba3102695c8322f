"""Shared fixtures: a real hub on a real socket, over every engine.

``hub_server`` runs uvicorn in the test's event loop on a free loopback port,
once per engine (``memory``, ``sqlite``): transport tests talk to it with real
clients (httpx, httpx-sse, websockets). ``spawn_hub`` starts ``hubbub serve``
as a separate process, for tests that kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hubbub.config import Config
from hubbub.transports.app import create_app

#: Timeouts in tests are multiples of this unit; raise HUBBUB_TEST_UNIT on slow machines.
UNIT = float(os.environ.get("HUBBUB_TEST_UNIT", "1.0"))
ENGINES = ["memory", "sqlite"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store_url(engine: str, tmp_path: Path) -> str:
    if engine == "memory":
        return "memory://"
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    raise ValueError(engine)


@dataclass
class HubServer:
    """A running hub: its base URL, its app (``app.state.hub`` is the core) and server."""

    url: str
    ws_url: str
    app: Any
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10 * UNIT, **kw)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10 * UNIT)


async def start_server(store: str, config: Config | None = None, **app_kw: Any) -> HubServer:
    app = create_app(store, config, **app_kw)
    port = free_port()
    cfg = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        ws_max_size=(config or Config()).max_message_size + 64 * 1024,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10 * UNIT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return HubServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app, server, task)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config() -> Config:
    """Override in a test module to run its hub with other settings."""
    return Config()


@pytest.fixture
async def hub_server(engine: str, tmp_path: Path, config: Config) -> AsyncIterator[HubServer]:
    srv = await start_server(store_url(engine, tmp_path), config)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(hub_server: HubServer) -> AsyncIterator[httpx.AsyncClient]:
    async with hub_server.client() as c:
        yield c


class HubProcess:
    """``hubbub serve`` in a child process."""

    def __init__(self, store: str, port: int, *extra: str) -> None:
        self.store, self.port, self.extra = store, port, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        cmd = [sys.executable, "-m", "hubbub", "serve", "--port", str(self.port),
               "--store", self.store, *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15 * UNIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"hubbub serve exited: {out}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("hubbub serve did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read().decode()


@pytest.fixture
def spawn_hub() -> Iterator[Any]:
    procs: list[HubProcess] = []

    def spawn(store: str, *extra: str, port: int | None = None) -> HubProcess:
        p = HubProcess(store, port or free_port(), *extra).start()
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
        if p.proc is not None and p.proc.stdout is not None:
            p.proc.stdout.close()  # else a ResourceWarning (an error here) at GC
