"""Tasks: starting one without a loop pass's delay, and stopping one.

Trade-offs
----------
"start at once": :func:`start_now` runs a coroutine up to its first wait
    before it returns, in the caller's step, and only then hands the rest to
    a task (what Python 3.12 calls an eager task; this module does it with
    the coroutine protocol of PEP 492 alone, the same on every version).
    ``asyncio.create_task`` would run the first step in the loop's next
    pass; when a pass also writes a thousand sockets, that costs a publish
    the whole of such a pass in latency, and on the memory engine a publish
    then needs no task at all. The price: the first step runs in the
    caller's context (a task's copy of it holds only the rest), and an error
    in that first step is in the future returned, not raised.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start_now(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Future[T]:
    """Run ``coro`` up to its first wait now; the rest in a task named ``name``
    (trade-off "start at once").

    Returns that task, or a future that is already done when ``coro`` ended
    without waiting (its result, or its exception). Cancelling the task
    cancels the wait ``coro`` is in, as it would for any task.
    """
    loop = asyncio.get_running_loop()
    try:
        waiting_on = coro.send(None)
    except StopIteration as stop:
        done: asyncio.Future[T] = loop.create_future()
        done.set_result(stop.value)
        return done
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - it belongs in the future, as in a task
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed
    return loop.create_task(_Rest(coro, waiting_on), name=name)


class _Rest(collections.abc.Coroutine[Any, Any, Any]):
    """The rest of ``coro``, which is suspended on ``waiting_on`` (what it
    yielded), for a task to run: the task's first step waits on
    ``waiting_on``, as it would have for ``coro``; every later step, and
    anything thrown in (a cancellation, even before the first step), goes to
    ``coro`` itself."""

    __slots__ = ("_coro", "_waiting_on", "_started")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            waiting_on, self._waiting_on = self._waiting_on, None
            return waiting_on
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if not self._started and isinstance(self._waiting_on, asyncio.Future):
            # What a task cancelled while waiting does to the future it waits on.
            self._waiting_on.cancel()
        self._started = True
        self._waiting_on = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - asyncio throws instances

    def close(self) -> None:
        self._coro.close()

    def __next__(self) -> Any:
        return self.send(None)

    def __await__(self) -> Generator[Any, Any, Any]:
        return self  # type: ignore[return-value]  # an iterator with send() and throw()


async def cancel_and_wait(task: asyncio.Task[Any] | asyncio.Future[Any] | None,
                          *, again_every: float | None = None) -> None:
    """Cancel ``task`` (if any) and wait until it has unwound; its cancellation
    is not passed on, an exception it ends with is.

    With ``again_every``, cancel it again every that many seconds until it
    ends: for a task that waits inside a library which may lose a
    cancellation (redis-py 8.0-8.2 does, :mod:`hubbub.engines.redis`), so
    that one lost cancel cannot keep it, and whoever stops it, waiting for
    ever. Only for tasks whose own cleanup is short: a cleanup that takes
    longer is cut short too.
    """
    if task is None:
        return
    task.cancel()
    if again_every is not None:
        while not task.done():
            await asyncio.wait((task,), timeout=again_every)
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["cancel_and_wait", "start_now"]
