"""What the hub's services use of the hub: narrow ports, so no service imports hub.py.

:class:`~hubbub.core.hub.Hub` builds its services (jobs, requests, presence,
uploads, cluster nodes) and hands each itself; each service names the port
it needs, the part of the hub it may use, and nothing else. The hub
satisfies every port (mypy checks it where the hub builds them), and a test
may hand a service any object that does. ``Groups`` goes further and takes
plain callbacks; the services here use more of the hub than a callback or
two.

The ports form a ladder: :class:`HubBase` (the store, the configuration,
the clock, whether the hub drains), :class:`Counted` (plus this node's
counters and live subscriptions), :class:`Publisher` (plus publishing,
subscribing and consumer groups) and :class:`Observed` (plus what the stats
report reads of nodes and uploads); :class:`WithOrders` and :class:`Administered`
are what presence and the cluster's list of connections use of each other
through the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from ..config import Config
from ..engines.base import AppendResult, Engine
from ..protocol.message import JSON
from .fanout import FanOut
from .groups import Groups
from .metrics import Metrics
from .subscription import Subscription
from .values import PublishItem


class HubBase(Protocol):
    """The store, the configuration and the clock."""

    @property
    def engine(self) -> Engine: ...

    @property
    def config(self) -> Config: ...

    @property
    def draining(self) -> bool:
        """Whether the hub refuses new work (a shutdown has begun)."""
        ...

    def now(self) -> int:
        """Milliseconds since the Unix epoch, from the hub's clock (injectable in tests)."""
        ...


class Counted(HubBase, Protocol):
    """Plus this node's counters and its live subscriptions."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def fanout(self) -> FanOut: ...


class Publisher(Counted, Protocol):
    """Plus publishing, subscribing and consumer groups: what jobs, requests
    and uploads build on."""

    @property
    def groups(self) -> Groups: ...

    async def publish(self, topic: str, data: bytes, content_type: str = JSON,
                      key: str | None = None, *, owner: str | None = None,
                      limit_topics: bool = False) -> AppendResult: ...

    async def publish_batch(self, items: Sequence[PublishItem], *,
                            limit_topics: bool = False) -> list[AppendResult]: ...

    async def subscribe(self, patterns: Sequence[str], after: str | None = None, *,
                        default: Literal["start", "end"] = "end",
                        buffer: int | None = None) -> Subscription: ...


class NodesView(Protocol):
    """The cluster view (:class:`~hubbub.core.nodes.Nodes`)."""

    def alone(self) -> dict[str, Any]: ...

    async def view(self) -> dict[str, Any]: ...


class UploadsView(Protocol):
    """What the stats report reads of uploads (:class:`~hubbub.core.uploads.Uploads`)."""

    async def scan(self, limit: int = 1000) -> Sequence[Any]: ...


class Observed(Counted, Protocol):
    """Plus what the stats report (:mod:`hubbub.core.stats`) reads."""

    @property
    def nodes(self) -> NodesView: ...

    @property
    def uploads(self) -> UploadsView: ...


class Orders(Protocol):
    """Orders to every node (:meth:`hubbub.core.connections.Connections.order`)."""

    async def order(self, order: dict[str, str]) -> None: ...


class WithOrders(HubBase, Protocol):
    """Plus orders to every node: what presence uses to drop another node's entry."""

    @property
    def connections(self) -> Orders: ...


class NodeId(Protocol):
    """This node's id in the cluster (:class:`~hubbub.core.nodes.Nodes`)."""

    @property
    def id(self) -> str: ...


class PresenceDrops(Protocol):
    """Dropping this node's own presence entries (:class:`~hubbub.core.presence.Presence`)."""

    async def drop_mine(self, key: str) -> bool: ...


class Administered(HubBase, Protocol):
    """What the cluster's list of connections and its orders use
    (:mod:`hubbub.core.connections`)."""

    @property
    def nodes(self) -> NodeId: ...

    @property
    def presence(self) -> PresenceDrops: ...

    def reset_topic(self, topic: str) -> int: ...


__all__ = ["Administered", "Counted", "HubBase", "NodeId", "NodesView", "Observed", "Orders",
           "PresenceDrops", "Publisher", "UploadsView", "WithOrders"]
