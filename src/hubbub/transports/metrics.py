"""The operations doors: ``GET /metrics`` (Prometheus) and ``GET /v1/stats`` (JSON).

Both encode one :func:`hubbub.core.stats.snapshot`: the node's counters
(plain ints kept by the core and the doors) and what the store knows. Nothing
here runs per message: the Prometheus families are built when a scrape asks,
by a collector over the snapshot, so the publish and fan-out paths never call
prometheus-client.

``/metrics`` answers in the Prometheus text format 0.0.4, or OpenMetrics when
the scraper's ``Accept`` asks for it (prometheus-client's ``choose_encoder``).
The metric names and labels are listed in ``docs/operations.md``; their
labels are bounded (:mod:`hubbub.core.metrics`, invariant "labels are bounded").

With authentication on, both need an admin credential (``hubbub.admin`` in a
JWT, ``admin = true`` for an API key): they name topics' namespaces, groups
and jobs across every client.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core.stats import snapshot
from ..protocol.errors import Forbidden, Unauthorized
from .auth import principal_of
from .httpkit import hub_of, json_response

_CONNECTED_DOORS = ("ws", "sse", "longpoll")


def _bound(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


#: What the server's counters mean (hubbub.server.state.Counts).
_SERVER_COUNTS = {
    "refused": "Connections refused with 503 past max_connections",
    "timed_out": "Connections closed by the head, body or keep-alive timeout",
    "slow_cut_off": "Clients cut off because their socket took nothing for write_deadline",
    "whole_responses": "Responses written whole in one write (hubbub.respond)",
    "crowd_responses": "Responses written whole to a crowd at once (respond_all)",
    "frame_writes": "Pre-built WebSocket frame writes (hubbub.frames)",
}


class _Snapshot(Collector):
    """Prometheus families of one snapshot (see ``docs/operations.md``)."""

    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        node, doors = s["node"], s["doors"]
        info = GaugeMetricFamily("hubbub_info", "The hub's version and store engine",
                                 labels=["version", "engine"])
        info.add_metric([node["version"], node["engine"]], 1)
        yield info
        yield GaugeMetricFamily("hubbub_start_time_seconds",
                                "When this node started (Unix time)", node["started"] / 1000)
        yield GaugeMetricFamily("hubbub_draining", "1 while the node drains (shutting down)",
                                int(node["draining"]))
        yield GaugeMetricFamily("hubbub_store_up",
                                "1 if the store answered this scrape", int(s["store"]["up"]))
        yield _counter("hubbub_messages_published", "Messages stored by this node's publishes",
                       "namespace", s["published"]["namespaces"])
        yield CounterMetricFamily(
            "hubbub_publish_duplicates",
            "Publishes answered from an earlier one with the same Idempotency-Key",
            s["published"]["duplicates"])
        lat = s["publish_latency"]
        yield HistogramMetricFamily(
            "hubbub_publish_seconds",
            "Time from handing a publish (or a batch) to the store until it committed",
            buckets=[(_bound(le), n) for le, n in lat["buckets"]],
            sum_value=lat["sum"])
        yield _counter("hubbub_store_errors", "Store failures by operation",
                       "op", s["store"]["errors"])
        yield CounterMetricFamily("hubbub_fanout_messages",
                                  "Committed messages fed to this node's fan-out",
                                  s["fanout_messages"])
        deliveries = CounterMetricFamily("hubbub_deliveries",
                                         "Messages written to subscribers and pollers",
                                         labels=["door"])
        gaps = CounterMetricFamily("hubbub_gaps", "Gap notices written (history said lost)",
                                   labels=["door", "reason"])
        slow = CounterMetricFamily("hubbub_slow_consumer_disconnects",
                                   "Subscribers cut off for falling behind their buffer",
                                   labels=["door"])
        connections = GaugeMetricFamily(
            "hubbub_connections",
            "Open WebSockets, SSE streams and waiting long polls", labels=["door"])
        for door, c in doors.items():
            deliveries.add_metric([door], c["deliveries"])
            for reason, n in sorted(c["gaps"].items()):
                gaps.add_metric([door, reason], n)
            if door in _CONNECTED_DOORS:
                slow.add_metric([door], c["slow_consumers"])
                connections.add_metric([door], c["open"])
        yield from (deliveries, gaps, slow, connections)
        yield GaugeMetricFamily("hubbub_subscriptions", "Live subscriptions on this node",
                                s["subscriptions"])
        yield _counter("hubbub_http_problems", "HTTP problem responses by code",
                       "code", s["problems"])
        yield from self._groups(s["groups"])
        if "topics" in s:
            yield GaugeMetricFamily("hubbub_topics", "Topics in the store", s["topics"])
        jobs = GaugeMetricFamily("hubbub_jobs", "Jobs recorded, by state", labels=["state"])
        for state, n in sorted(s["jobs"]["states"].items()):
            jobs.add_metric([state], n)
        yield jobs
        up = s["uploads"]
        uploads = GaugeMetricFamily("hubbub_uploads", "Uploads recorded, by state",
                                    labels=["state"])
        uploads.add_metric(["in_progress"], up["in_progress"])
        uploads.add_metric(["complete"], up["complete"])
        yield uploads
        yield CounterMetricFamily("hubbub_upload_bytes_received",
                                  "Upload bytes committed by this node", up["bytes_received"])
        for name, value in sorted(s.get("server", {}).items()):
            # hubbub serve's own server: connections open now, and its counters.
            if name == "connections":
                yield GaugeMetricFamily("hubbub_server_connections",
                                        "Connections the server holds open", value)
            else:
                yield CounterMetricFamily(f"hubbub_server_{name}",
                                          _SERVER_COUNTS.get(name, name), value)

    @staticmethod
    def _groups(groups: list[dict[str, Any]]) -> Iterator[Metric]:
        pending = GaugeMetricFamily("hubbub_group_pending",
                                    "Pending entries of a group (leased or due again)",
                                    labels=["group"])
        leased = GaugeMetricFamily("hubbub_group_leased",
                                   "Leases this node handed out that are still held",
                                   labels=["group"])
        delivered = CounterMetricFamily("hubbub_group_deliveries",
                                        "Leases this node handed out", labels=["group"])
        settled = CounterMetricFamily("hubbub_group_settled", "Leases settled, by action",
                                      labels=["group", "action"])
        dead = CounterMetricFamily("hubbub_group_dead_lettered",
                                   "Messages this node moved to the dead-letter topic",
                                   labels=["group"])
        for g in groups:
            name = g["group"]
            if g["pending"] is not None:
                pending.add_metric([name], g["pending"])
            leased.add_metric([name], g["leased"])
            delivered.add_metric([name], g["delivered"])
            settled.add_metric([name, "ack"], g["acked"])
            settled.add_metric([name, "nack"], g["nacked"])
            dead.add_metric([name], g["dead_lettered"])
        yield from (pending, leased, delivered, settled, dead)


def _check_admin(request: Request) -> None:
    """Refuse anyone but an admin (everyone is one with authentication off)."""
    principal = principal_of(request)
    if not principal.admin:
        error = Unauthorized if principal.anonymous else Forbidden
        raise error("statistics need an admin credential")


async def metrics(request: Request) -> Response:
    _check_admin(request)
    snap = await snapshot(hub_of(request))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snap))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})


async def stats(request: Request) -> Response:
    """The same snapshot as JSON, for dashboards (the one at ``/`` polls it)."""
    _check_admin(request)
    return json_response(await snapshot(hub_of(request)))


routes: list[BaseRoute] = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/stats", stats, methods=["GET"]),
]
