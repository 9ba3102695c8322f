"""The worker's side of a job: the job leased to it (:class:`TakenJob`), the
progress callback its handler gets, the error a handler raises to fail the
job, and the handler ``hubbub worker --run`` names. :meth:`hubbub.client.jobs.Jobs.work`
runs them."""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import errors

#: Keys of a take's answer that belong to the lease and the data, not to the job.
TAKE_KEYS = ("lease", "deadline", "data", "content_type")
Handler = Callable[[Any, "Progress"], Any]


class JobPoster(Protocol):
    """What a :class:`TakenJob` uses of :class:`~hubbub.client.jobs.Jobs`."""

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


class JobError(Exception):
    """Raise it from a job handler to fail the job with this message.

    ``retry=False`` (the default) fails it for good; ``retry=True`` queues it
    again while attempts are left, after ``delay`` seconds.
    """

    def __init__(self, message: str, *, retry: bool = False, delay: float = 0.0) -> None:
        super().__init__(message)
        self.retry, self.delay = retry, delay


class Progress:
    """The callback a handler gets: ``progress(percent, message)``.

    Cheap and thread-safe (a plain handler runs in a thread): it only keeps
    the latest values; the worker sends them in the background.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.latest: tuple[float | None, str | None] | None = None
        #: What the hub was last told.
        self.sent: tuple[float | None, str | None] | None = None
        self.changed = asyncio.Event()
        self._loop = loop
        self._thread = threading.get_ident()

    def __call__(self, percent: float | None = None, message: str | None = None) -> None:
        self.latest = (None if percent is None else float(percent), message)
        if threading.get_ident() == self._thread:
            self.changed.set()
        else:
            self._loop.call_soon_threadsafe(self.changed.set)


class TakenJob:
    """A job leased to us: settle it once, with :meth:`complete` or :meth:`fail`.

    Attributes:
        job: the job as every door shows it (``state`` is ``running``).
        data: its data (bytes when it was not submitted as JSON).
        lease: the lease id; ``deadline``: when it runs out (ms, the hub's
            clock) unless :meth:`progress` extends it.
    """

    def __init__(self, jobs: JobPoster, answer: dict[str, Any]) -> None:
        self._jobs = jobs
        self.job = {k: v for k, v in answer.items() if k not in TAKE_KEYS}
        self.lease: str = answer["lease"]
        self.deadline: int = answer["deadline"]
        data = answer.get("data")
        self.data: Any = base64.b64decode(str(data)) if "content_type" in answer else data
        self.content_type: str | None = answer.get("content_type")
        #: The lease's length in seconds (the hub's deadline minus its take time).
        self.lease_seconds = max(0.1, (self.deadline - int(self.job["updated"])) / 1000)

    def __repr__(self) -> str:
        return f"<TakenJob {self.id} attempt={self.attempt}>"

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def attempt(self) -> int:
        return int(self.job["attempts"])

    def _path(self, action: str) -> str:
        return f"/v1/jobs/{self.id}/{action}"

    async def progress(self, percent: float | None = None,
                       message: str | None = None) -> dict[str, Any]:
        """Report progress and extend the lease (neither value: only a heartbeat).

        Raises:
            Conflict: the job is no longer ours (its lease ran out and it was
                taken again, or it is finished).
        """
        body: dict[str, Any] = {"lease": self.lease}
        if percent is not None:
            body["progress"] = percent
        if message is not None:
            body["message"] = message
        answer = await self._jobs._post(self._path("progress"), body)
        self.deadline = int(answer.pop("deadline", self.deadline))
        self.job = answer
        return answer

    async def complete(self, result: Any = None) -> dict[str, Any]:
        """The job succeeded with ``result`` (any JSON value); returns the job.

        Retried on network errors: repeating it with the same lease is safe.

        Raises:
            Conflict: the job is no longer ours; nothing changed.
        """
        self.job = await self._jobs._post(self._path("complete"),
                                          {"lease": self.lease, "result": result})
        return self.job

    async def fail(self, error: str, *, retry: bool = False, delay: float = 0.0) -> dict[str, Any]:
        """The job failed with ``error``; with ``retry`` it is queued again (after
        ``delay`` seconds) while attempts are left. Returns the job.

        Raises:
            Conflict: the job is no longer ours; nothing changed.
        """
        self.job = await self._jobs._post(self._path("fail"), {
            "lease": self.lease, "error": error[:1000] or "failed", "retry": retry,
            "delay": delay})
        return self.job


async def invoke(handler: Handler, data: Any, progress: Progress) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(data, progress)
    result = await asyncio.to_thread(handler, data, progress)
    if inspect.isawaitable(result):
        result = await result
    return result


def load_handler(spec: str) -> Handler:
    """The function ``module:function`` names (``hubbub worker --run``); the current
    directory is importable, as for ``python -m``.

    Raises:
        UsageError: ``spec`` is malformed, or names nothing callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise errors.UsageError(f"--run must be MODULE:FUNCTION, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.UsageError(f"cannot import {module_name}: {exc}") from None
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise errors.UsageError(f"{spec} is not a function")
    handler: Handler = target
    return handler
