"""What every HTTP door shares: query parameters, request bodies, JSON answers.

The publish and poll routes (:mod:`hubbub.transports.http`), SSE, groups,
requests, jobs, uploads, presence, metrics and the admin API all parse their
input and answer through these helpers, so a query parameter given twice,
a body past its limit or a client that hung up is treated the same on
every door.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core import Hub
from ..core.auth import Principal
from ..protocol.errors import InvalidRequest, PayloadTooLarge
from ..protocol.message import JSON
from .auth import KEY, within_lifetime
from .extensions import responder

_T = TypeVar("_T")

DEFAULT_LIMIT = 100
_encode = msgspec.json.Encoder().encode
UINT_RE = re.compile(r"[0-9]{1,9}")
#: A number of seconds as a query gives it: JSON Schema's "number" (OpenAPI
#: clients may write 0.1234567 or 1e-05); callers check the range.
SECONDS_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,2})?")


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def query_one(request: Request, name: str) -> str | None:
    """A single-valued query parameter; empty counts as absent.

    Raises:
        InvalidRequest: the parameter is given more than once.
    """
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"{name} is given more than once", field=name)
    return values[0] if values and values[0] else None


def query_topics(request: Request) -> list[str]:
    """The repeated ``topic`` parameter (validated later by the hub)."""
    return request.query_params.getlist("topic")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status, media_type=JSON)


def query_limit(request: Request, max_limit: int, default: int = DEFAULT_LIMIT) -> int:
    text = query_one(request, "limit")
    if text is None:
        return min(default, max_limit)
    if UINT_RE.fullmatch(text) is None or not 1 <= int(text) <= max_limit:
        raise InvalidRequest(f"limit must be an integer from 1 to {max_limit}", field="limit")
    return int(text)


def query_wait(request: Request, max_wait: float) -> float:
    """``?wait=`` in seconds, cut to what is left of the request's token: a
    waiting request ends, answered as its wait would, when its credential
    expires (the next one is refused with 401)."""
    text = query_one(request, "wait")
    if text is None:
        return 0.0
    if SECONDS_RE.fullmatch(text) is None or float(text) > max_wait:
        raise InvalidRequest(f"wait must be a number of seconds from 0 to {max_wait:g}",
                             field="wait")
    principal: Principal | None = request.scope.get(KEY)  # once authenticated
    return within_lifetime(hub_of(request), principal, float(text))


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than {limit} bytes", field="body")


def header(request: Request, name: bytes) -> str | None:
    """The first value of the (lower-case) header ``name``; cheaper than building
    ``request.headers`` for a header or two."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes.

    The declared ``Content-Length`` is checked before reading anything; the
    stream is checked as it comes, so a lying or chunked client costs at most
    ``limit`` bytes of memory. Read from ``receive`` directly: a body is most
    often one message.
    """
    declared = header(request, b"content-length") or ""
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise InvalidRequest("client went away before the body ended", field="body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            break
        chunks.append(chunk)
    if not chunks:
        return chunk
    chunks.append(chunk)
    return b"".join(chunks)


def whole_json(request: Request, obj: Any, status: int = 200) -> Response:
    """A JSON response, written whole at once where the server offers
    ``hubbub.respond`` (:mod:`hubbub.server.whole`: one write, no ASGI events)."""
    body = _encode(obj)
    respond = responder(request.scope)
    if respond is not None and respond.respond(request.scope, status, JSON_HEADERS, body):
        return SENT
    return Response(body, status, media_type=JSON)


async def until_disconnect(request: Request) -> None:
    with contextlib.suppress(Exception):  # a broken receive means gone, too
        while (await request.receive())["type"] != "http.disconnect":
            pass


async def while_connected(
    request: Request, call: Awaitable[_T]
) -> tuple[bool, asyncio.Future[_T]]:
    """Run ``call`` while watching the socket; ``(client left, its task)``.

    Starlette does not watch the socket during a plain endpoint; without this
    a client that hung up would keep a waiting call (a long poll, a pull, a
    request) and its subscription for the whole wait. If the client leaves
    first the task is cancelled (the call closes what it holds as it
    unwinds) and is not done when this returns.
    """
    task = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(until_disconnect(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        left = gone.done()
        gone.cancel()
        if not task.done():
            task.cancel()
    return left, task


class _Sent(Response):
    """A response already written whole (``hubbub.respond``): nothing more to send."""

    def __init__(self) -> None:
        pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return


SENT = _Sent()
JSON_HEADERS = b"content-type: " + JSON.encode() + b"\r\n"


__all__ = ["DEFAULT_LIMIT", "JSON_HEADERS", "SECONDS_RE", "SENT", "UINT_RE", "header", "hub_of",
           "json_response", "query_limit", "query_one", "query_topics", "query_wait",
           "read_body", "until_disconnect", "while_connected", "whole_json"]
