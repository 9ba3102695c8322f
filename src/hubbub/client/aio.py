"""The asyncio client: publish with retries, subscribe with fallback and resumption.

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        receipt = await hub.publish("chat.room1", {"text": "hi"})
        async with hub.subscribe(["chat.room1"], after="start") as sub:
            async for item in sub:
                print(item["offset"], item["data"], sub.cursor, sub.transport)

Three promises carry the design:

* A publish is retried, on connection errors and on answers the hub marks
  ``temporary``, always with the *same* ``Idempotency-Key``, so a retry whose
  first attempt was in fact stored stores nothing twice.
* A subscription reconnects (capped exponential backoff with full jitter,
  :mod:`hubbub.client.backoff`) from the last cursor it saw, on any door, so
  a dropped connection, a hub drain or a hub restart costs time, never
  messages, and never repeats one. Lost history is raised as
  :class:`~hubbub.protocol.errors.GapError` (or handed out as an event), never hidden.
* ``transport="auto"`` tries WebSocket, then SSE, then long polling, then
  short polling. Only a *refused* door (:func:`~hubbub.client.errors.refusal`)
  makes it move on; a network failure is retried on the same door. The door
  that worked is remembered by the client for its later subscriptions.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import secrets
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from .. import __version__
from ..protocol import errors
from .admin import Admin
from .backoff import BackoffPolicy
from .base import (
    JSON,
    NETWORK_ERRORS,
    Door,
    Nackable,
    OnGap,
    Transport,
    encode_payload,
)
from .calls import Calls
from .groups import Group
from .jobs import Jobs
from .requests import respond
from .subscription import Subscription
from .uploads import CHUNK_SIZE, upload

TRANSPORTS: tuple[Transport, ...] = ("ws", "sse", "longpoll", "poll")

log = logging.getLogger("hubbub.client")


class AsyncClient(Calls):
    """A connection to one hub.

    ::

        async with AsyncClient("http://127.0.0.1:8080") as hub:
            await hub.publish("chat.room1", {"text": "hi"})

    Args:
        base_url: the hub's HTTP address, e.g. ``http://127.0.0.1:8080``.
        timeout: seconds for one HTTP request (long polls, streams and
            requests add their own wait).
        retry_for: how long :meth:`publish` keeps retrying before it gives up
            (``0``: one attempt).
        backoff: the pauses between publish retries and between reconnects
            (default: from 0.1 s, doubling, at most 5 s, full jitter).
        http_transport: an httpx transport for the HTTP doors (a proxy, a
            test's fault injector); WebSockets always connect directly.
        token: a JWT or API key (``docs/auth.md``), sent on every door as
            ``Authorization: Bearer``; a hub that refuses it raises
            :class:`~hubbub.protocol.errors.Unauthorized` (or
            :class:`~hubbub.protocol.errors.Forbidden` for a topic it does not allow)
            with the hub's reason, on any call and any door.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        backoff: BackoffPolicy | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        scheme, sep, rest = self.base_url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise errors.UsageError(f"base_url must start with http:// or https://: {base_url!r}")
        self.ws_url = ("wss" if scheme == "https" else "ws") + "://" + rest + "/v1/ws"
        #: Headers that carry the token (on the WebSocket upgrade too); empty without one.
        self.auth_headers: dict[str, str] = {} if token is None else {
            "Authorization": f"Bearer {token}"}
        self.retry_for = retry_for
        self.backoff = backoff or BackoffPolicy()
        self.http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout,
            headers={"User-Agent": f"hubbub-python/{__version__}", **self.auth_headers},
            transport=http_transport,
        )
        #: The door that last worked for a subscription of this client (``auto`` starts there).
        self.transport: Transport | None = None
        #: Doors found refused; ``auto`` skips them for the rest of this client's life.
        self.refused: set[Transport] = set()
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        # Nacks of what abandoned consume() iterators had pulled (Consumer).
        self._nacks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle subscriptions made by this client, then the HTTP connections.

        A subscription that a task is iterating right now is that task's to
        end (cancel it first).
        """
        for sub in list(self._subs):
            if not sub.running:
                await sub.aclose()
        while self._nacks:
            await asyncio.wait(list(self._nacks))
        await self.http.aclose()

    async def nack_quietly(self, group: Nackable, leases: list[str]) -> None:
        """Give leases back to ``group``, for a :class:`~hubbub.client.groups.Consumer`
        closing: a failure is logged, not raised (the leases then run out)."""
        try:
            await group.nack(leases)
        except (errors.HubbubError, *NETWORK_ERRORS, RuntimeError) as exc:  # closed client
            log.warning("could not give back %d leases of group %s: %s",
                        len(leases), group.name, exc)

    def nack_later(self, group: Nackable, leases: list[str]) -> None:
        """:meth:`nack_quietly` from a task of this client's; :meth:`aclose` waits for it."""
        task = asyncio.ensure_future(self.nack_quietly(group, leases))
        self._nacks.add(task)
        task.add_done_callback(self._nacks.discard)

    def _first_door(self) -> Transport:
        if self.transport is not None and self.transport not in self.refused:
            return self.transport
        for door in TRANSPORTS:
            if door not in self.refused:
                return door
        return TRANSPORTS[-1]

    def _refuse(self, door: Transport) -> None:
        self.refused.add(door)
        if self.transport == door:
            self.transport = None

    def _remember(self, door: Transport) -> None:
        self.transport = door
        self.refused.discard(door)

    async def publish(
        self,
        topic: str,
        data: Any,
        *,
        key: str | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Publish one message; returns the hub's receipt once the message is stored.

        ::

            receipt = await hub.publish("chat.room1", {"text": "hi"})
            await hub.publish("files.in", b"\x89PNG...", content_type="image/png")

        Args:
            data: bytes are sent as they are (``content_type``, default
                ``application/octet-stream``); anything else is encoded as JSON.
            key: the idempotency key; one is generated when not given. Every
                retry of this call sends the same key.
        Returns:
            ``{topic, offset, cursor, id, time}`` (plus ``"duplicate": true``
            when the hub had already stored this key).
        Raises:
            InvalidTopic, InvalidRequest, PayloadTooLarge, ...: the hub refused
                the message; nothing was stored, retrying will not help.
            Unavailable: the hub could not be reached or stayed unavailable for
                ``retry_for`` seconds; the message may or may not be stored,
                and publishing again with the same ``key`` is safe.
        """
        body, ctype = encode_payload(data, content_type)
        headers = {"Content-Type": ctype, "Idempotency-Key": key or secrets.token_hex(16)}
        return await self._post_retrying("/v1/topics/" + quote(topic, safe=":@"), body, headers)

    async def publish_batch(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Publish several messages in one request, all stored or none.

        ::

            receipts = await hub.publish_batch([
                {"topic": "chat.room1", "data": {"text": "hi"}},
                {"topic": "files.in", "data": b"...", "content_type": "image/png"},
            ])

        Args:
            items: mappings with ``topic`` and ``data`` (as for
                :meth:`publish`), optionally ``key`` and ``content_type``.
                Each item without a ``key`` gets a fresh one, kept across
                retries, so a retried batch stores each message once.
        Returns:
            One receipt per item, in order.
        Raises:
            As :meth:`publish`; ``field`` names the bad item (``[2].topic``).
        """
        batch = []
        for item in items:
            body, ctype = encode_payload(item["data"], item.get("content_type"))
            entry: dict[str, Any] = {"topic": item["topic"],
                                     "key": item.get("key") or secrets.token_hex(16)}
            if ctype == JSON:
                entry["data"] = msgspec.Raw(body)
            else:
                entry["data"] = base64.b64encode(body).decode()
                entry["content_type"] = ctype
            batch.append(entry)
        answer = await self._post_retrying(
            "/v1/publish", msgspec.json.encode(batch), {"Content-Type": JSON})
        results: list[dict[str, Any]] = answer["results"]
        return results

    def subscribe(
        self,
        topics: str | Sequence[str],
        *,
        after: str | None = None,
        transport: Door = "auto",
        on_gap: OnGap = "raise",
        wait: float = 25.0,
        interval: float = 1.0,
        max_backoff: float | None = None,
        on_reconnect: Callable[[BaseException | None], None] | None = None,
    ) -> Subscription:
        """Follow topics (names or patterns) from ``after``, through the best door that works.

        ::

            async with hub.subscribe("chat.>", after="start") as sub:
                async for msg in sub:
                    print(msg["topic"], msg["data"], msg["cursor"])

        Args:
            after: a cursor, ``"start"`` (all retained history) or ``"end"``
                (only new messages; the default on every transport).
            transport: ``auto`` (WebSocket, then SSE, then long polling, then
                short polling, moving on only when a door is refused), or one
                of ``ws``, ``sse``, ``longpoll``, ``poll`` to force it.
            on_gap: ``raise`` a :class:`~hubbub.protocol.errors.GapError` when history
                was lost, or hand it out as an ``{"gap": {...}}`` ``event``.
            wait: seconds a long poll is held by the hub.
            interval: seconds between idle short polls.
            max_backoff: longest pause between reconnection attempts
                (default: the client's ``backoff.cap``).
            on_reconnect: called with what ended the stream (``None``: the
                hub closed it) before each pause and reconnection, to tell a
                person; it must not block.
        Returns:
            A :class:`Subscription`; iterate it, and close it (``async with``)
            when done. It connects on first iteration.
        Raises:
            UsageError: no topics, or an unknown transport.
        """
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names:
            raise errors.UsageError("subscribe needs at least one topic")
        if transport != "auto" and transport not in TRANSPORTS:
            raise errors.UsageError(f"transport must be auto or one of {', '.join(TRANSPORTS)}")
        if on_gap not in ("raise", "event"):
            raise errors.UsageError("on_gap must be raise or event")
        policy = self.backoff
        if max_backoff is not None:
            policy = BackoffPolicy(min(policy.base, max_backoff), max_backoff, policy.factor)
        sub = Subscription(self, names, after or "end", transport, wait=wait,
                           interval=interval, backoff=policy, on_gap=on_gap,
                           on_reconnect=on_reconnect)
        self._subs.add(sub)
        return sub

    async def respond(
        self,
        topic: str,
        handler: Callable[[Any], Any | Awaitable[Any]],
        *,
        group: str | None = None,
        count: int | None = None,
        lease: float = 30.0,
    ) -> int:
        """Answer requests on ``topic`` with ``handler`` until cancelled (or ``count`` done).

        ::

            async def echo(data):
                return {"echo": data}

            await hub.respond("svc.echo", echo)   # runs until cancelled

        Responders with the same ``group`` share the requests (a consumer
        group; default ``responders-<topic>``). ``handler`` gets the request
        data (bytes for a non-JSON request) and returns the reply data (bytes
        for a non-JSON reply); a plain function runs in a thread. A request
        past its deadline is skipped; a handler that raises answers the
        caller with the exception (its type and message: the caller gets a
        :class:`~hubbub.protocol.errors.ResponderError`).

        Returns:
            How many requests were answered (when ``count`` ends it).
        """
        return await respond(self, topic, handler, group=group, count=count, lease=lease)


    @functools.cached_property
    def admin(self) -> Admin:
        """The admin API (:class:`~hubbub.client.admin.Admin`; an admin token needed):
        ``connections()``, ``disconnect()``, ``purge_topic()``, ``delete_topic()``,
        ``cancel_job()``,
        ``presence()``, ``drop_presence()``."""
        return Admin(self)

    @functools.cached_property
    def jobs(self) -> Jobs:
        """Asynchronous jobs: ``submit()``, ``get()``, ``wait()``, ``follow()``, and the
        worker's ``take()`` and ``work()`` (:class:`~hubbub.client.jobs.Jobs`).

        ::

            job = await hub.jobs.submit("transcode", {"file": "a.mp4"})
            done = await hub.jobs.wait(job["id"], timeout=600)
        """
        return Jobs(self)

    def group(
        self,
        name: str,
        topics: str | Sequence[str] | None = None,
        *,
        start: Literal["start", "end"] = "end",
        lease: float = 30.0,
    ) -> Group:
        """A consumer group: many workers share its messages, each leased to one.

        Args:
            topics: the group's topics or patterns; needed to create it, and
                must match when it exists (``None``: whatever it has).
            start: where a new group begins: ``"end"`` (only messages stored
                from now on) or ``"start"`` (all retained history).
            lease: seconds each pulled message is leased for.
        Returns:
            A :class:`~hubbub.client.groups.Group`: ``pull()``, ``ack()``,
            ``nack()``, ``extend()``, ``info()``, or ``consume()`` to iterate.
        """
        names = [topics] if isinstance(topics, str) else topics
        return Group(self, name, names, start=start, lease=lease)

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        job: str | None = None,
        metadata: dict[str, str] | None = None,
        chunk_size: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        state_file: Path | None = None,
    ) -> dict[str, Any]:
        """Upload a file over tus, resuming an interrupted upload of the same file.

        ::

            info = await hub.upload("video.mp4", on_progress=lambda done, total: ...)

        Options (``job``, ``metadata``, ``chunk_size``, ``on_progress``,
        ``state_file``) and the rules are those of
        :func:`hubbub.client.uploads.upload`.
        """
        return await upload(self, path, job=job, metadata=metadata,
                            chunk_size=CHUNK_SIZE if chunk_size is None else chunk_size,
                            on_progress=on_progress,
                            state_file=state_file)


