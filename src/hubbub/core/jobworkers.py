"""The worker's side of jobs: take, report progress, complete, fail (no HTTP).

Part of :class:`~hubbub.core.jobs.Jobs`: a worker takes a job through the
queue's consumer group, and each report checks the lease it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..engines.base import Lease
from ..protocol.errors import (
    Conflict,
    HubbubError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from ..protocol.jobstate import (
    Job,
    State,
    check_error,
    check_lease,
    check_progress,
    completed,
    failed,
    open_envelope,
    progressed,
    repeated,
    taken,
)
from ..protocol.leases import Outcome, parse_lease_id
from .groups import MAX_DELAY, MAX_LEASE
from .jobrecords import (
    CAS_TRIES,
    WATCH_PREFIX,
    JobRecords,
    Taken,
    check_id,
    check_seconds,
    group_name,
    log,
    queue_topic,
    status_topic,
)

_json_encode = msgspec.json.Encoder().encode


class JobWorkers(JobRecords):
    """What a worker calls on the jobs service (mixed into :class:`~hubbub.core.jobs.Jobs`)."""

    # -- the worker's side -----------------------------------------------------------------

    async def take(self, queue: str, *, wait: float = 0.0,
                   lease: float | None = None) -> Taken | None:
        """Lease the next job of ``queue`` to the caller, waiting up to ``wait``
        seconds for one; ``None`` when there was none.

        The job is running from now on; report progress (which also extends
        the lease) at least once per ``lease`` seconds, then complete or fail
        it, each time with ``taken.lease``.

        Raises:
            InvalidTopic: a bad queue name.
            InvalidRequest: a bad ``wait`` or ``lease``.
            Unavailable: the store failed or the hub is draining.
        """
        self._check_open()
        topic = queue_topic(queue)
        lease_s = self.config.lease if lease is None else lease
        check_seconds(lease_s, "lease", 0.1, MAX_LEASE)
        check_seconds(wait, "wait", 0, self.hub.config.server.max_wait)
        deadline = self.hub.now() + int(wait * 1000)
        while True:
            left = max(0, deadline - self.hub.now()) / 1000
            leases = await self.hub.groups.pull(
                group_name(queue), [topic], max_messages=1, wait=left, lease=lease_s,
                start="start")
            if not leases:
                return None
            got = await self._start(queue, leases[0], int(lease_s * 1000))
            if got is not None:
                return got

    async def _start(self, queue: str, delivery: Lease, lease_ms: int) -> Taken | None:
        """Make the delivered job running, or settle a delivery that has nothing to run."""
        group, lease_id = group_name(queue), delivery.lease_id
        try:
            job_id, data, content_type = open_envelope(delivery.message.data)
            check_id(job_id)
        except InvalidRequest:
            log.warning("%s: %r is no job; acked and dropped", group, delivery.message)
            await self._settle(group, lease_id, "ack")
            return None
        engine = self.hub.engine
        for _ in range(CAS_TRIES):
            try:
                job = await self.get(job_id)
            except NotFound:
                job = None
            if job is None or job.queue != queue:
                await self._settle(group, lease_id, "ack")  # expired, or not this queue's
                return None
            if job.final:
                await self._tell(job)  # its last state may be untold
                # (:mod:`hubbub.core.jobs`, invariant "the record is the truth")
                await self._settle(group, lease_id, "ack")
                return None
            now = self.hub.now()
            # The watch goes first: one naming a lease the record does not
            # hold is ignored by the sweep, a missing one would be missed.
            await engine.put(WATCH_PREFIX + job_id, lease_id.encode(), now,
                             expires=delivery.deadline)
            new = taken(job, lease_id, delivery.attempts, lease_ms, self.max_attempts(queue),
                        now)
            written = await self._write(new, job.version)
            if written is not None:
                return Taken(written, data, content_type, delivery.deadline)
        await self._settle(group, lease_id, "nack")
        return None

    async def _settle(self, group: str, lease_id: str, action: str, *,
                      error: str | None = None, delay: float = 0.0) -> None:
        """Ack or nack a delivery; the job's record already says what happened, so a
        failure here only delays the group (its lease runs out:
        :mod:`hubbub.protocol.jobstate`, invariant "a final job is only acked")."""
        try:
            if action == "ack":
                await self.hub.groups.ack(group, [lease_id])
            else:
                await self.hub.groups.nack(group, [lease_id], delay=delay, error=error)
        except HubbubError as exc:
            log.debug("%s: %s of %s failed: %s", group, action, lease_id, exc.message)

    def _check_call(self, job_id: str, lease: str) -> None:
        self._check_open()
        check_id(job_id)
        parse_lease_id(lease, field="lease")

    async def progress(self, job_id: str, lease: str, progress: float | None = None,
                       message: str | None = None) -> tuple[Job, int]:
        """Report progress (a percentage, a text) and extend the lease by its length.

        With neither ``progress`` nor ``message`` it is only a heartbeat: the
        lease is extended, the job's state does not change.

        Returns:
            The job, and the lease's new deadline (ms).
        Raises:
            InvalidRequest: malformed id, lease, progress or message.
            NotFound: no such job.
            Conflict: the job is not running, or ``lease`` is not its lease
                (the lease ran out and the job was taken again, or failed).
        """
        self._check_call(job_id, lease)
        progress, message = check_progress(progress, message)
        job = await self.get(job_id)
        check_lease(job, lease)
        # The group says whether the lease still holds (:mod:`hubbub.protocol.leases`,
        # invariant "only the current lease settles").
        outcome = (await self.hub.groups.settle(
            group_name(job.queue), [lease], "extend", lease=job.lease_ms / 1000))[lease]
        if outcome is not Outcome.OK:
            raise Conflict("the lease ran out and the job was given to another worker",
                           field="lease", state=job.state.value)
        now = self.hub.now()
        deadline = now + job.lease_ms
        await self.hub.engine.put(WATCH_PREFIX + job_id, lease.encode(), now, expires=deadline)
        if progress is None and message is None:
            return job, deadline
        for _ in range(CAS_TRIES):
            written = await self._write(
                progressed(job, lease, progress, message, self.hub.now()), job.version)
            if written is not None:
                return written, deadline
            job = await self.get(job_id)
        raise Conflict("the job keeps changing; try again", field="id")

    async def complete(self, job_id: str, lease: str, result: Any = None) -> Job:
        """The job succeeded with ``result`` (any JSON value).

        Repeating it with the same lease answers the finished job and changes
        nothing (:mod:`hubbub.protocol.jobstate`, invariant "the lease owns the job").

        Raises:
            InvalidRequest, PayloadTooLarge: malformed id or lease, or a result
                that is not JSON or is too large; nothing changed.
            NotFound: no such job.
            Conflict: the job is not running, or ``lease`` is not its lease.
        """
        self._check_call(job_id, lease)
        try:
            size = len(_json_encode(result))
        except (TypeError, msgspec.EncodeError):
            raise InvalidRequest("result cannot be encoded as JSON", field="result") from None
        limit = self.hub.config.for_topic(status_topic(job_id)).max_message_size - 1024
        if size > limit:
            raise PayloadTooLarge(f"result is larger than {limit} bytes", field="result")
        return await self._finish(job_id, lease, State.SUCCEEDED,
                                  lambda job: completed(job, lease, result, self.hub.now()))

    async def fail(self, job_id: str, lease: str, error: str, *, retry: bool = False,
                   delay: float = 0.0) -> Job:
        """The job failed with ``error``. With ``retry``, it is queued again (after
        ``delay`` seconds) while attempts are left, else it failed for good.

        Repeating it with the same lease answers the job and changes nothing.

        Raises:
            InvalidRequest: malformed id, lease, error, retry or delay.
            NotFound: no such job.
            Conflict: the job is not running, or ``lease`` is not its lease.
        """
        self._check_call(job_id, lease)
        check_error(error)
        if not isinstance(retry, bool):
            raise InvalidRequest("retry must be true or false", field="retry")
        check_seconds(delay, "delay", 0, MAX_DELAY)
        return await self._finish(job_id, lease, State.FAILED if not retry else None,
                                  lambda job: failed(job, lease, error, retry, self.hub.now()),
                                  delay=delay)

    async def _finish(self, job_id: str, lease: str, state: State | None,
                      change: Callable[[Job], Job], *, delay: float = 0.0) -> Job:
        """Apply ``change`` (a completion, or a failure: ``state`` is what a repeat
        of it finds, ``None`` for a failure with retry) and settle the delivery."""
        for _ in range(CAS_TRIES):
            job = await self.get(job_id)
            if state is not None and repeated(job, lease, state) or (
                    state is None and job.lease == lease and job.state in
                    (State.QUEUED, State.FAILED)):
                await self._tell(job)  # the first call may not have told it
                # (:mod:`hubbub.core.jobs`, invariant "the record is the truth")
                return job
            new = change(job)
            written = await self._write(new, job.version)
            if written is None:
                continue
            await self.hub.engine.delete(WATCH_PREFIX + job_id, self.hub.now())
            group = group_name(job.queue)
            if written.state is State.SUCCEEDED or state is State.FAILED:
                await self._settle(group, lease, "ack")
            else:
                # Queued again, or out of tries: the group retries it, or
                # moves it to its dead-letter topic with the error.
                await self._settle(group, lease, "nack", error=written.error, delay=delay)
            return written
        raise Conflict("the job keeps changing; try again", field="id")


__all__ = ["JobWorkers"]
