"""The fan-out link of a Redis node: what feeds its listeners.

It keeps the invariants "only the link feeds listeners",
"answered after fed", "a lost link is said" and "a reset store is new" of
:mod:`hubbub.engines.redis` (stated there).

One subscribed connection per node, read by one task. Every append script
publishes its new messages on ``P:fanout`` while it runs, so the link brings
every node every message, in seq order, each seq once, with no holes; a hole
or a dropped link means the link lost something, and the streams have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..loop.tasks import cancel_and_wait
from ..protocol.cursor import new_epoch
from ..protocol.errors import HubbubError, Unavailable
from ..protocol.message import Message
from .base import ErrorListener, Listener
from .redis_wire import decode_frame

log = logging.getLogger("hubbub.redis")

#: Messages per read while catching up from the streams.
FILL_PAGE: Final = 1000
_BACKOFF: Final = (0.05, 2.0)
#: Seconds between two cancellations of the reader when it is stopped (redis-py
#: may lose one).
STOP_RETRY: Final = 0.25


class Feed:
    """The fan-out link, the listeners it feeds and the appends waiting on it.

    Args:
        prefix: the store's key prefix.
        node: this node's name, also its connection's ``CLIENT SETNAME``.
        read: ``read(after_seq, limit)``, every topic's messages after a seq.
        on_reset: called when the store turned out to be a new one.
    """

    def __init__(self, prefix: str, node: str, *, heartbeat: float,
                 read: Callable[[int, int], Awaitable[list[Message]]],
                 on_reset: Callable[[], None]) -> None:
        self.prefix, self.node, self.heartbeat = prefix, node, heartbeat
        self.store_epoch = ""
        self.fed = 0  #: the newest seq handed to the listeners
        self.up = False  #: whether the link is subscribed and caught up
        self.listeners: list[Listener] = []
        self.error_listeners: list[ErrorListener] = []
        self._read, self._on_reset = read, on_reset
        self._parked: deque[tuple[int, Callable[[], None]]] = deque()
        self._task: asyncio.Task[None] | None = None

    async def start(self, client: aioredis.Redis) -> None:
        """Subscribe, and follow the link from now on.

        Raises:
            RedisError: the store cannot be reached.
        """
        self.store_epoch, self.fed = "", 0
        conn = await self._subscribe(client)
        self._task = asyncio.create_task(self._follow(client, conn), name="hubbub-redis-feed")

    async def stop(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the parked appends' messages, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._parked and self.up:
                    await asyncio.sleep(0.005)
        self._answer()
        # The reader waits inside redis-py, which may lose a cancellation
        # (:meth:`hubbub.engines.redis.RedisEngine._call`): cancel until it ends.
        await cancel_and_wait(self._task, again_every=STOP_RETRY)
        self._task = None
        self.up = False

    def park(self, seq: int, answer: Callable[[], None]) -> None:
        """Call ``answer`` once the listeners were fed up to ``seq``
        (:mod:`hubbub.engines.redis`, invariant "answered after fed").

        At once if they were (the fan-out can beat the script's reply), or if
        the link is down: the messages are stored, and nobody is there to feed
        until the link is back.
        """
        if not self.up or seq <= self.fed:
            answer()
        else:
            self._parked.append((seq, answer))

    def _answer(self, up_to: int | None = None) -> None:
        parked = self._parked
        while parked and (up_to is None or parked[0][0] <= up_to):
            parked.popleft()[1]()

    # -- the reader task ----------------------------------------------------

    async def _subscribe(self, client: aioredis.Redis) -> Connection:
        """A new subscribed connection; the listeners caught up with the store."""
        conn: Connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            for command in (("CLIENT", "SETNAME", self.node), ("SUBSCRIBE", self._key("fanout"))):
                await conn.send_command(*command)
                await conn.read_response(disconnect_on_error=True)
            # Anything published from here on reaches us; anything before is in the streams.
            await client.set(self._key("epoch"), new_epoch(), nx=True)
            raw: list[Any] = await client.mget(self._key("epoch"), self._key("seq"))
            epoch, seq = raw[0].decode(), int(raw[1] or 0)
            if epoch != self.store_epoch or seq < self.fed:
                # A new store, or the same one having lost acknowledged appends
                # (its persistence too weak, see docs/cluster.md): start over.
                self._reset(epoch, seq)
            else:
                await self._fill(seq)
        except BaseException:
            await conn.disconnect()
            raise
        self.up = True
        return conn

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def _follow(self, client: aioredis.Redis, conn: Connection | None) -> None:
        """Feed the listeners from the link, forever; reconnect with backoff
        (:mod:`hubbub.engines.redis`, invariant "a lost link is said")."""
        delay = _BACKOFF[0]
        while True:
            try:
                if conn is None:
                    conn = await self._subscribe(client)
                    log.warning("the fan-out link to the store is back")
                    delay = _BACKOFF[0]
                await self._receive(conn)
            except (RedisError, OSError, Unavailable) as e:
                self._lose(e)
            except Exception:  # a bug: say so, and start afresh
                log.exception("fan-out reader failed")
                self._lose(None)
            if conn is not None:
                await conn.disconnect()
                conn = None
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF[1])

    async def _receive(self, conn: Connection) -> None:
        pinged = False
        while True:
            resp = await conn.read_response(timeout=self.heartbeat, disconnect_on_error=True)
            if resp is None:  # silence: is the link still there?
                if pinged:
                    raise RedisTimeoutError("the store did not answer a ping")
                await conn.send_command("PING")
                pinged = True
                continue
            pinged = False
            if resp[0] == b"message":
                await self._receive_frame(resp[2])

    async def _receive_frame(self, frame: bytes) -> None:
        msgs, epoch = decode_frame(frame)
        if epoch != self.store_epoch:  # flushed under a live link: a reset store is new
            self._reset(epoch, msgs[0].seq - 1 if msgs else 0)
        if not msgs or msgs[-1].seq <= self.fed:
            return
        if msgs[0].seq > self.fed + 1:  # a hole: fill it from the streams
            await self._fill(msgs[0].seq - 1)
        fed = self.fed
        self._deliver([m for m in msgs if m.seq > fed])

    async def _fill(self, target: int) -> None:
        """Feed every stored message with a seq in ``(fed, target]`` (and maybe later ones)."""
        while self.fed < target:
            msgs = await self._read(self.fed, FILL_PAGE)
            if not msgs:  # trimmed away meanwhile
                self.fed = target
                break
            self._deliver(msgs)
        self._answer(self.fed)

    def _deliver(self, msgs: list[Message]) -> None:
        if not msgs:
            return
        self.fed = msgs[-1].seq
        for listener in self.listeners:
            try:
                listener(msgs)
            except Exception as e:  # the messages are stored: report, don't fail
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "engine listener failed", "exception": e})
        self._answer(self.fed)

    def _lose(self, exc: BaseException | None) -> None:
        if not self.up:
            return  # already said
        self.up = False
        log.warning("lost the fan-out link to the store: %s", exc)
        self._tell(Unavailable("lost the link to the store; resume from the cursor"))
        self._answer()  # they are stored; the reader feeds them once it is back

    def _reset(self, epoch: str, seq: int) -> None:
        """The store is not the one we fed from: start over from ``seq``
        (:mod:`hubbub.engines.redis`, invariant "a reset store is new")."""
        if self.store_epoch:
            log.warning("the store was reset (epoch %s, now %s)", self.store_epoch, epoch)
            self._tell(Unavailable("the store was reset; resume from the cursor"))
        self.store_epoch, self.fed = epoch, seq
        self._on_reset()
        self._answer()

    def _tell(self, exc: HubbubError) -> None:
        for listener in self.error_listeners:
            try:
                listener(exc)
            except Exception as e:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "engine error listener failed", "exception": e})
