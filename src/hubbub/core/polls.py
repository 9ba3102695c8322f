"""Long polls waiting together: one read and one page for every poll at a position.

Theory of operation
-------------------
A long poll that finds nothing to read waits for the first message after its
position. Thousands may wait on one topic at the same position (clients of a
notification topic, polling from its end), and one publish answers them all.
Rather than a subscription per poll, each woken and read on its own, polls
waiting for the same topics from the same position with the same limit share
a *group*: one subscription, parked (:meth:`Subscription.park`: no task, no
future), whose first news *fires* the group: one read, one :class:`Page`,
handed to every member, which the door encodes once and writes to each.

Invariants
----------
"join only when nothing found": A poll joins a group only with a live subscription that found nothing
    (:meth:`Hub.poll_now`), at the group's position. The group's
    subscription registered before its own first read and has had nothing
    since, so it sees every message the poll may return; the poll's own
    subscription is then closed.
"a group fires once": A group fires once, at the end of the loop pass in which its news came
    (so a batch stored at once is one page): it leaves the registry,
    closes its subscription and answers its members. Later polls at the
    same position make a new group.
"what a group cannot say, read again": What a group cannot say as a plain page (a gap, a cut-off
    subscriber) it does not say: each member is answered ``None``, "read
    again on your own", which reads the store from the same position and
    gets the right answer. A closed subscription (the hub drains) answers
    an empty page, as a lone poll would. A failed one (the engine lost its
    live feed: :meth:`Subscription.fail`) answers each member with (a copy
    of) its error, cursor included, since the store would not say it.
"leavers are forgotten": A member that leaves (its wait ends, its client goes) is forgotten;
    the last one to leave closes the group's subscription.

Trade-offs
----------
"a crowd answers at once": Members that name a *crowd* (a function that answers many polls at
    once) are answered by one call of it with the page and all their
    answers, in the order they joined; a door can then make every write
    before any bookkeeping (:func:`hubbub.server.whole.respond_all`). The
    others are answered one by one. ``None`` (invariant "what a group cannot say, read again") is always given
    one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..protocol.errors import HubbubError
from ..protocol.message import Message
from .subscription import State, Subscription
from .values import Page

#: ``answer(page)``: a member's answer; ``None`` means "read again" (invariant "what a group cannot say, read again").
Answer = Callable[["Page | HubbubError | None"], None]
#: ``crowd(page, answers)``: the answers of many members at once (trade-off "a crowd answers at once").
Crowd = Callable[["Page", list[Answer]], None]


class PollWait:
    """A long poll waiting in a group; :meth:`leave` when it no longer waits."""

    __slots__ = ("_group", "answer", "crowd")

    def __init__(self, group: _Group, answer: Answer, crowd: Crowd | None) -> None:
        self._group = group
        self.answer = answer
        self.crowd = crowd

    def leave(self) -> None:
        """Stop waiting (invariant "leavers are forgotten"); the answer will not come. Idempotent."""
        self._group.leave(self)


class _Group:
    __slots__ = ("_polls", "key", "sub", "limit", "members", "fired")

    def __init__(self, polls: Polls, key: tuple[object, ...], sub: Subscription,
                 limit: int) -> None:
        self._polls = polls
        self.key = key
        self.sub = sub
        self.limit = limit
        self.members: dict[PollWait, None] = {}
        self.fired = False

    def ready(self) -> None:
        """The parked subscription has news: fire after this loop pass (invariant "a group fires once")."""
        asyncio.get_running_loop().call_soon(self.fire)

    def fire(self) -> None:
        if self.fired:
            return
        sub = self.sub
        events = sub.take_ready(self.limit)
        if events == []:
            if sub.park(self.ready):
                return  # woken with nothing to say: wait on
            events = None
        error = sub.error
        self._close()
        members, self.members = self.members, {}
        if error is not None:  # invariant "what a group cannot say, read again": a failed subscription's error, to each
            for member in members:
                member.answer(type(error)(error.message, field=error.field, **error.extra))
            return
        page: Page | None
        if events is None:
            page = Page([], sub.cursor) if sub.state is State.CLOSED else None
        elif all(type(e) is Message for e in events):
            page = Page(events, sub.cursor)  # type: ignore[arg-type]
        else:
            page = None  # a gap: each member reads again (invariant "what a group cannot say, read again")
        if page is None:
            for member in members:
                member.answer(None)
            return
        crowds: dict[Crowd, list[Answer]] = {}
        for member in members:
            crowd = member.crowd
            if crowd is None:
                member.answer(page)
                continue
            answers = crowds.get(crowd)
            if answers is None:
                answers = crowds[crowd] = []
            answers.append(member.answer)
        for crowd, answers in crowds.items():
            crowd(page, answers)

    def leave(self, member: PollWait) -> None:
        self.members.pop(member, None)
        if not self.members and not self.fired:
            self._close()

    def _close(self) -> None:
        self.fired = True
        if self._polls.groups.get(self.key) is self:
            del self._polls.groups[self.key]
        self.sub.close()


class Polls:
    """The groups of waiting long polls of one hub (see the module docstring)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[object, ...], _Group] = {}

    def wait(self, sub: Subscription, limit: int, answer: Answer,
             crowd: Crowd | None = None) -> PollWait:
        """Wait for what ``sub`` (live, nothing read yet) will see, in a group.

        ``answer`` is called once, from the event loop, with the page (or
        ``None``: read again, invariant "what a group cannot say, read again"), unless the poll leaves first; with a
        ``crowd``, a page comes through it instead (trade-off "a crowd answers at once"). ``sub`` now
        belongs to the group (or is closed): do not use it any more.
        """
        key = (sub.topics.patterns, sub.cursor, limit)
        group = self.groups.get(key)
        if group is None or group.fired:
            group = self.groups[key] = _Group(self, key, sub, limit)
            if not sub.park(group.ready):
                group.ready()  # news came already: fire at once
        else:
            sub.close()  # invariant "join only when nothing found": the group's subscription covers this poll
        member = PollWait(group, answer, crowd)
        group.members[member] = None
        return member

    def __len__(self) -> int:
        """How many polls wait in groups."""
        return sum(len(g.members) for g in self.groups.values())


__all__ = ["Answer", "Crowd", "PollWait", "Polls"]
