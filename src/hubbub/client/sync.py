"""The blocking client: :class:`Client`, a thin bridge to :class:`~hubbub.client.AsyncClient`.

::

    from hubbub.client import Client

    with Client("http://127.0.0.1:8080") as hub:
        hub.publish("chat.room1", {"text": "hi"})
        with hub.subscribe("chat.>", after="start") as sub:
            for msg in sub:
                print(msg["topic"], msg["data"])

There is one implementation of the client, the asyncio one. A :class:`Client`
owns a private event loop running in a daemon thread of its own (started on
first use, stopped by :meth:`Client.close`), and every method hands the
matching :class:`~hubbub.client.AsyncClient` coroutine to that loop and blocks
until it is done. So it needs no event loop in the caller, works from a plain
script and from any thread (several threads may share one ``Client``), and
behaves exactly like the async client: same retries, same fallback, same
errors. The methods' docstrings are the async ones; read them without the
``await``.

Invariants
----------
"caller thread only waits": Everything that touches sockets runs on the
client's loop, so objects are never shared across loops.
"interrupt cancels the operation": An interrupt (``KeyboardInterrupt``)
while waiting cancels the operation on the loop, then propagates.
"no call from its own loop": Calling the client from its own loop thread
(from an async handler of its own) would wait for itself forever: it raises
:class:`~hubbub.protocol.errors.UsageError` instead. Plain (sync) handlers of
:meth:`Client.respond` run in worker threads and may use the client;
``upload(on_progress=)`` callbacks run on the client's thread and must be
quick.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx

from ..protocol import errors
from .admin import Admin
from .aio import AsyncClient
from .backoff import BackoffPolicy
from .base import Transport
from .groups import Delivery, Group
from .jobs import Jobs
from .subscription import Subscription
from .worker import TakenJob

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A")
W = TypeVar("W")


class Portal:
    """A private event loop in a daemon thread; :meth:`call` runs a coroutine there."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise errors.UsageError("the client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=self._serve, args=(loop,),
                                          name="hubbub-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop and wait for its result (invariants "caller thread only waits", "interrupt cancels the
        operation" and "no call from its own loop")."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            raise errors.UsageError(
                "a sync Client was called from its own event loop; use the AsyncClient there")

        async def run() -> T:
            return await fn(*args, **kwargs)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and its thread (after the caller closed what runs on it)."""
        with self._lock:
            loop, thread, self._closed = self._loop, self._thread, True
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(10)


class _Bridge(Generic[A]):
    """A blocking face of one async object, run through a :class:`Portal`."""

    def __init__(self, portal: Portal, target: A) -> None:
        self._portal = portal
        self._async = target


def bridge(
    method: Callable[Concatenate[A, P], Awaitable[T]],
) -> Callable[Concatenate[_Bridge[A], P], T]:
    """The blocking version of an async method (same signature and docstring)."""

    @functools.wraps(method)
    def call(self: _Bridge[A], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(method, self._async, *args, **kwargs)

    return call


class forwarded(Generic[T]):
    """A read-only attribute of the async object, read as it is there:
    ``topic = forwarded[str]()`` in a :class:`_Bridge`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> forwarded[T]: ...
    @overload
    def __get__(self, obj: _Bridge[Any], owner: type | None = None) -> T: ...

    def __get__(self, obj: _Bridge[Any] | None, owner: type | None = None) -> T | forwarded[T]:
        if obj is None:
            return self
        value: T = getattr(obj._async, self.name)
        return value


def returning(
    method: Callable[Concatenate[A, P], T], wrap: Callable[[Portal, T], W],
) -> Callable[Concatenate[_Bridge[A], P], W]:
    """A plain method whose result gets a blocking face ``wrap``."""

    @functools.wraps(method)
    def call(self: _Bridge[A], /, *args: P.args, **kwargs: P.kwargs) -> W:
        return wrap(self._portal, method(self._async, *args, **kwargs))

    return call


class SyncIterator(Generic[T, W]):
    """A blocking iterator over an async iterator; each item gets the face ``wrap``."""

    def __init__(self, portal: Portal, source: AsyncIterator[T],
                 wrap: Callable[[Portal, T], W]) -> None:
        self._portal, self._source, self._wrap = portal, source, wrap

    def __iter__(self) -> SyncIterator[T, W]:
        return self

    def __next__(self) -> W:
        try:
            item = self._portal.call(self._source.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
        return self._wrap(self._portal, item)

    def close(self) -> None:
        """End the iteration (an async generator source is closed on the loop)."""
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            self._portal.call(aclose)

    def __enter__(self) -> SyncIterator[T, W]:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _same(portal: Portal, item: T) -> T:
    return item


class SyncSubscription(SyncIterator[dict[str, Any], dict[str, Any]]):
    """The blocking :class:`~hubbub.client.aio.Subscription`: iterate it, close it.

    A :class:`~hubbub.protocol.errors.GapError` raised by ``next()`` leaves it usable:
    iterate again to continue after the gap.
    """

    def __init__(self, portal: Portal, sub: Subscription) -> None:
        super().__init__(portal, sub, _same)
        self.subscription = sub

    @property
    def cursor(self) -> str:
        """Where to resume after the last item handed out."""
        return self.subscription.cursor

    @property
    def transport(self) -> Transport:
        """The door in use."""
        return self.subscription.transport

    @property
    def reconnects(self) -> int:
        """How many times the stream was reopened."""
        return self.subscription.reconnects

    def __enter__(self) -> SyncSubscription:
        return self


class SyncDelivery(_Bridge[Delivery]):
    """The blocking :class:`~hubbub.client.groups.Delivery`: ``ack()``, ``nack()``, ``extend()``."""

    ack = bridge(Delivery.ack)
    nack = bridge(Delivery.nack)
    extend = bridge(Delivery.extend)

    message = forwarded[dict[str, Any]]()
    data = forwarded[Any]()
    topic = forwarded[str]()
    attempt = forwarded[int]()
    lease = forwarded[str]()

    def to_dict(self) -> dict[str, Any]:
        return self._async.to_dict()

    def __repr__(self) -> str:
        return repr(self._async)


def _deliveries(portal: Portal, items: list[Delivery]) -> list[SyncDelivery]:
    return [SyncDelivery(portal, d) for d in items]


def _consumer(portal: Portal, source: AsyncIterator[Delivery]) -> SyncIterator[Delivery,
                                                                                SyncDelivery]:
    return SyncIterator(portal, source, SyncDelivery)


class SyncGroup(_Bridge[Group]):
    """The blocking :class:`~hubbub.client.groups.Group` of :meth:`Client.group`."""

    info = bridge(Group.info)
    ack = bridge(Group.ack)
    nack = bridge(Group.nack)
    extend = bridge(Group.extend)
    consume = returning(Group.consume, _consumer)

    def pull(self, max: int = 1, *, wait: float = 0.0) -> list[SyncDelivery]:
        """As :meth:`hubbub.client.groups.Group.pull`, blocking."""
        return _deliveries(self._portal, self._portal.call(self._async.pull, max, wait=wait))

    name = forwarded[str]()


class SyncTakenJob(_Bridge[TakenJob]):
    """The blocking :class:`~hubbub.client.jobs.TakenJob`: ``progress()``, ``complete()``,
    ``fail()``."""

    progress = bridge(TakenJob.progress)
    complete = bridge(TakenJob.complete)
    fail = bridge(TakenJob.fail)

    job = forwarded[dict[str, Any]]()
    data = forwarded[Any]()
    id = forwarded[str]()
    attempt = forwarded[int]()
    lease = forwarded[str]()

    def __repr__(self) -> str:
        return repr(self._async)


def _states(portal: Portal, source: AsyncIterator[dict[str, Any]]) -> SyncIterator[
        dict[str, Any], dict[str, Any]]:
    return SyncIterator(portal, source, _same)


class SyncJobs(_Bridge[Jobs]):
    """The blocking :class:`~hubbub.client.jobs.Jobs` of :attr:`Client.jobs`.

    ::

        job = hub.jobs.submit("transcode", {"file": "a.mp4"})
        for state in hub.jobs.follow(job["id"]):
            print(state["state"], state["progress"])
    """

    submit = bridge(Jobs.submit)
    get = bridge(Jobs.get)
    wait = bridge(Jobs.wait)
    work = bridge(Jobs.work)
    for_upload = bridge(Jobs.for_upload)
    follow = returning(Jobs.follow, _states)

    def take(self, queue: str, *, wait: float = 0.0,
             lease: float | None = None) -> SyncTakenJob | None:
        """As :meth:`hubbub.client.jobs.Jobs.take`, blocking."""
        taken = self._portal.call(self._async.take, queue, wait=wait, lease=lease)
        return None if taken is None else SyncTakenJob(self._portal, taken)


class SyncAdmin(_Bridge[Admin]):
    """The blocking :class:`~hubbub.client.admin.Admin` of :attr:`Client.admin`."""

    connections = bridge(Admin.connections)
    disconnect = bridge(Admin.disconnect)
    purge_topic = bridge(Admin.purge_topic)
    delete_topic = bridge(Admin.delete_topic)
    cancel_job = bridge(Admin.cancel_job)
    presence = bridge(Admin.presence)
    drop_presence = bridge(Admin.drop_presence)


class Client(_Bridge[AsyncClient]):
    """A blocking connection to one hub; the arguments are :class:`AsyncClient`'s.

    ::

        with Client("http://127.0.0.1:8080") as hub:
            receipt = hub.publish("chat.room1", {"text": "hi"})
            reply = hub.request("svc.echo", {"n": 1}, timeout=5)
            for msg in hub.subscribe("chat.room1", after="start"):
                ...
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        backoff: BackoffPolicy | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        portal = Portal()
        target = AsyncClient(base_url, timeout=timeout, retry_for=retry_for, backoff=backoff,
                             http_transport=http_transport, token=token)
        super().__init__(portal, target)
        # A Client dropped without close() must not leave its thread behind.
        self._finalizer = weakref.finalize(self, portal.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the subscriptions and connections, then stop the client's thread. Idempotent."""
        if not self._finalizer.alive:
            return
        try:
            self._portal.call(self._async.aclose)
        finally:
            self._finalizer()

    base_url = forwarded[str]()

    @property
    def transport(self) -> Transport | None:
        """The door that last worked for a subscription (``auto`` starts there)."""
        return self._async.transport

    @property
    def async_client(self) -> AsyncClient:
        """The :class:`AsyncClient` underneath (use it only on the client's own loop)."""
        return self._async

    publish = bridge(AsyncClient.publish)
    publish_batch = bridge(AsyncClient.publish_batch)
    request = bridge(AsyncClient.request)
    reply = bridge(AsyncClient.reply)
    reply_error = bridge(AsyncClient.reply_error)
    respond = bridge(AsyncClient.respond)
    presence = bridge(AsyncClient.presence)
    history = bridge(AsyncClient.history)
    upload = bridge(AsyncClient.upload)
    subscribe = returning(AsyncClient.subscribe, SyncSubscription)
    group = returning(AsyncClient.group, SyncGroup)

    @property
    def admin(self) -> SyncAdmin:
        """The admin API (:class:`SyncAdmin`; an admin token needed)."""
        return SyncAdmin(self._portal, self._async.admin)

    @property
    def jobs(self) -> SyncJobs:
        """Asynchronous jobs (:class:`SyncJobs`): ``submit()``, ``get()``, ``wait()``,
        ``follow()``, ``take()``, ``work()``."""
        return SyncJobs(self._portal, self._async.jobs)
