"""Consumer groups: many workers share a topic or pattern; each message is leased to one.

The rules of a single delivery (leases, attempts, dead letters) are in
:mod:`hubbub.protocol.leases`; the engines apply them atomically. This module checks
input, creates groups on first use, resolves patterns to topics, and makes a
pull wait (a long poll) until something can be leased::

    groups = hub.groups
    leases = await groups.pull("mailer", ["orders.*"], max_messages=10, wait=30)
    for lease in leases:
        send_mail(lease.message.value())
    await groups.ack("mailer", [lease.lease_id for lease in leases])

Delivery is at-least-once: a message whose lease runs out before its ack is
leased again, to any worker, up to ``max_deliver`` times per namespace, then
moved to the dead-letter topic ``dlq.<group>`` with its attempts and the last
error a nack gave.

Whether a group has workers is known cluster-wide: every pull (and every
extend) keeps the engine record ``workers/<group>``, holding the group's
patterns, alive until the pull's wait plus its lease have passed, the longest
a live worker goes without pulling or extending. Request-reply asks
:meth:`Groups.has_workers` before it publishes a request, so a request nobody
takes fails at once (:mod:`hubbub.core.requests`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import msgspec

from ..config import Config
from ..engines.base import Engine, GroupInfo, Lease
from ..protocol.errors import Conflict, InvalidRequest, NotFound, SlowConsumer
from ..protocol.leases import Outcome, dead_letter_topic, parse_lease_id, validate_group
from ..protocol.topics import TopicFilter, matches, validate_pattern
from .metrics import Metrics
from .subscription import State, Subscription

MAX_PULL = 1000
MAX_TOPICS = 100
MAX_LEASE = 12 * 3600.0
MAX_DELAY = 7 * 86400.0
MAX_IDS = 1000
MAX_ERROR = 1000
#: The kind of the records that say a group has workers (one per group).
WORKERS = "workers/"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[str]).decode

Subscribe = Callable[[Sequence[str], str], Awaitable[Subscription]]


def _seconds(value: float, field: str, low: float, high: float) -> int:
    """Validate a duration in seconds; return it in milliseconds."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(f"{field} must be a number of seconds", field=field)
    if not low <= value <= high:
        raise InvalidRequest(f"{field} must be from {low:g} to {high:g} seconds", field=field)
    return int(value * 1000)


class Groups:
    """Consumer groups over one engine. Reached as ``hub.groups``."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        subscribe: Subscribe,
        now: Callable[[], int],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        #: Counted per group: leases handed out, settles, dead letters (core.metrics).
        self.metrics = metrics or Metrics()
        self.config = config
        self._subscribe = subscribe
        self._now = now
        # Pulls of this node waiting per group: a nack here wakes them at once
        # (a nack on another node reaches them by their next claim).
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        # What this node last wrote to each group's workers record: its
        # patterns and expiry. A pull rewrites the record only once half of
        # its life has passed, so a busy group costs one write now and then.
        self._announced: dict[str, tuple[tuple[str, ...], int]] = {}

    async def info(self, name: str) -> GroupInfo:
        """The group as stored.

        Raises:
            NotFound: no such group.
        """
        validate_group(name)
        g = await self.engine.group(name)
        if g is None:
            raise NotFound(f"no group {name!r}", field="group")
        return g

    async def _open(
        self, name: str, patterns: Sequence[str] | None, start: Literal["start", "end"]
    ) -> GroupInfo:
        """The group, created on first use at ``start``; its topics must match."""
        g = await self.engine.group(name)
        if patterns is None:
            if g is None:
                raise NotFound(
                    f"no group {name!r}; name its topics to create it", field="topic"
                )
            return g
        if g is None:
            start_seq = 0 if start == "start" else await self.engine.head_seq()
            g = await self.engine.create_group(name, patterns, start_seq, self._now())
        if sorted(g.patterns) != sorted(patterns):
            # Not which topics: they may be another principal's to know.
            raise Conflict(f"group {name!r} exists for other topics", field="topic")
        return g

    async def delete(self, name: str) -> None:
        """Forget the group: its position and pending entries (its dead-letter topic
        stays). Settling its outstanding leases is then ``NotFound``; waiting
        pulls wake and find it gone; a later pull with topics creates it anew.

        Raises:
            InvalidRequest: bad name.
            NotFound: no such group.
        """
        validate_group(name)
        if not await self.engine.delete_group(name):
            raise NotFound(f"no group {name!r}", field="group")
        self._kick(name)

    async def pull(
        self,
        name: str,
        patterns: Sequence[str] | None = None,
        *,
        max_messages: int = 1,
        wait: float = 0.0,
        lease: float = 30.0,
        start: Literal["start", "end"] = "end",
    ) -> list[Lease]:
        """Lease up to ``max_messages`` messages of the group to the caller.

        ``patterns`` creates the group on first use, at the start of retained
        history or at the current end (``start``); later pulls may omit them or
        must name the same. With ``wait`` > 0 and nothing to lease, waits up to
        ``wait`` seconds for a message (or a lease running out).

        Raises:
            InvalidRequest: bad name, patterns, ``max_messages``, ``wait`` or ``lease``.
            Conflict: the group exists for other topics.
            NotFound: no such group and no patterns to create it.
        """
        validate_group(name)
        if patterns is not None:
            if not patterns:
                raise InvalidRequest("at least one topic is required", field="topic")
            if len(patterns) > MAX_TOPICS:
                raise InvalidRequest(f"at most {MAX_TOPICS} topics per group", field="topic")
            patterns = sorted(set(patterns))
            for p in patterns:
                validate_pattern(p)
        if (
            isinstance(max_messages, bool) or not isinstance(max_messages, int)
            or not 1 <= max_messages <= MAX_PULL
        ):
            raise InvalidRequest(f"max must be from 1 to {MAX_PULL}", field="max")
        lease_ms = _seconds(lease, "lease", 0.1, MAX_LEASE)
        wait_ms = _seconds(wait, "wait", 0, self.config.server.max_wait)
        g = await self._open(name, patterns, start)
        await self._announce(g.name, g.patterns, wait_ms + lease_ms)
        deadline = self._now() + wait_ms
        sub: Subscription | None = None
        try:
            while True:
                if sub is None and wait_ms:
                    # Follow the topics before claiming, so a message stored
                    # between the claim and the wait still wakes us.
                    sub = await self._subscribe(g.patterns, "end")
                claim = await self._claim(g, max_messages, lease_ms)
                now = self._now()
                if claim[0] or now >= deadline:
                    return claim[0]
                until = deadline if claim[1] is None else min(deadline, claim[1])
                assert sub is not None
                try:
                    await self._wait(g.name, sub, max(0.0, (until - now) / 1000))
                except SlowConsumer:
                    sub = None
                else:
                    if sub.state is State.CLOSED:
                        return []  # the hub is draining: do not spin until the deadline
        finally:
            if sub is not None:
                sub.close()

    async def _wait(self, name: str, sub: Subscription, timeout: float) -> None:
        """Until a message arrives on ``sub``, a nack on this node gives
        leases of the group back, or ``timeout`` seconds pass."""
        kick: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(name, set())
        waiting.add(kick)
        news = asyncio.ensure_future(sub.next_batch(timeout=timeout))
        try:
            await asyncio.wait((news, kick), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.discard(kick)
            if not waiting:
                self._waiting.pop(name, None)
            if not news.done():
                news.cancel()
                # Let it finish before ``sub`` is waited on again (it clears
                # the subscription's waiter on its way out); a cancel of this
                # task meanwhile still ends this task.
                await asyncio.wait((news,))
        if news.done() and not news.cancelled():
            news.result()  # SlowConsumer, if that is what ended the wait

    async def _announce(self, name: str, patterns: tuple[str, ...], life_ms: int) -> None:
        """Keep the group's workers record alive for ``life_ms`` from now."""
        now = self._now()
        known = self._announced.get(name)
        if known is not None and known[1] - now > life_ms // 2:
            return
        expires = now + life_ms
        await self.engine.put(WORKERS + name, _encode(list(patterns)), now, expires=expires)
        self._announced[name] = (patterns, expires)

    async def has_workers(self, topic: str) -> bool:
        """Whether a worker of some group whose patterns match ``topic`` pulled
        (or extended a lease) lately, on any node of the cluster."""
        now = self._now()
        for record in await self.engine.scan(WORKERS, now):
            try:
                patterns = _decode(record.value)
            except msgspec.DecodeError:  # pragma: no cover - only this module writes them
                continue
            if any(matches(p, topic) for p in patterns):
                return True
        return False

    async def sweep(self) -> int:
        """Remove the workers records of groups nobody pulls from any more."""
        removed = 0
        while gone := await self.engine.expire(WORKERS, self._now()):
            removed += len(gone)
            if len(gone) < 1000:
                break
        return removed

    def _kick(self, name: str) -> None:
        for kick in self._waiting.get(name, ()):
            if not kick.done():
                kick.set_result(None)

    async def _claim(
        self, g: GroupInfo, max_messages: int, lease_ms: int
    ) -> tuple[list[Lease], int | None]:
        filt = TopicFilter(g.patterns)
        every = await self.engine.topics()
        own_dlq = dead_letter_topic(g.name)
        topics = [t.name for t in every if filt(t.name) and t.name != own_dlq]
        # New messages only up to the topic list's horizon: a topic created
        # after the list was taken has larger seqs (see Hub.read_position).
        horizon = max((t.last_seq for t in every), default=0)
        ns = self.config.for_topic(g.patterns[0])
        now = self._now()
        claim = await self.engine.claim(
            g.name, topics, horizon, max_messages, lease_ms, ns.max_deliver, now
        )
        self.metrics.group(g.name).leases(claim.leases, len(claim.dead), now)
        return claim.leases, claim.next_due

    async def settle(
        self,
        name: str,
        lease_ids: Sequence[str],
        action: Literal["ack", "nack", "extend"],
        *,
        delay: float = 0.0,
        lease: float = 30.0,
        error: str | None = None,
    ) -> dict[str, Outcome]:
        """Ack, nack or extend leases; returns each id's outcome.

        Nothing changes for ids that are ``expired`` (someone else holds the
        message now) or ``unknown``; they are reported, not raised, so that
        one stale id does not hide the outcome of the others.

        Raises:
            InvalidRequest: malformed ids, too many, or a bad ``delay``/``lease``.
            NotFound: no such group.
        """
        validate_group(name)
        if not isinstance(lease_ids, list | tuple) or not 1 <= len(lease_ids) <= MAX_IDS:
            raise InvalidRequest(f"ids must be a list of 1 to {MAX_IDS} lease ids", field="ids")
        for i, lease_id in enumerate(lease_ids):
            parse_lease_id(lease_id, field=f"ids[{i}]")
        lease_ids = list(dict.fromkeys(lease_ids))  # a repeated id is settled once
        delay_ms = _seconds(delay, "delay", 0, MAX_DELAY)
        lease_ms = _seconds(lease, "lease", 0.1, MAX_LEASE)
        if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
            raise InvalidRequest(f"error must be text of at most {MAX_ERROR} characters",
                                 field="error")
        now = self._now()
        outcomes = await self.engine.settle(
            name, lease_ids, action, now,
            delay_ms=delay_ms, lease_ms=lease_ms, error=error,
        )
        self.metrics.group(name).settle(lease_ids, outcomes, action, now + lease_ms)
        known = self._announced.get(name)
        if action == "extend" and known is not None and Outcome.OK in outcomes:
            await self._announce(name, known[0], lease_ms)  # a busy worker is still there
        if action == "nack" and Outcome.OK in outcomes:
            self._kick(name)  # the messages are due again (or will be after ``delay``)
        return dict(zip(lease_ids, outcomes, strict=True))

    async def ack(self, name: str, lease_ids: Sequence[str]) -> dict[str, Outcome]:
        """Settle leases as done."""
        return await self.settle(name, lease_ids, "ack")

    async def nack(
        self, name: str, lease_ids: Sequence[str], *, delay: float = 0.0, error: str | None = None
    ) -> dict[str, Outcome]:
        """Give leases back, to be delivered again after ``delay`` seconds."""
        return await self.settle(name, lease_ids, "nack", delay=delay, error=error)


__all__ = ["Groups", "Outcome"]
