"""The stats report: this node's counters and what the store knows, as
JSON-ready data, for ``/metrics`` and ``/v1/stats``
(:mod:`hubbub.transports.metrics` encodes it)."""

from __future__ import annotations

from typing import Any, Final

from .. import __version__
from ..protocol.errors import HubbubError
from ..protocol.jobstate import FINAL
from ..protocol.jobstate import decode as decode_job
from .jobs import RECORD_PREFIX
from .metrics import OTHER
from .ports import Observed

#: Records of one kind (jobs, uploads) a snapshot reads at most.
SCAN_LIMIT: Final = 1000
#: Jobs and uploads in progress a snapshot lists by name.
LISTED: Final = 20


async def snapshot(hub: Observed) -> dict[str, Any]:
    """Everything counted, and what the store knows, as JSON-ready data.

    The node's counters are always there; the store's parts (topics, groups'
    pending entries, jobs, uploads) are left out, and ``store.up`` is false,
    when the store does not answer.
    """
    m = hub.metrics
    now = hub.now()
    engine = type(hub.engine).__name__.removesuffix("Engine").lower()
    out: dict[str, Any] = {
        "node": {
            "version": __version__, "engine": engine, "started": int(m.started * 1000),
            "uptime": round(max(0.0, now / 1000 - m.started), 3), "draining": hub.draining,
        },
        "published": {"total": sum(m.published.values()), "namespaces": dict(m.published),
                      "duplicates": m.duplicates},
        "publish_latency": {"count": m.publish_seconds.count, "sum": m.publish_seconds.sum,
                            "buckets": m.publish_seconds.buckets()},
        "doors": {
            door: {"deliveries": c.deliveries, "open": c.open,
                   "slow_consumers": c.slow_consumers, "gaps": dict(c.gaps)}
            for door, c in m.doors.items()
        },
        "subscriptions": len(hub.fanout),
        "fanout_messages": hub.fanout.messages,
        "problems": dict(m.problems),
        "store": {"up": True, "errors": dict(m.store_errors)},
    }
    if m.server is not None:
        out["server"] = m.server()
    groups: list[dict[str, Any]] = [
        {"group": name, "patterns": [], "pending": None, "leased": c.held(now),
         "delivered": c.leased, "acked": c.settled.get("ack", 0),
         "nacked": c.settled.get("nack", 0), "dead_lettered": c.dead_lettered}
        for name, c in sorted(m.groups.items())
    ]
    out["groups"] = groups
    out["cluster"] = hub.nodes.alone()  # without the store, this node is all it knows
    out["jobs"] = {"states": {}, "active": [], "partial": False}
    out["uploads"] = {"bytes_received": m.upload_bytes, "in_progress": 0, "complete": 0,
                      "active": [], "partial": False}
    try:
        out["topics"] = len(await hub.engine.topics())
        for g in groups:
            if g["group"] != OTHER:
                info = await hub.engine.group(g["group"])
                if info is not None:
                    g["patterns"], g["pending"] = list(info.patterns), info.pending
        out["jobs"] = await _jobs(hub, now)
        out["uploads"].update(await _uploads(hub))
        out["cluster"] = await hub.nodes.view()
    except HubbubError:
        out["store"]["up"] = False
    return out


async def _jobs(hub: Observed, now: int) -> dict[str, Any]:
    records = await hub.engine.scan(RECORD_PREFIX, now, SCAN_LIMIT)
    states: dict[str, int] = {}
    active = []
    for record in records:
        job = decode_job(record.value, record.version)
        states[job.state.value] = states.get(job.state.value, 0) + 1
        if job.state not in FINAL:
            active.append(job)
    active.sort(key=lambda job: job.updated, reverse=True)
    return {
        "states": states,
        "active": [
            {"id": j.id, "queue": j.queue, "state": j.state.value, "progress": j.progress,
             "message": j.message, "attempts": j.attempts, "updated": j.updated}
            for j in active[:LISTED]
        ],
        "partial": len(records) >= SCAN_LIMIT,
    }


async def _uploads(hub: Observed) -> dict[str, Any]:
    uploads = await hub.uploads.scan(SCAN_LIMIT)
    active = sorted((u for u in uploads if not u.done), key=lambda u: u.created, reverse=True)
    return {
        "in_progress": len(active),
        "complete": len(uploads) - len(active),
        # Not the ids: an upload's id lets its holder write to it.
        "active": [
            {"name": _upload_name(u.metadata), "offset": u.offset, "length": u.length,
             "created": u.created}
            for u in active[:LISTED]
        ],
        "partial": len(uploads) >= SCAN_LIMIT,
    }


def _upload_name(metadata: dict[str, bytes]) -> str | None:
    """The file name a tus client gave (``filename``, or ``name`` as Uppy sends)."""
    name = metadata.get("filename") or metadata.get("name")
    return None if name is None else name.decode(errors="replace")[:200]


__all__ = ["snapshot"]
