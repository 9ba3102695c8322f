"""Jobs from the client side: submit, get, wait, follow, and the worker's side.

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        job = await hub.jobs.submit("transcode", {"file": "a.mp4"})
        async for state in hub.jobs.follow(job["id"]):
            print(state["state"], state["progress"], state["message"])

    # a worker: any number of them share the queue
    def transcode(data, progress):
        for i in range(10):
            ...                                  # the work
            progress(10 * (i + 1), "encoding")   # cheap: reports go in the background
        return {"frames": 1200}                  # the job's result

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        await hub.jobs.work("transcode", transcode)   # until cancelled

The hub's side is in ``docs/jobs.md``.

Invariants
----------
"one job per submission": :meth:`Jobs.submit` always sends an
``Idempotency-Key`` (a fresh one unless given) and is retried like a publish,
so a retried submission makes one job.
"each state once, in order": :meth:`Jobs.wait` long-polls ``GET
/v1/jobs/{id}?wait=&version=`` until the job is finished; :meth:`Jobs.follow`
follows the topic ``jobs.{id}`` from its start through the client's best door
(``subscribe``: WebSocket, SSE, long or short polling, with resumption), yields
each state once, in version order, and ends after the final one.
"the handler settles the job": :meth:`Jobs.work` takes a job (a long poll),
calls the handler with the job's data and a progress callback, then completes
the job with the handler's return value. Progress is sent in the background, at
most once per ``report_every`` seconds, and a heartbeat at least every third of
the lease, which keeps the lease while the handler runs. A handler that raises
fails the job with a retry (bounded by the queue's attempts); :class:`JobError`
with ``retry=False`` fails it for good. When a report answers ``409`` the job
was lost (its lease ran out and it was taken again): an async handler is
cancelled, a plain one's result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from ..protocol import errors
from .backoff import Backoff
from .base import NETWORK_ERRORS, ClientBase, Door, encode_payload, post_retrying
from .errors import error_from_response
from .worker import Handler, JobError, Progress, TakenJob, invoke

log = logging.getLogger("hubbub.client")

FINAL = ("succeeded", "failed", "cancelled")


class Jobs:
    """The jobs of a hub: ``client.jobs`` (:class:`~hubbub.client.AsyncClient`)."""

    def __init__(self, client: ClientBase) -> None:
        self._client = client

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await post_retrying(self._client,
            path, msgspec.json.encode(body), {"Content-Type": "application/json"})

    async def submit(self, queue: str, data: Any, *, key: str | None = None,
                     content_type: str | None = None) -> dict[str, Any]:
        """Submit a job; returns it (``state`` ``queued``) once it is stored.

        ::

            job = await hub.jobs.submit("transcode", {"file": "a.mp4"})

        Args:
            data: bytes are sent as they are (``content_type``, default
                ``application/octet-stream``); anything else as JSON.
            key: the idempotency key (default: a fresh one, kept across
                retries). The same key on the same queue names one job.
        Raises:
            InvalidTopic, InvalidRequest, PayloadTooLarge: refused; no job.
            Unavailable: the hub stayed unreachable for ``retry_for`` seconds.
        """
        body, ctype = encode_payload(data, content_type)
        headers = {"Content-Type": ctype, "Idempotency-Key": key or secrets.token_hex(16)}
        return await post_retrying(self._client, "/v1/jobs/" + quote(queue, safe=":@"),
                                                 body, headers)

    async def _get(self, job_id: str, **params: Any) -> dict[str, Any]:
        wait = float(params.get("wait", 0))
        http = self._client.http
        timeout = httpx.Timeout(10.0, read=wait + 10.0) if wait else http.timeout
        r = await http.get("/v1/jobs/" + quote(job_id, safe=""), params=params, timeout=timeout)
        if r.status_code != 200:
            raise await error_from_response(r)
        job: dict[str, Any] = msgspec.json.decode(r.content)
        return job

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job as it is now.

        Raises:
            NotFound: no such job (or it finished longer ago than the hub keeps jobs).
        """
        return await self._get(job_id)

    async def wait(self, job_id: str, *, timeout: float | None = None,
                   poll: float = 25.0) -> dict[str, Any]:
        """The finished job (``succeeded``, ``failed`` or ``cancelled``), waiting for it by long polls.

        Raises:
            GatewayTimeout: not finished within ``timeout`` seconds.
            NotFound: no such job.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        backoff = Backoff(self._client.backoff)
        job: dict[str, Any] | None = None
        while job is None or job["state"] not in FINAL:
            left = poll if deadline is None else min(poll, deadline - loop.time())
            if left <= 0:
                raise errors.GatewayTimeout(f"job {job_id} did not finish within {timeout:g} s",
                                            field="timeout", job=job)
            try:
                if job is None:
                    job = await self._get(job_id)
                else:
                    job = await self._get(job_id, wait=f"{left:.3f}", version=job["version"])
                backoff.reset()
            except errors.InvalidRequest as exc:
                if exc.field != "wait" or poll <= 1:
                    raise
                poll = poll / 2  # this hub's max_wait is lower
            except (errors.Unavailable, *NETWORK_ERRORS):
                await asyncio.sleep(backoff.next_delay())
        return job

    async def follow(self, job_id: str, *,
                     transport: Door = "auto") -> AsyncGenerator[dict[str, Any], None]:
        """Each state of the job, from the first, once and in order; ends after the final one.

        ::

            async for state in hub.jobs.follow(job_id):
                print(state["state"], state["progress"])

        Raises:
            NotFound: no such job.
        """
        last = 0
        first = await self.get(job_id)
        if first["state"] in FINAL:
            # Nothing more will come: read what the topic holds, then the job itself
            # (should its last state not be on the topic,
            # :mod:`hubbub.core.jobs`, invariant "the record is the truth").
            for doc in await self._told(job_id):
                if doc["version"] > last:
                    last = doc["version"]
                    yield doc
            if last < first["version"]:
                yield first
            return
        sub = self._client.subscribe(f"jobs.{job_id}", after="start", transport=transport,
                                     on_gap="event")
        async with sub:
            async for item in sub:
                # States lost to retention are bridged by the job as it is.
                doc = await self.get(job_id) if "gap" in item else item["data"]
                if not isinstance(doc, dict) or doc.get("version", 0) <= last:
                    continue
                last = doc["version"]
                yield doc
                if doc["state"] in FINAL:
                    return

    async def _told(self, job_id: str) -> list[dict[str, Any]]:
        """The states on the job's topic, oldest first."""
        path = f"/v1/topics/jobs.{quote(job_id, safe='')}/messages"
        states: list[dict[str, Any]] = []
        after = "start"
        while True:
            r = await self._client.http.get(path, params={"after": after, "limit": 1000})
            if r.status_code != 200:
                raise await error_from_response(r)
            page = msgspec.json.decode(r.content)
            states += [m["data"] for m in page["messages"] if isinstance(m.get("data"), dict)]
            if not page["messages"]:
                return states
            after = page["cursor"]

    async def take(self, queue: str, *, wait: float = 0.0,
                   lease: float | None = None) -> TakenJob | None:
        """Lease the next job of ``queue``, waiting up to ``wait`` seconds; ``None`` if none came.

        Report :meth:`TakenJob.progress` at least once per lease, then
        :meth:`TakenJob.complete` or :meth:`TakenJob.fail` it.
        """
        params: dict[str, str] = {}
        if wait:
            params["wait"] = f"{wait:g}"
        if lease is not None:
            params["lease"] = f"{lease:g}"
        r = await self._client.http.post(
            f"/v1/jobs/{quote(queue, safe=':@')}/take", params=params,
            timeout=httpx.Timeout(10.0, read=wait + 10.0))
        if r.status_code == 204:
            return None
        if r.status_code != 200:
            raise await error_from_response(r)
        return TakenJob(self, msgspec.json.decode(r.content))

    async def work(
        self,
        queue: str,
        handler: Handler,
        *,
        count: int | None = None,
        lease: float | None = None,
        wait: float = 25.0,
        report_every: float = 0.5,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> int:
        """Run ``handler(data, progress)`` for each job of ``queue`` until cancelled
        (or ``count`` jobs were handled); returns how many were.

        ``handler`` may be a plain function (run in a thread) or a coroutine
        function; its return value (any JSON value) is the job's result; failures
        and lost jobs as the module says (invariant "the handler settles the
        job"). ``on_done`` gets each job as it ended (succeeded, failed, queued
        again, or taken by another worker).
        """
        if count is not None and count < 1:
            raise errors.UsageError("count must be at least 1")
        handled = 0
        backoff = Backoff(self._client.backoff)
        while count is None or handled < count:
            try:
                taken = await self.take(queue, wait=wait, lease=lease)
            except errors.HubbubError as exc:
                if isinstance(exc, errors.InvalidRequest) and exc.field == "wait" and wait > 1:
                    wait = int(wait / 2)  # this hub's max_wait is lower
                    continue
                if not exc.temporary:
                    raise
                await asyncio.sleep(backoff.next_delay())
                continue
            except NETWORK_ERRORS:
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            if taken is None:
                continue
            job = await self.run(taken, handler, report_every=report_every)
            handled += 1
            if on_done is not None:
                on_done(job)
        return handled

    async def run(self, taken: TakenJob, handler: Handler, *,
                  report_every: float = 0.5) -> dict[str, Any]:
        """Run ``handler`` for one taken job and settle it; returns the job as it ended."""
        progress = Progress(asyncio.get_running_loop())
        reporter = asyncio.create_task(self._report(taken, progress, report_every))
        call = asyncio.ensure_future(invoke(handler, taken.data, progress))
        try:
            await asyncio.wait((call, reporter), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The worker stops (Ctrl-C): give the job back for another worker now
            # rather than when its lease runs out.
            call.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await asyncio.shield(taken.fail("the worker stopped", retry=True))
            raise
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reporter
        if not call.done():  # the reporter ended: the job is no longer ours
            call.cancel()
            log.warning("job %s was lost (its lease ran out); its result is dropped", taken.id)
            return await self._lost(taken)
        try:
            result = call.result()
        except JobError as exc:
            return await self._settle(taken.fail(str(exc), retry=exc.retry, delay=exc.delay),
                                      taken)
        except Exception as exc:
            log.exception("job %s failed", taken.id)
            return await self._settle(taken.fail(f"{type(exc).__name__}: {exc}", retry=True),
                                      taken)
        if progress.latest is not None and progress.latest != progress.sent:
            try:
                await taken.progress(*progress.latest)  # the last report, before the end
            except errors.Conflict:
                return await self._lost(taken)
            except (errors.HubbubError, *NETWORK_ERRORS) as exc:
                log.debug("job %s: report failed: %s", taken.id, exc)
        return await self._settle(taken.complete(result), taken)

    async def _settle(self, call: Awaitable[dict[str, Any]], taken: TakenJob) -> dict[str, Any]:
        try:
            return await call
        except errors.Conflict:
            return await self._lost(taken)

    async def _lost(self, taken: TakenJob) -> dict[str, Any]:
        with contextlib.suppress(errors.HubbubError, httpx.TransportError):
            return await self.get(taken.id)
        return taken.job

    async def _report(self, taken: TakenJob, progress: Progress, every: float) -> None:
        """Send progress and heartbeats until cancelled; return when the job is lost."""
        loop = asyncio.get_running_loop()
        beat = max(0.05, taken.lease_seconds / 3)
        last = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, last + beat - loop.time())):
                    await progress.changed.wait()
            progress.changed.clear()
            latest = progress.latest
            try:
                if latest is not None and latest != progress.sent:
                    await taken.progress(*latest)
                    progress.sent = latest
                else:
                    await taken.progress()
            except errors.Conflict:
                return
            except (errors.HubbubError, *NETWORK_ERRORS) as exc:
                log.debug("job %s: report failed: %s", taken.id, exc)
            last = loop.time()
            await asyncio.sleep(every)

    async def for_upload(self, upload_id: str, *, timeout: float = 10.0) -> str | None:
        """The id of the job an upload started (its metadata named a queue), or
        ``None`` when it started none within ``timeout`` seconds."""
        from ..protocol import tus

        # HEAD says whether the upload asked for a job at all (and makes the hub
        # submit one that a crash kept from being submitted).
        r = await self._client.http.head(f"/v1/uploads/{quote(upload_id, safe='')}",
                                         headers={"Tus-Resumable": tus.VERSION})
        if r.status_code != 200:
            raise await error_from_response(r)
        try:
            if "job" not in tus.parse_metadata(r.headers.get("upload-metadata")):
                return None
        except errors.InvalidRequest:
            return None
        path = f"/v1/topics/uploads.{quote(upload_id, safe='')}/messages"
        after = "start"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            r = await self._client.http.get(
                path, params={"after": after, "wait": f"{min(left, 25):.3f}"},
                timeout=httpx.Timeout(10.0, read=left + 10.0))
            if r.status_code != 200:
                raise await error_from_response(r)
            page = msgspec.json.decode(r.content)
            for m in page["messages"]:
                data = m.get("data")
                if isinstance(data, dict) and data.get("event") == "job":
                    job = data.get("job")
                    return str(job) if job else None
            after = page["cursor"]
        return None

