"""hubbub.server.writes: many sockets written over two threads, over real TCP
connections on uvloop (the module's invariants and its trade-off)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from hubbub.config import Config
from hubbub.server import writes
from hubbub.transports.app import create_app
from tests.conftest import UNIT, serve_app


class _Keep(asyncio.Protocol):
    """A server side's protocol: keeps its transport, notes the connection's loss."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _pairs(n: int, sndbuf: int | None = None
                 ) -> tuple[list[_Keep], list[socket.socket], asyncio.Server]:
    """``n`` loopback connections: the server sides on the running loop, the
    client sides as plain blocking sockets."""
    protocols: list[_Keep] = []

    def made() -> _Keep:
        p = _Keep()
        protocols.append(p)
        return p

    server = await asyncio.get_running_loop().create_server(made, "127.0.0.1", 0, backlog=n)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        clients.append(c)
    async with asyncio.timeout(10 * UNIT):
        while len(protocols) < n or any(p.transport is None for p in protocols):
            await asyncio.sleep(0.01)
    if sndbuf is not None:
        for p in protocols:
            assert p.transport is not None
            p.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                            sndbuf)
    return protocols, clients, server


class _Target:
    """A connection as :func:`writes.write_all` sees it (:class:`writes.Target`):
    its socket's number taken once, and what it was told to count."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.fd = writes.socket_fd(transport)
        self.written = 0
        #: What ``wrote()`` was told: bytes that went through the transport.
        self.through: list[int] = []

    def wrote(self, n: int) -> None:
        self.written += n
        self.through.append(n)


def _targets(transports: list[Any]) -> list[_Target]:
    return [_Target(t) for t in transports]


def _read(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(10 * UNIT)
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(min(size - len(got), 1 << 16))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _on_uvloop(test: Callable[[writes.WriteHelper], Coroutine[Any, Any, None]]) -> None:
    """Run ``test`` on uvloop with a started helper thread, stopped after."""
    helper = writes.WriteHelper()
    helper.start()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(test(helper))
    finally:
        helper.stop()


@pytest.mark.parametrize("n", [3, writes.SPLIT_AT + 101])
def test_every_socket_gets_its_own_bytes(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few writes go through the transports; many straight to the sockets, from
    two threads: either way each client reads exactly its bytes (invariant "direct only when nothing waits", trade-off "split only big crowds")."""
    real_write, threads = os.write, set()

    def write(fd: int, data: bytes) -> int:
        threads.add(threading.get_ident())
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)

    async def main(helper: writes.WriteHelper) -> None:
        protocols, clients, server = await _pairs(n)
        data = [b"answer %d;" % i * (1 + i % 7) for i in range(n)]
        targets = _targets([p.transport for p in protocols])
        writes.write_all(targets, data, helper)
        # Both threads take chunks as they go: each may have had none.
        assert (len(threads) > 0) == (n >= writes.SPLIT_AT)
        # Every byte counted; through wrote() only when through the transport
        # (invariant "written whole, counted whole").
        assert [t.written for t in targets] == [len(d) for d in data]
        if n >= writes.SPLIT_AT:
            assert all(t.through == [] for t in targets)
        else:
            assert [t.through for t in targets] == [[len(d)] for d in data]
        for i, c in enumerate(clients):
            assert await asyncio.to_thread(_read, c, len(data[i])) == data[i]
        for c in clients:
            c.close()
        server.close()

    _on_uvloop(main)


def test_buffered_bytes_stay_first_and_short_writes_finish_through_the_transport() -> None:
    """A transport with bytes buffered is left to its own write, after them; a
    direct write the socket took only part of is finished by the transport,
    in order (invariants "direct only when nothing waits" and "the rest through the
    transport")."""

    async def main(helper: writes.WriteHelper) -> None:
        n = writes.SPLIT_AT + 8
        protocols, clients, server = await _pairs(n, sndbuf=4096)
        transports: list[Any] = [p.transport for p in protocols]
        big = bytes(range(256)) * 1024  # 256 KiB: more than these sockets take at once
        data = [b"%d:" % i + big for i in range(n)]
        transports[5].write(b"first " + big)  # fills the buffer: left buffered
        assert transports[5].get_write_buffer_size() > 0
        targets = _targets(transports)
        writes.write_all(targets, data, helper)
        # The sockets took part of each direct write; the transports hold the rest,
        # and each target was told to count (and watch) its bytes.
        assert sum(t.get_write_buffer_size() > 0 for t in transports) == n
        assert [t.through for t in targets] == [[len(d)] for d in data]
        for i, c in enumerate(clients):
            expect = (b"first " + big if i == 5 else b"") + data[i]
            assert await asyncio.to_thread(_read, c, len(expect)) == expect, i
        for c in clients:
            c.close()
        server.close()

    _on_uvloop(main)


def test_a_gone_client_is_the_transports_to_handle() -> None:
    """A client that left: the direct write fails, the transport's own write
    meets the error and the connection is lost as usual; the others get
    their bytes and nothing is raised (invariant "the rest through the transport")."""

    async def main(helper: writes.WriteHelper) -> None:
        n = writes.SPLIT_AT
        protocols, clients, server = await _pairs(n)
        gone = clients[7]
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        gone.close()  # a reset, not a FIN, which the loop has not seen yet
        data = [b"x%d" % i for i in range(n)]
        writes.write_all(_targets([p.transport for p in protocols]), data, helper)
        async with asyncio.timeout(10 * UNIT):
            await protocols[7].lost
        for i, c in enumerate(clients):
            if i != 7:
                assert await asyncio.to_thread(_read, c, len(data[i])) == data[i]
                c.close()
        server.close()

    _on_uvloop(main)


def test_other_transports_only_get_write_calls() -> None:
    """A transport with no socket of its own (a wrapper, a test double) or with
    TLS is written through its ``write`` alone, whatever the count (invariant "direct only when nothing waits")."""

    class Fake:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.tls = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str) -> Any:
            # No socket to write to; the TLS one has a socket, but encrypts.
            if self.tls and name in ("socket", "ssl_object"):
                return object()
            return None

    fakes = [Fake() for _ in range(writes.SPLIT_AT + 3)]
    for i, fake in enumerate(fakes):
        fake.tls = i % 2 == 1
    targets = _targets(fakes)
    assert [t.fd for t in targets] == [-1] * len(fakes)
    writes.write_all(targets, [b"%d" % i for i in range(len(fakes))])
    assert [f.written for f in fakes] == [[b"%d" % i] for i in range(len(fakes))]


def test_without_a_started_helper_every_write_is_the_transports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No helper, or one stopped, writes a crowd on the loop's thread alone,
    through each transport's ``write``: no socket is written directly."""
    direct: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        direct.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)

    async def main(helper: writes.WriteHelper) -> None:
        n = writes.SPLIT_AT + 1
        protocols, clients, server = await _pairs(n)
        transports = [p.transport for p in protocols]
        helper.stop()
        data = [b"y%d;" % i for i in range(n)]
        writes.write_all(_targets(transports), data, helper)
        writes.write_all(_targets(transports), data)
        assert direct == []
        for i, c in enumerate(clients):
            assert await asyncio.to_thread(_read, c, 2 * len(data[i])) == data[i] * 2
            c.close()
        server.close()

    _on_uvloop(main)


async def test_the_server_owns_the_helper_thread() -> None:
    """The helper thread is the server's: made when it starts serving, ended
    when it stops."""
    app = create_app("memory://", Config())
    srv = await serve_app(app, app)
    state = srv.server.state
    assert state is not None
    try:
        assert (state.helper.pool is not None) == (len(os.sched_getaffinity(0)) >= 2)
    finally:
        await srv.stop()
    assert state.helper.pool is None
