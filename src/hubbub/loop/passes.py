"""Work gathered over one pass of the event loop and done once, at its end.

A publish commits, the fan-out hands the message to a thousand subscribers,
each connection then writes: done item by item, every step would cost a
callback per item. :class:`PerPass` gathers the items of a loop pass and
hands them over together to one ``call_soon`` callback, which runs once the
work that is ready now is done, before the loop waits for anything. Used by
the fan-out (the messages of a pass), the WebSocket door (the connections
with news) and the whole-response writer (the server's follow-up of each
response).

Invariants
----------
"each item once, in order": Items are handed over in the order they were
    added, each once.
"late items wait a pass": An item added while the callback runs goes to the
    next pass.

Trade-offs
----------
"stages chain in one pass": A PerPass first given items while another one's
    callback runs on the same loop is handed them right after that callback,
    in the same pass (unless it already ran in this pass: invariant "late
    items wait a pass"). So a chain of stages (the fan-out hands messages to
    subscriptions, which hand writes to their connections) runs in one pass:
    each stage would otherwise cost a loop pass of its own, and under load a
    pass holds the flush of a thousand sockets. The running callback's chain
    is found in the context asyncio runs that callback in (a
    :class:`~contextvars.ContextVar` set only while it runs), so the
    PerPasses of a process need no registry and no object to share; the
    price is a context variable read when a PerPass gets its first item of a
    pass.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerPass(Generic[T]):
    """Items added during a pass of an event loop, handed to ``run`` together
    (see the module docstring); one list per loop, so several loops may use it."""

    __slots__ = ("_run", "_pending")

    def __init__(self, run: Callable[[list[T]], None]) -> None:
        self._run = run
        self._pending: dict[asyncio.AbstractEventLoop, list[T]] = {}

    def _items(self, loop: asyncio.AbstractEventLoop | None) -> list[T]:
        if loop is None:
            loop = asyncio.get_running_loop()
        items = self._pending.get(loop)
        if items is None:
            items = self._pending[loop] = []
            chain = _running.get()
            if (chain is not None and chain.loop is loop and chain.running
                    and self not in chain.fired):
                chain.waiting.append(self)  # trade-off "stages chain in one pass"
            else:
                loop.call_soon(self._fire, loop)
        return items

    def add(self, item: T, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hand ``item`` over at the end of this pass of ``loop`` (the running one).

        Name the loop when it is known: on Python 3.11, asking asyncio for the
        running loop costs a ``getpid()`` system call."""
        items = None if loop is None else self._pending.get(loop)
        if items is None:
            items = self._items(loop)
        items.append(item)

    def extend(self, items: Iterable[T], loop: asyncio.AbstractEventLoop | None = None) -> None:
        """:meth:`add` each of ``items``."""
        self._items(loop).extend(items)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._pending.pop(loop, None)
        if not items:
            return
        chain = _Chain(self, loop)
        token = _running.set(chain)
        try:
            self._run(items)
            while chain.waiting:  # trade-off "stages chain in one pass"
                stage = chain.waiting.pop(0)
                chain.fired.add(stage)
                more = stage._pending.pop(loop, None)
                if more:
                    stage._run(more)
        finally:
            chain.running = False
            _running.reset(token)
            for stage in chain.waiting:  # left by an error: their own callbacks
                loop.call_soon(stage._fire, loop)


class _Chain:
    """The PerPasses of one callback (trade-off "stages chain in one pass"):
    those that ran, and those waiting."""

    __slots__ = ("fired", "waiting", "loop", "running")

    def __init__(self, first: PerPass[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fired: set[PerPass[Any]] = {first}
        self.waiting: list[PerPass[Any]] = []
        self.loop = loop
        #: False once its callback returned: a task made during the callback
        #: copies the context, and with it this chain, into its later passes.
        self.running = True


#: The chain of the PerPass callback that is running (trade-off "stages chain
#: in one pass"), as that callback's context sees it: set only while the
#: callback runs, so it is no registry that outlives a pass or is shared
#: between loops or hubs.
_running: contextvars.ContextVar[_Chain | None] = contextvars.ContextVar(
    "hubbub_per_pass_chain", default=None)


__all__ = ["PerPass"]
