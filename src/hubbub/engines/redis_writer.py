"""The append writer of a Redis node: one task, one connection, one script per group.

:class:`Writer` keeps the invariants "one script per group",
"answered after fed" and "no blind retries" of :mod:`hubbub.engines.redis`: it takes
every queued ``append()`` call (up to :data:`MAX_GROUP` messages and
:data:`MAX_GROUP_BYTES` bytes) and runs them as ONE
:data:`~hubbub.engines.redis_scripts.APPEND` script on its own connection,
then parks the answers until the node's fan-out link fed the new messages
(:meth:`hubbub.engines.redis_feed.Feed.park`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, RedisError

from ..protocol.cursor import new_epoch
from ..protocol.errors import Unavailable
from ..protocol.message import Message
from .base import AppendRequest, AppendResult
from .redis_wire import ctype, unavailable

#: Most messages, and bytes of data, one append script takes when it groups
#: several calls (bounds script time and the fan-out frame).
MAX_GROUP: Final = 1000
MAX_GROUP_BYTES: Final = 4 << 20

_Answers = list[tuple["_Job", list[AppendResult]]]


@dataclass(slots=True)
class _Job:
    requests: Sequence[AppendRequest]
    now: int
    future: asyncio.Future[list[AppendResult]]

    def size(self) -> int:
        return sum(len(r.data) for r in self.requests)


class Writer:
    """The writer task of one node and its connection (see the module docstring).

    Args:
        prefix: the store's key prefix.
        key_ttl_ms: how long an idempotency key dedups.
        known: the topics that exist (no epoch candidate needed); shared with
            the engine, which clears it when the store was reset.
        park: call a function once the fan-out link fed a seq
            (:meth:`hubbub.engines.redis_feed.Feed.park`).
    """

    def __init__(self, prefix: str, key_ttl_ms: int, known: set[str],
                 park: Callable[[int, Callable[[], None]], None]) -> None:
        self.prefix = prefix
        self.groups = 0  #: append scripts run (for tests and metrics)
        self._key_ttl_ms, self._known, self._park = key_ttl_ms, known, park
        self._redis: aioredis.Redis | None = None
        self._script: Any = None  # the append script, as register_script made it
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._wconn: Connection | None = None  # the writer's own connection

    @property
    def running(self) -> bool:
        """Whether the task takes appends (between :meth:`start` and :meth:`stop`)."""
        return self._task is not None

    def start(self, client: aioredis.Redis, script: Any) -> None:
        """Start the task; it runs ``script`` (the append script) on a connection of
        ``client``'s pool that it keeps for itself."""
        self._redis, self._script = client, script
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._write(), name="hubbub-redis-writer")

    async def stop(self) -> None:
        """Refuse new appends, run the queued ones, then end the task."""
        task = self._task
        if task is None:
            return
        self._task = None  # refuse new appends; queued ones still run
        self._queue.put_nowait(None)
        await task
        if self._wconn is not None:
            await self._wconn.disconnect()
            self._wconn = None

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        if not requests:
            return []
        if self._task is None:
            raise Unavailable("store is closed")
        job = _Job(requests, now, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _write(self) -> None:
        """The writer task: every queued call, up to the group limits, in one script."""
        pending: _Job | None = None
        while (job := pending or await self._queue.get()) is not None:
            group, size, nbytes = [job], len(job.requests), job.size()
            pending, stop = None, False
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                if size + len(nxt.requests) > MAX_GROUP or nbytes + nxt.size() > MAX_GROUP_BYTES:
                    pending = nxt  # the next group's first call
                    break
                group.append(nxt)
                size, nbytes = size + len(nxt.requests), nbytes + nxt.size()
            await self._commit(group)
            if stop:
                return

    async def _commit(self, group: list[_Job]) -> None:
        try:
            answers, last_seq = await self._run_group(group)
        except Exception as e:
            for job in group:
                if not job.future.done():  # each caller gets its own exception object
                    job.future.set_exception(
                        Unavailable(e.message) if isinstance(e, Unavailable) else e)
            return
        self.groups += 1
        if last_seq == 0:  # only duplicates: nothing to feed
            _answer(answers)
        else:
            self._park(last_seq, lambda: _answer(answers))

    async def _run_group(self, group: list[_Job]) -> tuple[_Answers, int]:
        """Run the append script; the answers, and the last new seq (0: none)."""
        ids = os.urandom(8 * sum(len(job.requests) for job in group)).hex()
        for _ in range(3):
            reply = await self._run_append(self._append_args(group, ids))
            if reply[0] != b"!retry":
                return self._parse_append(group, reply, ids)
            self._known.clear()  # a topic we knew is gone (a reset store), or an epoch clash
        raise Unavailable("could not create a topic epoch")

    async def _run_append(self, args: list[Any]) -> Any:
        """EVALSHA the append script on the writer's own connection.

        There is one writer, so it needs no pool: it never queues behind the
        reads for a connection, and a raw command costs half a pooled one.
        """
        script = self._script
        assert script is not None
        try:
            if self._wconn is None:
                assert self._redis is not None
                self._wconn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            await self._wconn.connect()
            # As the pool does: a connection that Redis closed (it restarted) is
            # replaced before it is used, not found broken mid-command.
            try:
                stale = await self._wconn.can_read()
            except (RedisError, OSError):
                stale = True
            if stale:
                await self._wconn.disconnect()
                await self._wconn.connect()
            for _ in range(2):
                await self._wconn.send_command("EVALSHA", script.sha, 0, *args)
                try:
                    return await self._wconn.read_response(disconnect_on_error=True)
                except NoScriptError:  # Redis restarted: it ran nothing; load, run again
                    await self._wconn.send_command("SCRIPT", "LOAD", script.script)
                    await self._wconn.read_response(disconnect_on_error=True)
            raise Unavailable("the store keeps forgetting the append script")
        except RedisError as e:
            if self._wconn is not None:
                await self._wconn.disconnect()
                self._wconn = None
            raise unavailable(e) from e

    def _append_args(self, group: list[_Job], ids: str) -> list[Any]:
        """ARGV of :data:`~hubbub.engines.redis_scripts.APPEND`."""
        args: list[Any] = [self.prefix, self._key_ttl_ms, new_epoch(), 0]
        cands: dict[str, str] = {}  # an epoch for each topic that may be new
        n = 0
        for job in group:
            for req in job.requests:
                topic = req.topic
                if topic not in self._known and topic not in cands:
                    cands[topic] = new_epoch()
                args += [topic, "" if req.key is None else "=" + req.key,
                         or_none(req.max_messages), req.content_type, req.data,
                         ids[16 * n:16 * n + 16], job.now, cands.get(topic, "")]
                n += 1
        args[3] = n
        return args

    def _parse_append(self, group: list[_Job], reply: list[Any], ids: str
                      ) -> tuple[_Answers, int]:
        answers: _Answers = []
        i, n, last_seq = 1, 0, 0
        for job in group:
            results = []
            for req in job.requests:
                epoch = reply[i + 1].decode()
                if reply[i]:
                    msg = Message(req.topic, epoch, reply[i + 2], reply[i + 3], reply[i + 4],
                                  reply[i + 5].decode(), reply[i + 7], ctype(reply[i + 6]))
                    results.append(AppendResult(msg, duplicate=True))
                    i += 8
                else:
                    last_seq = reply[i + 3]
                    msg = Message(req.topic, epoch, reply[i + 2], last_seq, job.now,
                                  ids[16 * n:16 * n + 16], req.data, req.content_type)
                    results.append(AppendResult(msg))
                    i += 4
                self._known.add(req.topic)
                n += 1
            answers.append((job, results))
        return answers, last_seq


def _answer(answers: _Answers) -> None:
    for job, results in answers:
        if not job.future.done():  # else the caller was cancelled; stored all the same
            job.future.set_result(results)


def or_none(n: int | None) -> int:
    """An optional count as a script argument: ``-1`` for none."""
    return -1 if n is None else n
