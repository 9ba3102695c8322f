"""The hub in the test's own process: its ASGI app driven with no socket.

:class:`StreamingASGITransport` is an ``httpx`` transport that calls an ASGI
app directly. Unlike ``httpx.ASGITransport`` (httpx 0.28 and 0.29 gather the
whole body before they return a response) it hands the response over as soon
as the app starts it and streams the body through a queue, so long polls,
SSE and anything else read as a stream behave as they do over a socket;
closing the response is the client leaving (``http.disconnect``).

:class:`InProcessHub` runs the app's lifespan (startup and shutdown, as
``hubbub serve`` does) and offers what :class:`tests.conftest.HubServer`
offers a test but its addresses: a test that needs a socket (a WebSocket, a
third-party client, the server itself) is marked ``sockets``.

The app sees a plain ASGI server, as when it is mounted in another
application: no ``hubbub.respond`` or ``hubbub.frames`` extension
(:mod:`hubbub.transports.extensions`); the tests marked ``sockets`` cover
those paths.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hubbub.server.asgi import ASGI, Lifespan

#: Timeouts in tests are multiples of this unit; raise HUBBUB_TEST_UNIT on slow machines.
UNIT = float(os.environ.get("HUBBUB_TEST_UNIT", "1.0"))
#: The address an in-process client's requests come from (loopback, as over a socket).
CLIENT = ("127.0.0.1", 40000)

log = logging.getLogger("tests.inprocess")

#: What a response's body queue carries: a part, the end (``None``) or the app's failure.
_Part = bytes | None | BaseException


class _ResponseStream(httpx.AsyncByteStream):
    """A response body as the app sends it; closing it is the client leaving."""

    def __init__(self, parts: asyncio.Queue[_Part], left: asyncio.Event,
                 read_timeout: float | None) -> None:
        self._parts, self._left, self._read_timeout = parts, left, read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self._read_timeout):
                    part = await self._parts.get()
            except TimeoutError:
                raise httpx.ReadTimeout("no body part within the read timeout") from None
            if part is None:
                return
            if isinstance(part, BaseException):
                raise httpx.RemoteProtocolError("the app failed mid-response") from part
            yield part

    async def aclose(self) -> None:
        self._left.set()


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Send each request to ``app`` in a task of its own and stream its response.

    ``state`` is the lifespan state each request's scope gets a copy of. The
    app's tasks still running when the transport closes are cancelled then.
    """

    def __init__(self, app: Any, state: dict[str, Any] | None = None,
                 client: tuple[str, int] = CLIENT) -> None:
        self.app, self.state, self.client = app, state if state is not None else {}, client
        self._tasks: set[asyncio.Task[None]] = set()

    def _scope(self, request: httpx.Request) -> dict[str, Any]:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        return {
            "type": "http", "asgi": ASGI, "http_version": "1.1",
            "method": request.method, "scheme": url.scheme,
            "path": url.path, "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query, "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "server": (url.host, port), "client": self.client,
            "state": self.state.copy(), "extensions": {},
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        body = request.stream.__aiter__()  # type: ignore[union-attr]
        body_done = False
        left = asyncio.Event()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future())
        parts: asyncio.Queue[_Part] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            nonlocal body_done
            if not body_done and not left.is_set():
                try:
                    chunk = await body.__anext__()
                except StopAsyncIteration:
                    body_done = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                return {"type": "http.request", "body": bytes(chunk), "more_body": True}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if left.is_set():
                return  # ASGI spec 2.3: a send after the client left is dropped
            if message["type"] == "http.response.start":
                started.set_result((message["status"], list(message.get("headers", []))))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    parts.put_nowait(bytes(message["body"]))
                if not message.get("more_body", False):
                    parts.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(self._scope(request), receive, send)
            except BaseException as exc:
                if started.done():  # the reader learns it as a cut-off body
                    if isinstance(exc, Exception):
                        log.exception("the app failed mid-response")
                    parts.put_nowait(exc)
                elif isinstance(exc, asyncio.CancelledError):
                    started.cancel()
                else:
                    started.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                if not started.done():
                    started.set_exception(RuntimeError("the app sent no response"))
                parts.put_nowait(None)  # a second end is never read

        task = asyncio.create_task(run(), name=f"asgi {request.method} {request.url.path}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(read_timeout):
                status, headers = await asyncio.shield(started)
        except BaseException as exc:
            left.set()  # timed out or cancelled: the client left
            # What the app does from now on is nobody's to hear.
            started.add_done_callback(lambda f: f.cancelled() or f.exception())
            if isinstance(exc, TimeoutError):
                raise httpx.ReadTimeout("no response within the read timeout") from None
            raise
        return httpx.Response(status, headers=headers,
                              stream=_ResponseStream(parts, left, read_timeout),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


class HubUnderTest(abc.ABC):
    """What a test may ask of a running hub, however it is reached: over a
    real server (``tests.conftest.HubServer``) or in-process (:class:`InProcessHub`)."""

    app: Any

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    @abc.abstractmethod
    def client(self, **kw: Any) -> httpx.AsyncClient:
        """An HTTP client that reaches the hub."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the hub (and its server, if it has one)."""

    async def until_responder(self, topic: str) -> None:
        """Wait until a group's worker takes ``topic``: until then a request to it
        is refused with ``no-responders``."""
        async with asyncio.timeout(10 * UNIT):
            while not await self.hub.groups.has_workers(topic):
                await asyncio.sleep(0.01)


class InProcessHub(HubUnderTest):
    """A hub's app with its lifespan running, reached by :meth:`client` in-process."""

    #: What an in-process client's URLs start with (a loopback name, as a hub allows; no
    #: socket listens there).
    BASE_URL = "http://127.0.0.1"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._lifespan = Lifespan(app, self.state)
        self._transports: list[StreamingASGITransport] = []

    async def start(self) -> InProcessHub:
        await self._lifespan.startup()
        return self

    def client(self, **kw: Any) -> httpx.AsyncClient:
        transport = StreamingASGITransport(self.app, self.state)
        self._transports.append(transport)
        kw.setdefault("timeout", 10 * UNIT)
        return httpx.AsyncClient(transport=transport, base_url=self.BASE_URL, **kw)

    @property
    def url(self) -> str:
        raise RuntimeError("an in-process hub has no address: mark the test `sockets`")

    ws_url = url

    async def stop(self) -> None:
        for transport in self._transports:
            await transport.aclose()
        async with asyncio.timeout(10 * UNIT):
            await self._lifespan.shutdown()
