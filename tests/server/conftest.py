"""Fixtures of the server layer's tests.

* ``layer`` and ``connect``: a hub on hubbub's own server with small limits
  and timeouts, and raw socket helpers (:class:`Raw`): the conformance tests
  read the bytes a client library would hide.
* ``cert_files``, ``h2_hub`` and ``start_h2_hub``: a hub served over TLS by
  the HTTP/2 protocol alone (``loop.create_server`` with
  :class:`hubbub.server.http2.H2Protocol` and
  :func:`hubbub.server.tls.server_context`), so those tests hold the HTTP/2
  layer to its contract on its own; the certificate is self-signed, made
  once per session with ``cryptography`` (:func:`make_cert`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from hubbub.bench.certs import self_signed
from hubbub.config import Config
from hubbub.server.http2 import H2Protocol
from hubbub.server.settings import ServerSettings
from hubbub.server.tls import server_context
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app

#: The layer's settings in these tests: every timeout a fraction of a second.
SETTINGS = {
    "head_timeout": 0.5 * UNIT, "body_timeout": 0.5 * UNIT, "keepalive_timeout": 0.5 * UNIT,
    "linger_timeout": 1.0 * UNIT, "max_connections": 20, "max_header_bytes": 4096,
    "write_deadline": 0.5 * UNIT, "send_buffer": 16 * 1024,
    "ws_ping_interval": 30.0, "ws_ping_timeout": 1.0 * UNIT,
}


@pytest.fixture
async def layer() -> AsyncIterator[HubServer]:
    app = create_app("memory://", Config())
    srv = await serve_app(app, app, ws_max_size=Config().max_message_size + 64 * 1024,
                          **SETTINGS)
    try:
        yield srv
    finally:
        await srv.stop()


class Raw:
    """A raw TCP connection to the server under test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, srv: HubServer, rcvbuf: int | None = None) -> Raw:
        """Connect to ``srv``; ``rcvbuf``: our socket's receive buffer (a small
        one lets a client that stops reading stall the server soon)."""
        port = int(srv.url.rsplit(":", 1)[1])
        if rcvbuf is None:
            return cls(*await asyncio.open_connection("127.0.0.1", port))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connecting
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """One response: status, headers (lower-case names), body (by content-length)."""
        async with asyncio.timeout(5 * UNIT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length) if length else b""
        return status, headers, body

    async def at_end(self) -> bool:
        """Whether the server ends the connection (EOF) within a few seconds."""
        async with asyncio.timeout(5 * UNIT):
            try:
                rest = await self.reader.read()
            except ConnectionResetError:
                return True
        return rest == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def connect(layer: HubServer) -> AsyncIterator[Callable[[], Awaitable[Raw]]]:
    """Open raw connections to ``layer``; every one is closed after the test."""
    opened: list[Raw] = []

    async def opener() -> Raw:
        raw = await Raw.open(layer)
        opened.append(raw)
        return raw

    yield opener
    for raw in opened:
        raw.close()
        with contextlib.suppress(OSError):
            await raw.writer.wait_closed()


@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test here runs on asyncio's loop and on uvloop's (which
    ``hubbub serve`` runs on: its TLS transport is a class of its own)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@dataclass(frozen=True)
class CertFiles:
    cert: str
    key: str


def make_cert(dir: Path, name: str = "localhost") -> CertFiles:
    """A self-signed certificate for ``localhost`` and 127.0.0.1, and its key
    (the benchmarks' :func:`hubbub.bench.certs.self_signed`), as path strings."""
    files = self_signed(dir, name)
    return CertFiles(str(files.cert), str(files.key))


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("tls"))


@dataclass
class H2Hub:
    """A hub app behind an HTTP/2-over-TLS listener on a loopback port."""

    port: int
    app: Any
    settings: ServerSettings
    server: asyncio.Server
    protocols: list[H2Protocol] = field(default_factory=list)
    lost: list[H2Protocol] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, http2=True, verify=False,
                                 timeout=10 * UNIT, **kw)

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client context that trusts anything and offers ``alpn``."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(alpn or ["h2"])
        return ctx


StartHub = Callable[..., Coroutine[Any, Any, H2Hub]]


@pytest.fixture
async def start_h2_hub(cert_files: CertFiles) -> AsyncIterator[StartHub]:
    """Start hubs (``await start(**settings)``); all stopped at the test's end."""
    hubs: list[H2Hub] = []

    async def start(config: Config | None = None, app: Any = None, **settings: Any) -> H2Hub:
        """A hub app (or ``app``, an ASGI app wrapping ``hub_app``) served
        with these settings."""
        hub_app = create_app("memory://", config or Config())
        await hub_app.state.hub.start()
        app = app(hub_app) if app is not None else hub_app
        s = ServerSettings(tls_cert=cert_files.cert, tls_key=cert_files.key, **settings)
        hub: H2Hub

        def protocol() -> H2Protocol:
            p = H2Protocol(app, s, on_lost=hub.lost.append)
            hub.protocols.append(p)
            return p

        server = await asyncio.get_running_loop().create_server(
            protocol, "127.0.0.1", 0, ssl=server_context(s))
        hub = H2Hub(server.sockets[0].getsockname()[1], hub_app, s, server)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.server.close()
        for p in hub.protocols:
            if p.transport is not None:
                p.transport.abort()
        await hub.server.wait_closed()
        await hub.app.state.hub.stop()


@pytest.fixture
async def h2_hub(start_h2_hub: StartHub) -> H2Hub:
    return await start_h2_hub()


class RawH2:
    """A bare HTTP/2 client over TLS (h2's client state machine), for the
    tests that must send what a polite client would not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Any) -> None:
        self.reader, self.writer, self.conn = reader, writer, conn
        self.closed = False

    @classmethod
    async def open(cls, hub: H2Hub, *, window: int | None = None, rcvbuf: int | None = None,
                   handshake: bool = True) -> RawH2:
        """Connect; ``window``: our initial stream window; ``rcvbuf``: our
        socket's receive buffer; ``handshake``: send the preface (and settings) now."""
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.settings import SettingCodes

        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", hub.port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=hub.client_context(), server_hostname="localhost")
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        client = cls(reader, writer, conn)
        if handshake:
            conn.initiate_connection()
            if window is not None:
                conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
            client.flush()
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def request(self, method: str, path: str, body: bytes | None = None, *,
                end: bool = True, stream_id: int | None = None) -> int:
        sid = stream_id or self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [
            (b":method", method.encode()), (b":scheme", b"https"),
            (b":authority", b"127.0.0.1"), (b":path", path.encode())],
            end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    async def events(self, until: Callable[[Any], bool], *, ack: bool = True) -> list[Any]:
        """Read events until one satisfies ``until`` (or the connection ends);
        ``ack``: give received data's window back."""
        from h2.events import DataReceived

        seen: list[Any] = []
        async with asyncio.timeout(10 * UNIT):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    return seen
                for event in self.conn.receive_data(data):
                    seen.append(event)
                    if ack and isinstance(event, DataReceived) and event.flow_controlled_length:
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id)
                    if until(event):
                        self.flush()
                        return seen
                self.flush()

    def close(self) -> None:
        self.writer.transport.abort()
