"""The counters of :mod:`hubbub.core.metrics`, fed by hand (no loop, no network),
and a snapshot of a hub driven with no server."""

from __future__ import annotations

from hubbub.core import Hub
from hubbub.core.metrics import (
    MAX_GROUPS,
    MAX_NAMESPACES,
    OTHER,
    DoorCounts,
    GroupCounts,
    Histogram,
    Metrics,
)
from hubbub.core.stats import snapshot
from hubbub.core.subscription import Gap
from hubbub.engines.base import AppendResult, Lease
from hubbub.engines.memory import MemoryEngine
from hubbub.protocol.leases import Outcome
from hubbub.protocol.message import JSON, Message


def message(topic: str, offset: int = 1) -> Message:
    return Message(topic, "abcdefghij", offset, offset, 0, "id", b"1", JSON)


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    """A value equal to a bound falls in that bound's bucket (Prometheus' le)."""
    h = Histogram([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.buckets() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert h.count == 5 and abs(h.sum - 8.65) < 1e-9


def test_published_counts_namespaces_up_to_a_bound() -> None:
    """Messages count by namespace; past MAX_NAMESPACES new ones share OTHER;
    duplicates count apart."""
    m = Metrics()
    m.stored([AppendResult(message("chat.a")), AppendResult(message("chat.b.c")),
              AppendResult(message("solo"))], 0.001)
    m.stored([AppendResult(message("chat.a"), duplicate=True)], 0.001)
    assert m.published == {"chat": 2, "solo": 1} and m.duplicates == 1
    m.stored([AppendResult(message(f"ns{i}.t")) for i in range(MAX_NAMESPACES + 10)], 0.01)
    assert len(m.published) == MAX_NAMESPACES + 1
    assert m.published[OTHER] == 12  # 2 of the first 200 were taken by chat and solo
    assert m.publish_seconds.count == 3


def test_door_counts_gaps_apart_from_messages() -> None:
    """A batch's leading gaps count by reason; the rest are deliveries."""
    d = DoorCounts()
    d.sent([message("a.b", 1), message("a.b", 2)])
    d.sent([Gap("a.b", 3, 9, "trimmed"), Gap("a.c", 1, 2, "epoch"), message("a.b", 10)])
    d.sent([Gap("a.b", 11, 12, "dropped")])
    d.sent([])
    assert d.deliveries == 3
    assert d.gaps == {"trimmed": 1, "epoch": 1, "dropped": 1}
    d.page(5, [Gap("a.b", 1, 1, "trimmed")])
    assert d.deliveries == 8 and d.gaps["trimmed"] == 2


def test_group_counts_held_leases() -> None:
    """Held leases: handed out, not settled here, not run out; extends move
    deadlines; only OK outcomes count as settled."""
    g = GroupCounts()
    leases = [Lease(f"l{i}", message("w.a", i), 1, 1000 + i) for i in range(4)]
    g.leases(leases, 0, now=0)
    assert g.leased == 4 and g.held(now=0) == 4
    g.settle(["l0", "l1", "zz"], [Outcome.OK, Outcome.EXPIRED, Outcome.UNKNOWN], "ack", 0)
    assert g.settled == {"ack": 1} and g.held(now=0) == 2
    g.settle(["l2"], [Outcome.OK], "extend", deadline=5000)
    assert g.held(now=1500) == 1  # l3 ran out at 1003; l2 was extended
    g.settle(["l2"], [Outcome.OK], "nack", 0)
    assert g.held(now=1500) == 0 and g.settled == {"ack": 1, "extend": 1, "nack": 1}


def test_group_counts_forget_leases_nobody_settles() -> None:
    """Leases that run out unsettled are pruned as more are handed out, even
    with nobody reading the gauge."""
    g = GroupCounts()
    for i in range(10_000):
        g.leases([Lease(f"l{i}", message("w.a", i), 1, deadline=i)], 0, now=i)
    assert len(g._held) <= 2048


def test_groups_are_bounded() -> None:
    m = Metrics()
    for i in range(MAX_GROUPS + 5):
        m.group(f"g{i}").leased += 1
    assert len(m.groups) == MAX_GROUPS + 1 and m.groups[OTHER].leased == 5
    assert m.group("g0") is m.groups["g0"]


async def test_snapshot_of_a_hub_with_no_server() -> None:
    """The core counts without any door: publishes, the fan-out, a group."""
    async with Hub(MemoryEngine()) as hub:
        await hub.publish("chat.a", b'"hi"')
        leases = await hub.groups.pull("g", ["chat.*"], start="start")
        snap = await snapshot(hub)
    assert snap["published"]["namespaces"] == {"chat": 1}
    assert snap["fanout_messages"] == 1 and snap["topics"] == 1
    assert snap["groups"] == [{
        "group": "g", "patterns": ["chat.*"], "pending": 1, "leased": len(leases),
        "delivered": 1, "acked": 0, "nacked": 0, "dead_lettered": 0}]
    assert snap["store"]["up"] is True and snap["node"]["engine"] == "memory"
