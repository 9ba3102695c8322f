"""The admin API from the client side (``docs/operations.md``): an admin token needed.

::

    async with AsyncClient(url, token=admin_token) as hub:
        for conn in (await hub.admin.connections())["connections"]:
            print(conn["id"], conn["door"], conn["subject"], conn["subscriptions"])
        await hub.admin.disconnect(conn["id"])

Every call raises :class:`~hubbub.protocol.errors.Forbidden` for a token that
is not an admin's (:class:`~hubbub.protocol.errors.Unauthorized` with none).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from .base import ClientBase
from .errors import error_from_response


def _topic(topic: str) -> str:
    return "/v1/topics/" + quote(topic, safe=":@")


class Admin:
    """The admin API of one hub (the whole cluster behind it). Reached as ``hub.admin``."""

    def __init__(self, client: ClientBase) -> None:
        self._client = client

    async def _call(self, method: str, url: str) -> Any:
        r = await self._client.http.request(method, url)
        if r.status_code not in (200, 202, 204):
            raise await error_from_response(r)
        return msgspec.json.decode(r.content) if r.content else None

    async def connections(self) -> dict[str, Any]:
        """``{"count", "connections": [{id, node, door, subject, remote, since,
        subscriptions}, ...]}``: every WebSocket and SSE connection, oldest first."""
        answer: dict[str, Any] = await self._call("GET", "/v1/connections")
        return answer

    async def disconnect(self, conn_id: str) -> bool:
        """Close a connection on whichever node holds it; whether it is gone already
        (else it was ordered to close and is still listed).

        Raises:
            NotFound: no such connection is listed.
        """
        r = await self._client.http.delete("/v1/connections/" + quote(conn_id, safe=""))
        if r.status_code not in (202, 204):
            raise await error_from_response(r)
        return r.status_code == 204

    async def purge_topic(self, topic: str) -> dict[str, Any]:
        """Remove every retained message of ``topic``: ``{"topic", "removed"}``.

        Raises:
            NotFound: the topic was never written.
        """
        answer: dict[str, Any] = await self._call("POST", _topic(topic) + "/purge")
        return answer

    async def delete_topic(self, topic: str) -> None:
        """Remove ``topic``'s log; its next message starts a new epoch at offset 1.

        Raises:
            NotFound: the topic has no log.
        """
        await self._call("DELETE", _topic(topic))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a job that is not finished; the cancelled job.

        Raises:
            NotFound: no such job. Conflict: it is already final.
        """
        answer: dict[str, Any] = await self._call(
            "POST", "/v1/jobs/" + quote(job_id, safe="") + "/cancel")
        return answer

    async def presence(self) -> dict[str, Any]:
        """Every presence entry of every topic: ``{"count", "present": [...]}``."""
        answer: dict[str, Any] = await self._call("GET", "/v1/presence")
        return answer

    async def drop_presence(self, topic: str, conn: str) -> None:
        """Drop ``conn``'s presence entry on ``topic`` (a ``leave``, reason ``dropped``).

        Raises:
            NotFound: no such entry.
        """
        await self._call("DELETE", _topic(topic) + "/presence/" + quote(conn, safe=""))
