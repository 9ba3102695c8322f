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

Invariants
----------
"the record is the truth": The record ``job/<id>`` is the truth; the topic ``jobs.<id>`` tells it.
    Each change is written to the record first (compare-and-set), then
    appended to the topic as the job's document, keyed by its creation
    time and version, so telling a version again stores nothing twice. A
    crash between the two leaves the topic one state behind until the
    state is told again: by the same call retried (a worker retries a
    completion it got no answer for, and is answered with the job as it
    is), or by a take that meets the finished job. Polls read the record,
    so they are never behind.
"one job per key": Submission writes the record (``if_version=0``: one job per
    idempotency key), then appends the first state and the queue message
    in one atomic batch. A crash between the two leaves a queued job that
    no worker sees until it is submitted again with the same key: that
    appends the batch then (both appends are keyed, so nothing twice).
    The Python client sends a key with every submission and retries, so
    this repairs itself; a submission without a key may leave such a job
    behind.
"lost leases are swept": Leases are the group's. A taken job also gets a watch record
    ``joblease/<id>`` that expires with its lease; every heartbeat moves
    the expiry along. A sweep (on every node; :meth:`Engine.expire`
    hands each expired watch to one of them) finds the leases that ran
    out, makes their jobs queued again or failed (:func:`jobstate.lost`)
    and nacks the group's delivery, so the group gives the job to the
    next taker at once, or moves it to ``dlq.jobs-<queue>`` when no try
    is left. Should no sweep notice (the hub was down), the group still
    redelivers the job after its lease, and the next take takes it over.
"finished jobs expire": A finished job's record expires ``[jobs] keep`` seconds after it
    finished (never when ``keep`` is 0); the sweep removes expired
    records. Its topic follows the ``jobs`` namespace's retention.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from ..loop.tasks import cancel_and_wait
from ..protocol.errors import (
    Conflict,
    HubbubError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SlowConsumer,
    Unavailable,
)
from ..protocol.jobstate import (
    Job,
    State,
    cancelled,
    encode,
    envelope,
    lost,
    submitted,
)
from ..protocol.message import JSON, compact_json
from .jobrecords import (
    CAS_TRIES,
    EXPIRE_EVERY,
    KEY_RE,
    RECORD_PREFIX,
    SWEEP_INTERVAL,
    WATCH_PREFIX,
    Taken,
    check_id,
    check_seconds,
    group_name,
    log,
    new_job_id,
    queue_topic,
    state_key,
    status_topic,
    validate_queue,
)
from .jobworkers import JobWorkers
from .ports import Publisher
from .subscription import State as SubState
from .values import PublishItem


class Jobs(JobWorkers):
    """The jobs service of one hub (``hub.jobs``)."""

    def __init__(self, hub: Publisher) -> None:
        self.hub = hub
        self.sweep_interval = SWEEP_INTERVAL
        self._sweeper: asyncio.Task[None] | None = None
        self._sweeps = 0

    async def start(self) -> None:
        """Start sweeping for lost leases and expired jobs."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="hubbub-jobs")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

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
        if key is not None and (not isinstance(key, str) or KEY_RE.fullmatch(key) is None):
            raise InvalidRequest("idempotency key must be 1-200 printable ASCII characters",
                                 field="key")
        if content_type == JSON:
            data = compact_json(data, max_depth=self.hub.config.limits.json_depth)
        job_id = new_job_id(queue, key, owner)
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
                await self._queue(earlier, body)  # invariant "one job per key": the batch may be missing
            return earlier, False
        job = msgspec.structs.replace(job, version=record.version)
        await self._queue(job, body)
        return job, True

    async def _queue(self, job: Job, body: bytes) -> None:

        await self.hub.publish_batch([
            PublishItem(status_topic(job.id), job.document(), JSON, state_key(job)),
            PublishItem(queue_topic(job.queue), body, JSON, f"{job.id}.{job.created}"),
        ])

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that is not final (an operator's act:
        :mod:`hubbub.protocol.jobstate`, invariant "operators cancel unfinished jobs"); the cancelled job.

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
        check_seconds(timeout, "wait", 0, self.hub.config.server.max_wait)
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

    # -- sweeping (invariants "lost leases are swept" and "finished jobs expire") ---------------------------------------------------------

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


__all__ = ["RECORD_PREFIX", "Job", "Jobs", "State", "Taken", "check_id", "group_name",
           "queue_topic", "status_topic", "validate_queue"]
