"""What one hub node counts: plain integers bumped on the paths they count, read when asked.

The paths that count (a publish, each door's write of a batch, a pull, a
settle) only add to ints and dict entries of the :class:`Metrics` object at
``hub.metrics``: no lock, no allocation in the common case, no library call
per delivery. :func:`hubbub.core.stats.snapshot` reads it, together with what the store knows
(group backlogs, jobs, uploads), when ``/metrics`` is scraped or
``/v1/stats`` is asked; :mod:`hubbub.transports.metrics` encodes the result
for Prometheus and as JSON.

Invariants
----------
"labels are bounded": Labels are bounded. Messages are counted by namespace (the first token of
    the topic), never by topic; past ``MAX_NAMESPACES`` namespaces, new ones
    count under ``OTHER``. Groups are the ones this node served, at most
    ``MAX_GROUPS``; the rest count together under ``OTHER``.
"counters are this node's": Counters are this node's since its process started: they restart at 0
    with it (Prometheus' ``rate()`` takes resets in its stride). The store's
    numbers (a group's pending entries, jobs, uploads, topics) are the
    cluster's, read at snapshot time, and so is the ``cluster`` part: every
    node's summary, summed (:mod:`hubbub.core.nodes`).
"the door that raises lowers": A gauge a door raises, the same door lowers in a ``finally``.

Trade-offs
----------
"look past a gap head only": A batch a door writes has its gaps first (``Subscription`` hands out the
    gaps it knows before the messages that follow them), so
    :meth:`DoorCounts.sent` looks past a batch's head only when the head is a gap.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Final

from ..engines.base import AppendResult, Lease
from ..protocol.leases import Outcome
from ..protocol.message import Message
from .subscription import Event, Gap

#: The doors deliveries are counted by.
DOORS: Final = ("ws", "sse", "longpoll", "poll")
#: The label of what is past a bound (not a valid topic token, so never a namespace).
OTHER: Final = "(other)"
MAX_NAMESPACES: Final = 200
MAX_GROUPS: Final = 100
#: Upper bounds, in seconds, of the publish latency buckets (a store commit).
PUBLISH_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class Histogram:
    """A Prometheus-style histogram in plain ints: one bisect per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        #: Observations per bucket (not cumulative); the last is above every bound.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "<=").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper bound, count)`` pairs, the last one ``(inf, count)``."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class DoorCounts:
    """One door's counters and its open-connections gauge."""

    __slots__ = ("deliveries", "open", "slow_consumers", "gaps")

    def __init__(self) -> None:
        #: Messages written to clients (gap notices not included).
        self.deliveries = 0
        #: Connections open now: WebSockets, SSE streams, long polls waiting (invariant "the door that raises lowers").
        self.open = 0
        #: Subscribers cut off because they fell behind their buffer.
        self.slow_consumers = 0
        #: Gap notices written, by reason (``trimmed``, ``epoch``, ``dropped``).
        self.gaps: dict[str, int] = {}

    def sent(self, batch: Sequence[Event]) -> None:
        """Count a batch that was written to a client (trade-off "look past a gap head only")."""
        if not batch:
            return
        if type(batch[0]) is Message:
            self.deliveries += len(batch)
            return
        for i, event in enumerate(batch):
            if not isinstance(event, Gap):
                self.deliveries += len(batch) - i
                return
            self.gaps[event.reason] = self.gaps.get(event.reason, 0) + 1

    def page(self, messages: int, gaps: Sequence[Gap]) -> None:
        """Count a page of a poll: ``messages`` messages and these gaps."""
        self.deliveries += messages
        for gap in gaps:
            self.gaps[gap.reason] = self.gaps.get(gap.reason, 0) + 1


class GroupCounts:
    """One consumer group as this node served it, and the leases it handed out."""

    __slots__ = ("leased", "settled", "dead_lettered", "_held", "_prune_at")

    def __init__(self) -> None:
        #: Leases handed out (deliveries to workers).
        self.leased = 0
        #: Settles that applied (``Outcome.OK``), by action: ack, nack, extend.
        self.settled: dict[str, int] = {}
        #: Messages this node's pulls moved to the dead-letter topic.
        self.dead_lettered = 0
        # lease id -> deadline (ms) of the leases handed out here and not settled here.
        self._held: dict[str, int] = {}
        self._prune_at = 1024

    def leases(self, leases: Sequence[Lease], dead: int, now: int) -> None:
        """Count what a pull took."""
        self.leased += len(leases)
        self.dead_lettered += dead
        held = self._held
        for lease in leases:
            held[lease.lease_id] = lease.deadline
        if len(held) > self._prune_at:  # leases nobody settles must not pile up
            self.held(now)
            self._prune_at = max(1024, 2 * len(held))

    def settle(self, ids: Sequence[str], outcomes: Sequence[Outcome], action: str,
               deadline: int) -> None:
        """Count a settle: ``deadline`` is the new one of an extended lease."""
        held = self._held
        ok = 0
        for lease_id, outcome in zip(ids, outcomes, strict=True):
            if outcome is Outcome.OK:
                ok += 1
                if action == "extend":
                    if lease_id in held:
                        held[lease_id] = deadline
                    continue
            held.pop(lease_id, None)
        if ok:
            self.settled[action] = self.settled.get(action, 0) + ok

    def held(self, now: int) -> int:
        """Leases handed out here that are neither settled here nor run out by ``now``.

        A lease settled through another node counts until its deadline.
        """
        held = self._held
        for lease_id in [k for k, deadline in held.items() if deadline <= now]:
            del held[lease_id]
        return len(held)


class Metrics:
    """Every counter of one hub node (invariant "counters are this node's"). Reached as ``hub.metrics``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.started = clock()
        self.doors = {door: DoorCounts() for door in DOORS}
        self.ws, self.sse, self.longpoll, self.poll = (self.doors[d] for d in DOORS)
        #: Messages stored by this node's publishes, by namespace (invariant "labels are bounded").
        self.published: dict[str, int] = {}
        #: Publishes answered from an earlier one with the same idempotency key.
        self.duplicates = 0
        #: Seconds from handing a publish (or a batch) to the store to its commit.
        self.publish_seconds = Histogram(PUBLISH_BUCKETS)
        #: Store failures: ``append`` (a publish), ``read`` (a subscription or
        #: poll reading history), ``feed`` (the live feed broke; subscribers resume).
        self.store_errors = {"append": 0, "read": 0, "feed": 0}
        #: HTTP problem responses, by their ``code``.
        self.problems: dict[str, int] = {}
        #: Upload bytes committed (synced to disk and recorded) by this node.
        self.upload_bytes = 0
        self.groups: dict[str, GroupCounts] = {}
        #: What the server running this hub counts (connections, refusals,
        #: timeouts, slow consumers cut off by the write deadline), as names
        #: and numbers, when it tells: ``hubbub serve``'s server sets it.
        self.server: Callable[[], dict[str, int]] | None = None

    def stored(self, results: Sequence[AppendResult], seconds: float) -> None:
        """Count a committed publish (one store call) that took ``seconds``."""
        self.publish_seconds.observe(seconds)
        published = self.published
        for result in results:
            if result.duplicate:
                self.duplicates += 1
                continue
            ns = result.message.topic.partition(".")[0]
            if ns in published:
                published[ns] += 1
            elif len(published) < MAX_NAMESPACES:
                published[ns] = 1
            else:
                published[OTHER] = published.get(OTHER, 0) + 1

    def problem(self, code: str) -> None:
        self.problems[code] = self.problems.get(code, 0) + 1

    def group(self, name: str) -> GroupCounts:
        """The counters of group ``name`` (invariant "labels are bounded": past ``MAX_GROUPS``, the shared ones)."""
        counts = self.groups.get(name)
        if counts is None:
            if len(self.groups) >= MAX_GROUPS:
                name = OTHER
                counts = self.groups.get(name)
            if counts is None:
                counts = self.groups[name] = GroupCounts()
        return counts


__all__ = ["DOORS", "OTHER", "DoorCounts", "GroupCounts", "Histogram", "Metrics"]
