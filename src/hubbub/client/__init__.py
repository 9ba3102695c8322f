"""The hubbub Python client: :class:`AsyncClient` (asyncio) and :class:`Client` (blocking).

::

    from hubbub.client import AsyncClient

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        await hub.publish("chat.room1", {"text": "hi"})
        async for msg in hub.subscribe("chat.>", after="start"):   # transport="auto"
            ...
        async for delivery in hub.group("mailer", "orders.*").consume():
            ...                               # consumer groups: at-least-once
            await delivery.ack()

    from hubbub.client import Client          # the same, without an event loop

    with Client("http://127.0.0.1:8080") as hub:
        hub.publish("chat.room1", {"text": "hi"})

Errors the hub reports are raised as the :mod:`hubbub.protocol.errors` class it names
(``InvalidTopic``, ``GapError``, ``Unavailable``...), carrying the problem
document (``exc.status``, ``exc.problem``, ``exc.field``, ``exc.extra``). See
``docs/client.md``.
"""

from __future__ import annotations

from .aio import TRANSPORTS, AsyncClient
from .backoff import Backoff, BackoffPolicy
from .base import Door, Transport
from .errors import DoorRefused
from .groups import Delivery, Group
from .jobs import Jobs
from .subscription import Subscription
from .sync import Client, SyncDelivery, SyncGroup, SyncJobs, SyncSubscription, SyncTakenJob
from .worker import JobError, Progress, TakenJob

__all__ = [
    "TRANSPORTS", "AsyncClient", "Backoff", "BackoffPolicy", "Client", "Delivery", "Door",
    "DoorRefused", "Group", "JobError", "Jobs", "Progress", "Subscription", "SyncDelivery",
    "SyncGroup", "SyncJobs", "SyncSubscription", "SyncTakenJob", "TakenJob", "Transport",
]
