"""What the client's parts share, below the :class:`~hubbub.client.AsyncClient`
that ties them together.

The consumer groups, jobs, request-reply, uploads and admin helpers each take
the client they work for, and name here the part of it they use
(:class:`ClientBase`), so none of them imports :mod:`hubbub.client.aio`,
which imports them all. The content types, the failures a reconnect can
help with, payload encoding and the publish that retries live here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx
import msgspec
from websockets.exceptions import WebSocketException

from ..protocol import errors
from .backoff import Backoff, BackoffPolicy
from .errors import error_from_response

JSON = "application/json"
OCTET = "application/octet-stream"

#: Failures of the network, not of the request: reconnecting can help.
NETWORK_ERRORS = (httpx.TransportError, OSError, TimeoutError, WebSocketException)

Transport = Literal["ws", "sse", "longpoll", "poll"]
#: What ``subscribe(transport=...)`` accepts: a door, or ``auto`` (the best that works).
Door = Literal["auto", "ws", "sse", "longpoll", "poll"]
#: What ``subscribe(on_gap=...)`` does with a gap: raise it, or hand it out as an item.
OnGap = Literal["raise", "event"]


class Stream(Protocol):
    """A subscription (:class:`~hubbub.client.aio.Subscription`): message dicts,
    closed on leaving its ``async with``."""

    def __aiter__(self) -> Stream: ...

    async def __anext__(self) -> dict[str, Any]: ...

    async def __aenter__(self) -> Stream: ...

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None: ...


class Nackable(Protocol):
    """A consumer group's leases can be given back (:class:`~hubbub.client.groups.Group`)."""

    @property
    def name(self) -> str: ...

    async def nack(self, leases: list[str]) -> Any: ...


class Connection(Protocol):
    """What a call that is retried (:func:`post_retrying`) uses of the client."""

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def base_url(self) -> str: ...

    @property
    def backoff(self) -> BackoffPolicy: ...

    @property
    def retry_for(self) -> float: ...


class ClientBase(Connection, Protocol):
    """What the client's helpers use of the :class:`~hubbub.client.AsyncClient`."""

    def subscribe(self, topics: str | Sequence[str], *, after: str | None = None,
                  transport: Door = "auto", on_gap: OnGap = "raise") -> Stream: ...

    async def nack_quietly(self, group: Nackable, leases: list[str]) -> None: ...

    def nack_later(self, group: Nackable, leases: list[str]) -> None: ...


def encode_payload(data: Any, content_type: str | None) -> tuple[bytes, str]:
    """``data`` as a payload: bytes as they are (``content_type``, or octets),
    anything else as JSON.

    Raises:
        UsageError: bytes are needed for a content type other than JSON, or
            ``data`` cannot be encoded as JSON.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), content_type or OCTET
    if content_type not in (None, JSON):
        raise errors.UsageError("data must be bytes when content_type is not JSON")
    try:
        return msgspec.json.encode(data), JSON
    except (TypeError, msgspec.EncodeError) as exc:
        raise errors.UsageError(f"data cannot be encoded as JSON: {exc}") from None


async def post_retrying(client: Connection, url: str, body: bytes,
                        headers: Mapping[str, str]) -> dict[str, Any]:
    """POST until the hub answers for good: retried on network errors and
    temporary answers (same body, same idempotency keys) for ``client.retry_for`` s.

    Raises:
        UsageError: the URL's scheme is not one httpx speaks.
        HubbubError: the hub refused it for good, or stayed unreachable.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + client.retry_for
    backoff = Backoff(client.backoff)
    while True:
        try:
            r = await client.http.post(url, content=body, headers=headers)
        except httpx.UnsupportedProtocol as exc:
            raise errors.UsageError(str(exc)) from None
        except httpx.TransportError as exc:
            failure: errors.HubbubError = errors.Unavailable(
                f"cannot reach the hub at {client.base_url}: {exc or type(exc).__name__}"
            )
            failure.__cause__ = exc
        else:
            if r.status_code in (200, 201, 202):
                answer: dict[str, Any] = msgspec.json.decode(r.content)
                return answer
            failure = await error_from_response(r)
            if not failure.temporary:
                raise failure
        delay = backoff.next_delay()
        if loop.time() + delay > deadline:
            raise failure
        await asyncio.sleep(delay)


__all__ = ["JSON", "NETWORK_ERRORS", "OCTET", "ClientBase", "Connection", "Door", "Nackable", "OnGap",
           "Stream", "Transport", "encode_payload", "post_retrying"]
