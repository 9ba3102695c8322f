"""The calls of the :class:`~hubbub.client.AsyncClient` that the hub answers once:
request-reply from the caller's side and the responder's answers, a page of
history, who is present; and the two ways of making such a call, retried
(the same idempotency key every time) or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from ..protocol import errors
from ..protocol.message import ERROR_TYPE
from .backoff import BackoffPolicy
from .base import encode_payload, post_retrying
from .errors import error_from_response


class Calls:
    """What :class:`~hubbub.client.AsyncClient` asks of the hub in one answer each."""

    http: httpx.AsyncClient
    base_url: str
    backoff: BackoffPolicy
    retry_for: float

    async def _post_retrying(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        """:func:`hubbub.client.base.post_retrying` with this client."""
        return await post_retrying(self, url, body, headers)


    async def request(
        self,
        topic: str,
        data: Any,
        *,
        timeout: float = 5.0,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Publish a request to ``topic`` and wait for one responder's reply.

        ::

            reply = await hub.request("svc.echo", {"n": 1}, timeout=5)
            print(reply["data"])

        Not retried: a retry would be a new request (another worker may
        answer it too).

        Returns:
            The reply as a message object (``content_type`` and base64
            ``data`` for a non-JSON reply).
        Raises:
            NoResponders: no worker takes ``topic`` (``503`` at once); nothing
                was published.
            ResponderError: the responder's handler failed; the error's
                message is the one it sent.
            GatewayTimeout: no reply within ``timeout``.
            InvalidRequest, PayloadTooLarge...: nothing was published.
            Unavailable: the hub could not be reached.
        """
        body, ctype = encode_payload(data, content_type)
        return await self._json_call(
            "POST", "/v1/requests/" + quote(topic, safe=":@"),
            params={"timeout": f"{timeout:g}"}, content=body, headers={"Content-Type": ctype},
            timeout=httpx.Timeout(10.0, read=timeout + 10.0))

    async def _json_call(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        """One request, no retries: its JSON answer (a ``200``), else the error it means."""
        try:
            r = await self.http.request(method, url, **kw)
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"cannot reach the hub at {self.base_url}: {exc}") from exc
        if r.status_code != 200:
            raise await error_from_response(r)
        answer: dict[str, Any] = msgspec.json.decode(r.content)
        return answer

    async def reply(
        self, request_id: str, data: Any, *, content_type: str | None = None
    ) -> dict[str, Any]:
        """Answer a request (a responder's side; :meth:`respond` calls it for you).

        Returns:
            The receipt of the stored reply.
        Raises:
            Conflict: the request was already answered. Expired: its deadline
                passed. NotFound: nobody waits for it (its caller left). In
                each case nothing was stored.
        """
        body, ctype = encode_payload(data, content_type)
        return await self._post_retrying(
            "/v1/replies/" + quote(request_id, safe=""), body, {"Content-Type": ctype})

    async def reply_error(self, request_id: str, message: str) -> dict[str, Any]:
        """Tell a request's caller that its responder failed, and why: the caller
        gets a ``502`` problem (:class:`~hubbub.protocol.errors.ResponderError`)
        with ``message`` at once instead of waiting for its timeout.

        Returns:
            The receipt of the stored error reply.
        Raises:
            InvalidRequest: ``message`` is empty or over 1000 characters.
            Conflict, Expired, NotFound: as for :meth:`reply`; nothing stored.
        """
        return await self._post_retrying(
            "/v1/replies/" + quote(request_id, safe=""), message.encode(),
            {"Content-Type": ERROR_TYPE})

    async def history(
        self, topic: str, *, before: str = "end", limit: int = 100
    ) -> dict[str, Any]:
        """The newest ``limit`` messages of ``topic`` before ``before`` (``"end"``, or
        a cursor: a page's ``prev``), oldest first (``docs/http.md``)::

            page = await hub.history("chat.room1", limit=50)      # the last 50
            older = await hub.history("chat.room1", before=page["prev"], limit=50)
            async with hub.subscribe("chat.room1", after=page["cursor"]) as sub:
                ...                                                # and on, live

        Returns:
            ``{"messages": [...], "prev": CURSOR or None, "cursor": CURSOR}``:
            ``prev`` reads the page before (``None``: nothing older is
            retained), ``cursor`` reads on after this page's newest message.
        Raises:
            GapError: ``before`` is of an earlier epoch of the topic (its log
                was deleted or lost); ``extra["cursor"]`` is the current end.
            InvalidCursor: ``before`` is not a cursor of this topic.
            Unavailable: the hub could not be reached.
        """
        return await self._json_call(
            "GET", "/v1/topics/" + quote(topic, safe=":@") + "/messages",
            params={"before": before, "limit": str(limit)})

    async def presence(self, topic: str) -> dict[str, Any]:
        """Who is present on ``topic`` now (``docs/presence.md``):
        ``{"topic": ..., "count": n, "present": [{"conn", "client", "info", "since"}]}``.

        Joins and leaves as they happen are messages on ``presence.<topic>``:
        subscribe to it first, then call this, to keep a list up to date.

        Raises:
            NotFound: the topic's namespace has no presence.
            Unauthorized, Forbidden: the token may not read the topic.
            Unavailable: the hub could not be reached.
        """
        return await self._json_call("GET", "/v1/topics/" + quote(topic, safe=":@") + "/presence")
