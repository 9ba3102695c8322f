"""Shared fixtures: a real hub on a real socket, over every engine.

``hub_server`` runs hubbub's own server (:class:`hubbub.server.HubServer`, as
``hubbub serve`` does) in the test's event loop on a free loopback port,
once per engine (``memory``, ``sqlite``, ``redis``): tests talk to it
with real clients (httpx, httpx-sse, websockets). ``spawn_hub`` starts
``hubbub serve`` as a separate process, for tests that kill it. The transport
tests reach the hub in-process instead unless they are marked ``sockets``
(``tests/transports/conftest.py``, :mod:`tests.inprocess`).

The redis engine runs against a ``redis-server`` that the tests start
themselves on a free port (:class:`RedisServer`, one for the whole session,
started on first use); every store gets a key prefix of its own, so tests
share the server but nothing else. Without ``redis-server`` on the PATH the
redis runs are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.server import HubServer as Server
from hubbub.server import ServerSettings
from hubbub.transports.app import create_app
from tests.inprocess import UNIT, HubUnderTest

ENGINES = ["memory", "sqlite", "redis"]
REDIS_SERVER = shutil.which("redis-server")

#: ``HUBBUB_TEST_NO_HIREDIS=1``: redis-py finds no hiredis and parses Redis's
#: replies with its own Python parser, as in an application that installed
#: redis-py alone (the ``redis`` extra installs hiredis). ``make test`` runs the
#: Redis tests again so. Nothing has imported redis-py yet at this point.
NO_HIREDIS = bool(os.environ.get("HUBBUB_TEST_NO_HIREDIS"))
if NO_HIREDIS:
    sys.modules["hiredis"] = None  # type: ignore[assignment]  # import hiredis: ImportError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host``; for a server on 0.0.0.0 ask for
    ``host="0.0.0.0"``, as a port free on 127.0.0.1 may be in use on another
    loopback address (the load generator's clients bind 127.0.0.2 and up)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child process on a loopback port, with its files in ``dir``.

    ``persist`` turns on the append-only file with an fsync per write
    (``appendfsync always``): what a Redis must run with for acknowledged
    publishes to survive a crash of Redis itself.
    """

    def __init__(self, dir: Path, *, port: int | None = None, persist: bool = False) -> None:
        self.dir, self.port, self.persist = dir, port or free_port(), persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def store(self, prefix: str | None = None) -> str:
        """A store URL with a fresh (or the given) key prefix."""
        return f"{self.url}?prefix={prefix or 't' + uuid.uuid4().hex[:12]}"

    def start(self) -> RedisServer:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else [
            "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.dir), "--logfile", "redis.log", *aof],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10 * UNIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.dir}/redis.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL: a crash) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


_session_redis: RedisServer | None = None


def session_redis() -> RedisServer:
    """The session's shared redis-server, started on first use (stopped at session end)."""
    global _session_redis
    if _session_redis is None:
        _session_redis = RedisServer(Path(tempfile.mkdtemp(prefix="hubbub-redis-"))).start()
    return _session_redis


@pytest.fixture(scope="session", autouse=True)
def _stop_session_redis() -> Iterator[None]:
    yield
    if _session_redis is not None:
        _session_redis.stop()
        shutil.rmtree(_session_redis.dir, ignore_errors=True)


def store_url(engine: str, tmp_path: Path) -> str:
    if engine == "memory":
        return "memory://"
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    if engine == "redis":
        return session_redis().store()
    raise ValueError(engine)


@dataclass
class HubServer(HubUnderTest):
    """A running hub: its base URL, its app (``app.state.hub`` is the core) and server."""

    url: str
    ws_url: str
    app: Any
    server: Server
    task: asyncio.Task[None]

    def client(self, **kw: Any) -> httpx.AsyncClient:
        # Plain HTTP on loopback: nothing to verify, and a verifying client loads
        # the CA bundle when it is made (a tenth of a second or more, per client).
        kw.setdefault("verify", False)
        return httpx.AsyncClient(base_url=self.url, timeout=10 * UNIT, **kw)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10 * UNIT)


async def start_server(store: str, config: Config | None = None, **app_kw: Any) -> HubServer:
    app = create_app(store, config, **app_kw)
    return await serve_app(app, app, ws_max_size=(config or Config()).max_message_size
                           + 64 * 1024)


async def serve_app(app: Any, hub_app: Any, port: int | None = None, **settings: Any
                    ) -> HubServer:
    """Run ``app`` (the hub's app ``hub_app``, maybe wrapped) on a loopback port,
    on hubbub's own server; ``settings`` are :class:`ServerSettings` fields."""
    port = port or free_port()
    settings.setdefault("drain_timeout", 2.0)
    server = Server(app, ServerSettings(host="127.0.0.1", port=port, **settings),
                    hub_app.state.hub)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10 * UNIT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return HubServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", hub_app, server, task)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config() -> Config:
    """Override in a test module to run its hub with other settings."""
    return Config()


#: Test modules of features the redis engine does not have yet.
NOT_ON_REDIS: tuple[str, ...] = ()


def hub_store(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The store URL of a test's hub on ``engine`` (skips what redis lacks)."""
    if engine == "redis" and any(f in request.module.__name__ for f in NOT_ON_REDIS):
        pytest.skip("this feature is not available on the redis engine yet")
    return store_url(engine, tmp_path)


@pytest.fixture
async def hub_server(
    engine: str, tmp_path: Path, config: Config, request: pytest.FixtureRequest
) -> AsyncIterator[HubServer]:
    srv = await start_server(hub_store(engine, tmp_path, request), config)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(hub_server: HubServer) -> AsyncIterator[httpx.AsyncClient]:
    async with hub_server.client() as c:
        yield c


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 15 * UNIT) -> None:
    """Return once the ``hubbub serve`` child ``proc`` answers ``url/readyz`` with 200.

    Raises:
        RuntimeError: it exited first (with what it printed, when that was piped).
        TimeoutError: it did not become ready within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
            raise RuntimeError(f"hubbub serve exited: {text}")
        try:
            if httpx.get(url + "/readyz", timeout=1, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError("hubbub serve did not become ready")


_LISTENING = re.compile(rb"hubbub listening on https?://(?:\[[^\]]*\]|[^\s:]*):(\d+)")


def listening_port(proc: subprocess.Popen[bytes], timeout: float = 15 * UNIT) -> tuple[int, bytes]:
    """The port the ``hubbub serve`` child ``proc`` (asked for port 0) says it
    listens on, and everything it printed up to that line.

    Raises:
        RuntimeError: it exited first (with what it printed).
        TimeoutError: it said nothing of the kind within ``timeout`` seconds.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read raw: nothing is left in the reader's buffer
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait(10)
                raise RuntimeError(f"hubbub serve exited: {seen.decode(errors='replace')}")
            seen += chunk
            if (found := _LISTENING.search(seen)) is not None and b"\n" in seen[found.end():]:
                return int(found.group(1)), seen
    raise TimeoutError("hubbub serve did not say where it listens")


class HubProcess:
    """``hubbub serve`` in a child process. Port 0 (what :func:`spawn_hub`
    asks for unless told a port) has the hub pick a free one and say it: a port
    picked here could be taken by another test worker's hub meanwhile."""

    def __init__(self, store: str, port: int, *extra: str) -> None:
        self.store, self.port, self.extra = store, port, extra
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        #: What it printed before it said where it listens (port 0).
        self._head = b""

    def start(self) -> HubProcess:
        cmd = [sys.executable, "-m", "hubbub", "serve", "--port", str(self.port),
               "--store", self.store, *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            if self.port == 0:
                self.port, self._head = listening_port(self.proc)
                self.url = f"http://127.0.0.1:{self.port}"
            wait_ready(self.url, self.proc)
        except BaseException:
            self.proc.kill()
            self.proc.wait(10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            raise
        return self

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
        return (self._head + self.proc.stdout.read()).decode()


@pytest.fixture
def spawn_hub() -> Iterator[Any]:
    procs: list[HubProcess] = []

    def spawn(store: str, *extra: str, port: int | None = None) -> HubProcess:
        p = HubProcess(store, 0 if port is None else port, *extra).start()
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
        if p.proc is not None and p.proc.stdout is not None:
            p.proc.stdout.close()  # else a ResourceWarning (an error here) at GC
