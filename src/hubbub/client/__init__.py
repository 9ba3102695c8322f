"""The hubbub Python client (asyncio for now; the sync client comes later).

::

    from hubbub.client import AsyncClient

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        await hub.publish("chat.room1", {"text": "hi"})
        async for item in hub.subscribe("chat.>", after="start", transport="sse"):
            ...
        async for delivery in hub.group("mailer", "orders.*").consume():
            ...                               # consumer groups: at-least-once
            await delivery.ack()

Errors the hub reports are raised as the :mod:`hubbub.errors` class it names
(``InvalidTopic``, ``InvalidCursor``, ``Unavailable``...).
"""

from __future__ import annotations

from .aio import TRANSPORTS, AsyncClient, Subscription, Transport
from .groups import Delivery, Group

__all__ = ["TRANSPORTS", "AsyncClient", "Delivery", "Group", "Subscription", "Transport"]
