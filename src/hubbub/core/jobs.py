"""Asynchronous jobs: submit, take, report, finish, and follow on any door (no HTTP).

::

    job = await hub.jobs.submit("transcode", b'{"file": "a.mp4"}')   # queued

    # a worker (any number of them share the queue through a consumer group):
    taken = await hub.jobs.take("transcode", wait=30, lease=60)
    if taken is not None:
        await hub.jobs.progress(taken.job.id, taken.lease, 50.0, "halfway")
        await hub.jobs.complete(taken.job.id, taken.lease, {"frames": 1200})

    job = await hub.jobs.wait(job.id, version=job.version, timeout=30)  # a long poll

The states, their transitions and the lease rules are in :mod:`hubbub.protocol.jobstate`;
the group that leases jobs to workers is ``hub.groups`` (:mod:`hubbub.core.groups`).

Theory of operation
-------------------
Rule 1. The record ``job/<id>`` is the truth; the topic ``jobs.<id>`` tells it.
        Each change is written to the record first (compare-and-set), then
        appended to the topic as the job's document, keyed by its creation
        time and version, so telling a version again stores nothing twice. A
        crash between the two leaves the topic one state behind until the
        state is told again: by the same call retried (a worker retries a
        completion it got no answer for, and is answered with the job as it
        is), or by a take that meets the finished job. Polls read the record,
        so they are never behind.
Rule 2. Submission writes the record (``if_version=0``: one job per
        idempotency key), then appends the first state and the queue message
        in one atomic batch. A crash between the two leaves a queued job that
        no worker sees until it is submitted again with the same key: that
        appends the batch then (both appends are keyed, so nothing twice).
        The Python client sends a key with every submission and retries, so
        this repairs itself; a submission without a key may leave such a job
        behind.
Rule 3. Leases are the group's. A taken job also gets a watch record
        ``joblease/<id>`` that expires with its lease; every heartbeat moves
        the expiry along. A sweep (on every node; :meth:`Engine.expire`
        hands each expired watch to one of them) finds the leases that ran
        out, makes their jobs queued again or failed (:func:`jobstate.lost`)
        and nacks the group's delivery, so the group gives the job to the
        next taker at once, or moves it to ``dlq.jobs-<queue>`` when no try
        is left. Should no sweep notice (the hub was down), the group still
        redelivers the job after its lease, and the next take takes it over.
Rule 4. A finished job's record expires ``[jobs] keep`` seconds after it
        finished (never when ``keep`` is 0); the sweep removes expired
        records. Its topic follows the ``jobs`` namespace's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..config import JOB_QUEUES, JOBS, JobsConfig
from ..engines.base import Lease
from ..loop.tasks import cancel_and_wait
from ..protocol.errors import (
    Conflict,
    HubbubError,
    InvalidRequest,
    InvalidTopic,
    NotFound,
    PayloadTooLarge,
    SlowConsumer,
    Unavailable,
)
from ..protocol.jobstate import (
    Job,
    State,
    cancelled,
    check_error,
    check_lease,
    check_progress,
    completed,
    decode,
    encode,
    envelope,
    failed,
    lost,
    open_envelope,
    progressed,
    repeated,
    submitted,
    taken,
)
from ..protocol.leases import Outcome, parse_lease_id
from ..protocol.message import JSON, compact_json
from .auth import JOB_GROUP_PREFIX
from .groups import MAX_DELAY, MAX_LEASE
from .ports import Publisher
from .subscription import State as SubState
from .values import PublishItem

log = logging.getLogger("hubbub.jobs")

QUEUE_PREFIX: Final = JOB_QUEUES + "."
STATUS_PREFIX: Final = JOBS + "."
GROUP_PREFIX: Final = JOB_GROUP_PREFIX
RECORD_PREFIX: Final = "job/"
WATCH_PREFIX: Final = "joblease/"
#: Seconds between two sweeps for lost leases (Rule 3).
SWEEP_INTERVAL: Final = 1.0
#: Sweeps between two removals of expired job records (Rule 4).
EXPIRE_EVERY: Final = 30
#: Tries of a compare-and-set that keeps meeting concurrent changes.
CAS_TRIES: Final = 8
_QUEUE_RE = re.compile(r"[A-Za-z0-9_\-:@]{1,59}")
_ID_RE = re.compile(r"[0-9a-f]{32}")
_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


def validate_queue(queue: str) -> str:
    """Return ``queue`` if it is a valid queue name: one topic token, at most 59 characters.

    Raises:
        InvalidTopic: it is not.
    """
    if not isinstance(queue, str) or _QUEUE_RE.fullmatch(queue) is None:
        raise InvalidTopic("queue name must be 1-59 characters of [A-Za-z0-9_-:@]",
                           field="queue")
    return queue


def queue_topic(queue: str) -> str:
    """The topic holding the queue's jobs."""
    return QUEUE_PREFIX + validate_queue(queue)


def status_topic(job_id: str) -> str:
    """The topic carrying every state of job ``job_id``."""
    return STATUS_PREFIX + job_id


def group_name(queue: str) -> str:
    """The consumer group whose workers take the queue's jobs."""
    return GROUP_PREFIX + queue


def check_id(job_id: str) -> str:
    """Return ``job_id`` if it is one this hub could have made.

    Raises:
        InvalidRequest: it is not.
    """
    if not isinstance(job_id, str) or _ID_RE.fullmatch(job_id) is None:
        raise InvalidRequest("malformed job id (32 hex digits)", field="id")
    return job_id


def _job_id(queue: str, key: str | None, owner: str | None = None) -> str:
    """A new job's id: random, or derived from its queue and idempotency key,
    and the key's owner when there is one (so principals never share keys)."""
    if key is None:
        return secrets.token_hex(16)
    scope = f"{queue}\0{key}" if owner is None else f"{queue}\0{key}\0{owner}"
    return hashlib.sha256(scope.encode(errors="surrogateescape")).hexdigest()[:32]


def _state_key(job: Job) -> str:
    return f"{job.created}.v{job.version}"


def _seconds(value: object, field: str, low: float, high: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high):
        raise InvalidRequest(f"{field} must be from {low:g} to {high:g} seconds", field=field)
    return float(value)


@dataclass(frozen=True, slots=True)
class Taken:
    """A job a worker took: its state (running), its data and the lease's deadline (ms)."""

    job: Job
    data: bytes
    content_type: str
    deadline: int

    @property
    def lease(self) -> str:
        assert self.job.lease is not None
        return self.job.lease


class Jobs:
    """The jobs service of one hub (``hub.jobs``)."""

    def __init__(self, hub: Publisher) -> None:
        self.hub = hub
        self.sweep_interval = SWEEP_INTERVAL
        self._sweeper: asyncio.Task[None] | None = None
        self._sweeps = 0

    @property
    def config(self) -> JobsConfig:
        return self.hub.config.jobs

    async def start(self) -> None:
        """Start sweeping for lost leases and expired jobs."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="hubbub-jobs")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    def _check_open(self) -> None:
        if self.hub.draining:
            raise Unavailable("hub is shutting down")

    def max_attempts(self, queue: str) -> int:
        """Tries a job of ``queue`` gets: its namespace's ``max_deliver``."""
        return self.hub.config.for_topic(queue_topic(queue)).max_deliver

    def _expiry(self, job: Job) -> int | None:
        keep = self.config.keep
        return job.updated + int(keep * 1000) if job.final and keep else None

    # -- records ----------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job's current state.

        Raises:
            InvalidRequest: a malformed id.
            NotFound: no such job (or it expired).
        """
        check_id(job_id)
        record = await self.hub.engine.get(RECORD_PREFIX + job_id, self.hub.now())
        if record is None:
            raise NotFound("no such job", field="id")
        return decode(record.value, record.version)

    async def _write(self, new: Job, old_version: int) -> Job | None:
        """Store ``new`` if the record still has ``old_version``; tell it (Rule 1)."""
        record = await self.hub.engine.put(
            RECORD_PREFIX + new.id, encode(new), self.hub.now(),
            expires=self._expiry(new), if_version=old_version)
        if record is None:
            return None
        new = msgspec.structs.replace(new, version=record.version)
        await self._tell(new)
        return new

    async def _tell(self, job: Job) -> None:
        await self.hub.publish(status_topic(job.id), job.document(), JSON, _state_key(job))

    # -- submitting -------------------------------------------------------------------

    async def submit(self, queue: str, data: bytes, content_type: str = JSON, *,
                     key: str | None = None, owner: str | None = None) -> Job:
        """Queue a job carrying ``data``; the same ``key`` submits one job.

        Args:
            owner: whose ``key`` it is (the principal's subject): keys are
                scoped to their owner, so another principal reusing a key makes
                its own job instead of finding this one.

        Raises:
            InvalidTopic: a bad queue name.
            InvalidRequest, PayloadTooLarge: bad ``data`` or ``key``; nothing stored.
            Unavailable: the store failed or the hub is draining.
        """
        job, _ = await self.enqueue(queue, data, content_type, key=key, owner=owner)
        return job

    async def enqueue(self, queue: str, data: bytes, content_type: str = JSON, *,
                      key: str | None = None, owner: str | None = None) -> tuple[Job, bool]:
        """As :meth:`submit`; also says whether this call made the job (``False``:
        ``key`` named an earlier one, which is returned)."""
        self._check_open()

        topic = queue_topic(queue)
        if key is not None and (not isinstance(key, str) or _KEY_RE.fullmatch(key) is None):
            raise InvalidRequest("idempotency key must be 1-200 printable ASCII characters",
                                 field="key")
        if content_type == JSON:
            data = compact_json(data, max_depth=self.hub.config.limits.json_depth)
        job_id = _job_id(queue, key, owner)
        limit = self.hub.config.for_topic(topic).max_message_size
        body = envelope(job_id, data, content_type)
        if len(body) > limit:
            raise PayloadTooLarge(f"job data is larger than {limit} bytes", field="data")
        now = self.hub.now()
        job = submitted(job_id, queue, content_type, self.max_attempts(queue), now)
        record = await self.hub.engine.put(RECORD_PREFIX + job_id, encode(job), now,
                                           if_version=0)
        if record is None:
            earlier = await self.get(job_id)
            if earlier.version == 1:
                await self._queue(earlier, body)  # Rule 2: the batch may be missing
            return earlier, False
        job = msgspec.structs.replace(job, version=record.version)
        await self._queue(job, body)
        return job, True

    async def _queue(self, job: Job, body: bytes) -> None:

        await self.hub.publish_batch([
            PublishItem(status_topic(job.id), job.document(), JSON, _state_key(job)),
            PublishItem(queue_topic(job.queue), body, JSON, f"{job.id}.{job.created}"),
        ])

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
        _seconds(lease_s, "lease", 0.1, MAX_LEASE)
        _seconds(wait, "wait", 0, self.hub.config.server.max_wait)
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
                await self._tell(job)  # Rule 1: its last state may be untold
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
        failure here only delays the group (its lease runs out, Rule 4 of jobstate)."""
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
        # The group says whether the lease still holds (Rule 3 of hubbub.protocol.leases).
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
        nothing (Rule 2 of :mod:`hubbub.protocol.jobstate`).

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
        _seconds(delay, "delay", 0, MAX_DELAY)
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
                await self._tell(job)  # Rule 1: the first call may not have told it
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

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that is not final (an operator's act: Rule 5 of
        :mod:`hubbub.protocol.jobstate`); the cancelled job.

        Raises:
            InvalidRequest: a malformed id.
            NotFound: no such job.
            Conflict: the job is already final (``state`` says which).
        """
        self._check_open()
        for _ in range(CAS_TRIES):
            job = await self.get(job_id)
            written = await self._write(cancelled(job, self.hub.now()), job.version)
            if written is None:
                continue
            if job.state is State.RUNNING and job.lease is not None:
                await self.hub.engine.delete(WATCH_PREFIX + job_id, self.hub.now())
                await self._settle(group_name(job.queue), job.lease, "ack")
            return written
        raise Conflict("the job keeps changing; try again", field="id")

    # -- following ---------------------------------------------------------------------

    async def wait(self, job_id: str, *, version: int | None = None,
                   timeout: float = 0.0) -> Job:
        """The job once its version is past ``version`` (default: its current
        one), or as it is when ``timeout`` seconds passed or it is finished.

        Raises:
            InvalidRequest: malformed id, version or timeout.
            NotFound: no such job.
        """
        check_id(job_id)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or version < 0):
            raise InvalidRequest("version must be a non-negative integer", field="version")
        _seconds(timeout, "wait", 0, self.hub.config.server.max_wait)
        sub = await self.hub.subscribe([status_topic(job_id)], "end", buffer=64)
        try:
            job = await self.get(job_id)
            target = job.version if version is None else version
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while job.version <= target and not job.final:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    events = await sub.next_batch(64, timeout=left)
                except SlowConsumer:
                    return await self.get(job_id)  # it changed a lot, in any case
                if events:
                    job = await self.get(job_id)
                elif sub.state is SubState.CLOSED:
                    break  # the hub is draining
            return job
        finally:
            sub.close()

    # -- sweeping (Rules 3 and 4) ---------------------------------------------------------

    async def sweep(self) -> int:
        """Make the jobs whose lease ran out queued again or failed; how many."""
        now = self.hub.now()
        count = 0
        for record in await self.hub.engine.expire(WATCH_PREFIX, now):
            job_id = record.key[len(WATCH_PREFIX):]
            try:
                if await self._lose(job_id, record.value.decode()):
                    count += 1
            except (NotFound, InvalidRequest, UnicodeDecodeError):
                pass
            except HubbubError as exc:
                # The watch is gone from the store: put it back, lapsed, so that
                # the next sweep (on any node) handles this lease.
                log.warning("job %s: lapsed lease not handled yet: %s", job_id, exc.message)
                with contextlib.suppress(HubbubError):
                    await self.hub.engine.put(record.key, record.value, now, expires=now)
        self._sweeps += 1
        if self._sweeps % EXPIRE_EVERY == 0:
            await self.hub.engine.expire(RECORD_PREFIX, now)
        return count

    async def _lose(self, job_id: str, lease: str) -> bool:
        if await self.hub.engine.get(WATCH_PREFIX + job_id, self.hub.now()) is not None:
            return False  # a heartbeat (or a new take) came meanwhile
        for _ in range(CAS_TRIES):
            job = await self.get(job_id)
            if job.state is not State.RUNNING or job.lease != lease:
                return False
            written = await self._write(lost(job, self.hub.now()), job.version)
            if written is not None:
                await self._settle(group_name(job.queue), lease, "nack", error=written.error)
                return True
        return False

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            if self.hub.draining:
                continue  # the next node (or start) sweeps
            try:
                await self.sweep()
            except Unavailable:
                pass
            except Exception:
                log.exception("sweeping jobs failed")


__all__ = ["Job", "Jobs", "State", "Taken", "check_id", "group_name", "queue_topic",
           "status_topic", "validate_queue"]
