"""The Redis engine's commands of one loop pass, sent together (auto-pipelining).

Theory of operation
-------------------
Every read of the Redis engine, and every record and group script, is one
command on the pool (:meth:`hubbub.engines.redis.RedisEngine._call`): a long
poll costs two to four of them (the topic's fields, then a read). redis-py
spends far more of the event loop's time on a command than Redis does: a
connection taken from the pool and given back, the command packed and
written, a wait with its timeout, the reply parsed. With 10,000 polls coming
in at once that cost held the loop for seconds, and the last polls waited
longer for a pooled connection than the pool allows (20 s).

A :class:`Batcher` collects the commands asked for in one pass of the event
loop and sends them as pipelines (``transaction=False``) of at most
:data:`MAX_BATCH` commands: one connection, one write and one read for them
all (and hiredis, which the ``redis`` extra installs, parses the replies).
10,000 long polls through one node's core (``tests/core/test_hub.py``) took
16.4-18.6 s before, 6.1-7.8 s batched, on a 2-core AMD EPYC machine.

Invariants
----------
"each its own answer": Each caller gets its own command's reply, or its own
    command's error (the pipeline runs with ``raise_on_error=False``), as if
    it had been sent alone. Trouble with the connection fails every command
    of that pipeline, each with the error as a single command would have had
    it (:func:`~hubbub.engines.redis_wire.unavailable`): like a single
    command cut off, each may or may not have run (invariant "no blind
    retries" of :mod:`hubbub.engines.redis`).
"alone when alone": A pass with one command sends it as it is, not in a
    pipeline: a quiet node's commands take no longer than before.
"not a transaction": The commands of a pipeline are not atomic together;
    each is atomic on its own, as a command or a script always is in Redis.
    Nothing relies on two commands running back to back: what must be atomic
    is one script.
"a flushed script runs alone": redis-py loads a pipeline's scripts before
    sending it, but they may be gone by the time one runs (``SCRIPT FLUSH``
    from elsewhere, or in the same pipeline). Redis then answers ``NOSCRIPT``
    without running it, and that command is sent again alone, where
    redis-py loads the script and runs it: not a blind retry, as it never ran.
"runs to its end": A command runs to its end even when its caller is
    cancelled (the caller awaits it through :func:`asyncio.shield`), so its
    connection goes back to the pool whole.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .redis_wire import unavailable

#: Commands in one pipeline at most: a pass with more sends several.
MAX_BATCH: Final = 256

#: What the engine asks for: a command (or script) made on the client given,
#: the pool's client or a pipeline.
Command = Callable[[Any], Any]


class Batcher:
    """Sends the commands of a loop pass on ``client`` together (see the module docstring)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queued: list[tuple[Command, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, fn: Command) -> asyncio.Future[Any]:
        """``fn``'s command, sent at the end of this loop pass; its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(_retrieve)  # its caller may have been cancelled
        if not self._queued:
            loop.call_soon(self._send)
        self._queued.append((fn, future))
        return future

    def _send(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), MAX_BATCH):
            batch = queued[start:start + MAX_BATCH]
            task = asyncio.ensure_future(
                _alone(self._client, *batch[0]) if len(batch) == 1
                else _pipelined(self._client, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _alone(client: aioredis.Redis, fn: Command, future: asyncio.Future[Any]) -> None:
    """One command as it is (invariant "alone when alone")."""
    try:
        reply = await fn(client)
    except BaseException as e:
        _fail(future, e)
        if not isinstance(e, Exception):
            raise
    else:
        _settle(future, reply)


async def _pipelined(client: aioredis.Redis,
                     batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
    """Several commands in one pipeline (invariant "each its own answer")."""
    sent: list[tuple[Command, asyncio.Future[Any]]] = []
    try:
        async with client.pipeline(transaction=False) as pipe:
            for fn, future in batch:
                try:
                    queued = fn(pipe)
                    if inspect.isawaitable(queued):  # a script queues itself when awaited
                        await queued
                except Exception as e:  # refused before it was sent: that caller's error
                    _fail(future, e)
                else:
                    sent.append((fn, future))
            if not sent:
                return
            replies = await pipe.execute(raise_on_error=False)
        # One reply per command queued; a command made elsewhere than on the
        # pipeline it was given would break that (a bug: every caller hears it).
        unknown = []
        for (fn, future), reply in zip(sent, replies, strict=True):
            if isinstance(reply, NoScriptError):
                unknown.append((fn, future))  # it did not run (invariant "a flushed script runs alone")
            elif isinstance(reply, Exception):
                _fail(future, reply)
            else:
                _settle(future, reply)
        for fn, future in unknown:
            await _alone(client, fn, future)
    except BaseException as e:  # every command of the pipeline shares it
        for _, future in batch:
            _fail(future, e)
        if not isinstance(e, Exception):
            raise


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if not future.done():
        future.set_result(reply)


def _fail(future: asyncio.Future[Any], e: BaseException) -> None:
    if future.done():
        return
    if isinstance(e, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(unavailable(e))  # store trouble: Unavailable; else as it is


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a command's failure as seen: its caller may have left."""
    if not future.cancelled():
        future.exception()


__all__ = ["MAX_BATCH", "Batcher", "Command"]
