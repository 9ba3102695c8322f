"""The nodes of a cluster, each announcing what it counts, for a cluster-wide view.

Theory of operation
-------------------
Every hub node's counters (:mod:`hubbub.core.metrics`) are its own. To show a
cluster as a whole (``/v1/stats``' ``cluster`` part, the dashboard), each
node writes a short *summary* of them into an engine record
``node/<id>`` every :data:`INTERVAL` seconds, expiring after
:data:`MISSED` intervals, and reads everyone's back when asked. On one
node (the memory engine, or a lone SQLite hub) the cluster is that node.

Invariants
----------
"silent nodes drop out": A node that stops writing (killed, cut off from the store) drops out
    of the view once its record expires; a node that shuts down deletes
    its record at once.
"as fresh as the records": The view is as fresh as the records: at most :data:`INTERVAL`
    seconds old for other nodes; the asking node puts its own live
    summary in place of its record.
"summaries are best effort": Writing the summary is best effort: a store that does not answer
    only makes the view stale (and ``/v1/stats`` says the store is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import msgspec

from ..loop.tasks import cancel_and_wait
from ..protocol.errors import HubbubError
from .ports import Counted

log = logging.getLogger("hubbub.nodes")

#: The records' key prefix (engine record kind ``node``).
PREFIX = "node/"
#: Seconds between two summaries of a node.
INTERVAL = 2.0
#: Summaries a node may miss before it drops out of the view.
MISSED = 3
#: At most this many nodes are read back.
MAX_NODES = 1000

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Nodes:
    """This node's announcements and the cluster's view; ``hub.nodes``."""

    def __init__(self, hub: Counted) -> None:
        self.hub = hub
        #: This node's id in the cluster view (new with every process).
        self.id = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        """What this node counts, in short: the parts a cluster view adds up."""
        hub, m = self.hub, self.hub.metrics
        return {
            "id": self.id, "started": int(m.started * 1000), "draining": hub.draining,
            "published": sum(m.published.values()),
            "deliveries": {door: c.deliveries for door, c in m.doors.items()},
            "open": {door: c.open for door, c in m.doors.items()},
            "subscriptions": len(hub.fanout),
        }

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hubbub-nodes")

    async def stop(self) -> None:
        """Stop announcing and leave the view at once (invariant "silent nodes drop out")."""
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        with contextlib.suppress(HubbubError):
            await self.hub.engine.delete(PREFIX + self.id, self.hub.now())

    async def _run(self) -> None:
        while True:
            try:
                await self.announce()
            except HubbubError as exc:  # invariant "summaries are best effort"
                log.debug("node summary not written: %s", exc)
            await asyncio.sleep(INTERVAL)

    async def announce(self) -> None:
        """Write this node's summary now, and sweep the records of nodes gone."""
        engine, now = self.hub.engine, self.hub.now()
        await engine.put(PREFIX + self.id, _encode(self.summary()), now,
                         expires=now + int(INTERVAL * MISSED * 1000))
        await engine.expire(PREFIX, now, MAX_NODES)

    async def view(self) -> dict[str, Any]:
        """The cluster: its nodes' summaries (this one live, invariant "as fresh as the records") and their sums.

        Raises:
            HubbubError: the store did not answer.
        """
        records = await self.hub.engine.scan(PREFIX, self.hub.now(), MAX_NODES)
        mine = self.summary()
        nodes = [mine]
        for record in records:
            if record.key != PREFIX + self.id:
                with contextlib.suppress(msgspec.DecodeError):
                    nodes.append(_decode(record.value))
        return _view(nodes)

    def alone(self) -> dict[str, Any]:
        """The view of this node alone (what it knows when the store does not answer)."""
        return _view([self.summary()])


def _view(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Summaries (the first one this node's) and their sums."""
    doors = nodes[0]["open"].keys()
    return {
        "nodes": len(nodes),
        "published": sum(n.get("published", 0) for n in nodes),
        "deliveries": {d: sum(n.get("deliveries", {}).get(d, 0) for n in nodes)
                       for d in doors},
        "open": {d: sum(n.get("open", {}).get(d, 0) for n in nodes) for d in doors},
        "subscriptions": sum(n.get("subscriptions", 0) for n in nodes),
        "members": sorted(nodes, key=lambda n: (n.get("started", 0), n.get("id", ""))),
    }


__all__ = ["INTERVAL", "MISSED", "PREFIX", "Nodes"]
