"""A WebSocket connection's ops in flight: handed on at once, answered in order.

Theory of operation
-------------------
A publisher on one socket keeps many ``pub`` ops in flight. Carried out one at
a time, each waits for the previous one's commit, and the store commits them one
round trip at a time whatever its group commit could take. So the reader of
:class:`hubbub.transports.ws.connection.Connection` hands each ``pub``,
``req``, ``reply`` and ``ack`` (``nack``, ``extend``) to a :class:`Pipeline`
and reads the next frame at once; the ops then reach the store together and share its commits.

Invariants
----------
"ops handed off in order": Ops are handed to the store in the order they
    came. Each op runs up to its first wait as it is read, before the next
    frame is (:func:`hubbub.loop.tasks.start_now`), the rest in a task of
    its own. An engine fixes an append's position before its ``append()``
    first waits (:meth:`hubbub.engines.base.Engine.append`), so two ``pub`` ops of one
    connection get positions in the order they came. An op that has to wait
    for something before its append (a ``req`` subscribes to its inbox and
    records itself; a ``reply`` looks its request up) holds the *lane*: the
    ops after it wait for its hand-off (:meth:`Pipeline.hand_off`) before
    theirs.
"answers in op order": Answers go out in the order of the ops, an ``err``
    in the place of its op, whenever the ops finished. One task per
    connection, the answerer, waits for the oldest op and writes every
    answer that is ready by then in one write. (A ``req``'s place holds only
    a failed publish: its reply is answered when it comes.)
"ops in flight bounded": At most :data:`MAX_IN_FLIGHT` ops wait for their
    answer; past it the reader stops reading the socket
    (:meth:`Pipeline.room`) until answers have gone out: backpressure, not
    an error.
"barrier before other ops": Every other op (``sub``, ``unsub``, ``ping``,
    ``auth``) is carried out after every op before it was answered
    (:meth:`Pipeline.drain`), as if ops ran one at a time: a ``sub`` with
    ``after: "end"`` sent after a ``pub`` does not get that message.

Trade-offs
----------
"a task per op": A task costs a few microseconds; it buys ops that wait for
    different things (a commit, a lookup, a group's settle) without a
    scheduler of their own, and the answers of one commit leave in one write.
"start at once": An op runs up to its first wait as soon as it is read, not
    in the loop's next pass (:mod:`hubbub.loop.tasks`, trade-off "start at
    once"): under load a pass also writes every subscriber's socket, so a
    pass's delay is a pass of latency for every message; on the memory
    engine a ``pub`` is stored and handed to its subscribers in that first
    step, and needs no task at all.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ...loop.tasks import cancel_and_wait, start_now

#: Ops one connection may have waiting for their answer before its socket is
#: read again: enough for a publisher's window to fill a group commit.
MAX_IN_FLIGHT = 256

#: Sends a list of answers (reply objects), in order, in one write.
SendAnswers = Callable[[list[Any]], Awaitable[None]]


class Pipeline:
    """The ops of one connection that wait for their answer, oldest first.

    Args:
        send: writes a list of answers in one go; it drops them when the
            connection is closing, and raises nothing (a connection that
            cannot write closes itself).
        limit: how many ops may wait before :meth:`room` waits.
    """

    __slots__ = ("_send", "_limit", "_waiting", "_answerer", "_room", "lane", "_ops")

    def __init__(self, send: SendAnswers, limit: int = MAX_IN_FLIGHT) -> None:
        self._send = send
        self._limit = limit
        #: The answer of each op in flight, oldest first: a reply object or None.
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._answerer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        #: Set when the last op that holds the lane has handed its write to the
        #: store; ``None`` (or done) when the lane is free (invariant "ops handed off in order").
        self.lane: asyncio.Future[None] | None = None
        #: The op tasks this pipeline started, cancelled when it closes.
        self._ops: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` up to its first wait now, the rest in a task of its own
        (trade-off "start at once"); its result (an answer, or
        ``None`` for none) is sent in its place (invariant "answers in op order"). ``work`` must
        turn its errors into answers itself."""
        task = start_now(work, name)  # trade-off "start at once"
        if not task.done():
            self._ops.add(task)
            task.add_done_callback(self._ops.discard)
        self.wait_for(task)

    def wait_for(self, answer: asyncio.Future[Any]) -> None:
        """Send what ``answer`` resolves to in its place (``None``: nothing)."""
        self._waiting.append(answer)
        if self._answerer is None:
            self._answerer = asyncio.create_task(self._answer(), name="hubbub-ws-answers")

    def answer(self, obj: Any) -> None:
        """Send ``obj`` in the place of an op that is answered already."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(obj)
        self.wait_for(done)

    def hold_lane(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """Take the lane for an op that waits before its hand-off: the future
        to wait for first (the previous holder's, if any), and the one to
        resolve with :meth:`hand_off` (invariant "ops handed off in order")."""
        before = self.lane
        self.lane = mine = asyncio.get_running_loop().create_future()
        return before, mine

    @staticmethod
    def hand_off(lane: asyncio.Future[None]) -> None:
        """The op holding ``lane`` is about to hand its write to the store (or
        gave up): the ops after it may go on. Idempotent."""
        if not lane.done():
            lane.set_result(None)

    async def room(self) -> None:
        """Return once fewer than ``limit`` ops wait for their answer
        (invariant "ops in flight bounded")."""
        while len(self._waiting) >= self._limit:
            self._room.clear()
            await self._room.wait()

    async def drain(self) -> None:
        """Return once every op so far was answered (invariant "barrier before other ops")."""
        while self._answerer is not None:
            await asyncio.shield(self._answerer)

    async def close(self) -> None:
        """Stop answering and cancel the ops in flight (the connection is gone).

        A cancelled ``pub`` may still be stored: it was handed to the store,
        which commits it; only its answer is lost, as with any connection
        that ends before its answers arrive.
        """
        for task in list(self._ops):
            task.cancel()
        await asyncio.gather(*self._ops, return_exceptions=True)
        for answer in self._waiting:
            answer.cancel()
        self._waiting.clear()
        if self.lane is not None:
            self.hand_off(self.lane)
        await cancel_and_wait(self._answerer)

    async def _answer(self) -> None:
        """The answerer: wait for the oldest op, then send what is ready, in order."""
        waiting = self._waiting
        try:
            while waiting:
                head = waiting[0]
                if not head.done():
                    await asyncio.wait((head,))
                answers = []
                while waiting and waiting[0].done():
                    answer = waiting.popleft()
                    obj = None if answer.cancelled() else answer.result()
                    if obj is not None:
                        answers.append(obj)
                if len(waiting) < self._limit:
                    self._room.set()
                if answers:
                    await self._send(answers)
        finally:
            self._answerer = None
