"""Jobs: the life of one asynchronous job (pure: no asyncio, no I/O).

Theory of operation
-------------------
A job is two things in the store: a record ``job/<id>`` holding its state,
and a message on its queue topic ``jobs-queue.<queue>`` holding its data in
an envelope ``{"job": "<id>", "data": ...}``. Workers take queue messages
through the consumer group ``jobs-<queue>`` (:mod:`hubbub.protocol.leases`): the
group's lease is the worker's proof of ownership, the group's attempt count
is the job's, and the group's dead-letter topic ``dlq.jobs-<queue>`` gets the
jobs that ran out of tries. A job is in one of these states:

=============  =================================================================
state          meaning
=============  =================================================================
``QUEUED``     waiting for a worker (first try, or a retry)
``RUNNING``    leased to one worker; only that lease id may change it
``SUCCEEDED``  completed with a result; final
``FAILED``     failed with an error, for good; final
``CANCELLED``  cancelled by an operator before it finished; final
=============  =================================================================

Invariants
----------
"every change is versioned": Every change is a compare-and-set on the
    record's version, which grows by one per change. The version is part of
    the job as every door shows it, so a follower can tell a new state from
    one it saw.
"the lease owns the job": A running job belongs to the lease that took it.
    Progress, completion and failure name that lease; any other lease (a
    worker whose lease ran out and whose job was taken again) is stale and
    changes nothing. The same completion or failure repeated with the same
    lease changes nothing either and is answered with the job as it is, so a
    worker may retry one whose answer it did not get.
"retries while attempts remain": A worker that fails a job asks for a retry
    or not. A retry, and a lease that ran out (the worker died, or stopped
    reporting), put the job back to ``QUEUED`` while attempts are left, else
    make it ``FAILED``: attempts count the group's deliveries, at most
    ``max_attempts`` (the queue namespace's ``max_deliver``).
"a final job is only acked": Taking a job that is already final (its worker
    finished it, but died before its ack reached the group) changes nothing:
    the delivery is only acked.
"operators cancel unfinished jobs": An operator may cancel a job that is not
    final. A queued job's queue message is acked when a worker takes it
    (invariant "a final job is only acked"); a running job loses its lease,
    so its worker's next report is refused (the job is not running) and it
    learns to stop.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from typing import Any, Final

import msgspec

from .errors import Conflict, InvalidRequest
from .message import JSON

MAX_MESSAGE = 1000
MAX_ERROR = 1000


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL: Final = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

#: (state, event) -> next state. ``lose`` is a lease that ran out; ``retry``
#: a failure that asks for another try; ``exhaust`` either, with no try left.
TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.QUEUED, "take"): State.RUNNING,
    (State.RUNNING, "take"): State.RUNNING,  # its lease ran out, unnoticed so far
    (State.RUNNING, "progress"): State.RUNNING,
    (State.RUNNING, "complete"): State.SUCCEEDED,
    (State.RUNNING, "fail"): State.FAILED,
    (State.RUNNING, "retry"): State.QUEUED,
    (State.RUNNING, "lose"): State.QUEUED,
    (State.RUNNING, "exhaust"): State.FAILED,
    (State.QUEUED, "cancel"): State.CANCELLED,
    (State.RUNNING, "cancel"): State.CANCELLED,
}


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job as recorded. Times are ms since the Unix epoch.

    ``lease`` and ``lease_ms`` are the worker's and stay in the record (they
    are a capability); :meth:`to_dict` is the job as every door shows it.
    """

    id: str
    queue: str
    state: State
    version: int = 1
    attempts: int = 0
    max_attempts: int = 1
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    created: int
    updated: int
    finished: int | None = None
    content_type: str = JSON
    lease: str | None = None
    lease_ms: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict[str, Any]:
        """The job as every door shows it (no lease)."""
        return {
            "id": self.id, "queue": self.queue, "state": self.state.value,
            "version": self.version, "attempts": self.attempts,
            "max_attempts": self.max_attempts, "progress": self.progress,
            "message": self.message, "result": self.result, "error": self.error,
            "created": self.created, "updated": self.updated, "finished": self.finished,
        }

    def document(self) -> bytes:
        """:meth:`to_dict` as compact JSON."""
        return _encode(self.to_dict())


_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(Job).decode
_decode_any = msgspec.json.Decoder().decode


def encode(job: Job) -> bytes:
    """The record's value."""
    return _encode(job)


def decode(value: bytes, version: int) -> Job:
    """A job from its record's value and version."""
    return msgspec.structs.replace(_decode_job(value), version=version)


def _next(job: Job, event: str) -> State:
    state = TRANSITIONS.get((job.state, event))
    if state is None:
        raise Conflict(f"the job is {job.state.value}", field="id", state=job.state.value)
    return state


def _change(job: Job, now: int, **changes: Any) -> Job:
    return msgspec.structs.replace(job, version=job.version + 1, updated=now, **changes)


# -- transitions (each returns the next job; the caller writes it with CAS) ------------


def submitted(job_id: str, queue: str, content_type: str, max_attempts: int, now: int) -> Job:
    """A new job, queued."""
    return Job(id=job_id, queue=queue, state=State.QUEUED, max_attempts=max_attempts,
               created=now, updated=now, content_type=content_type)


def taken(job: Job, lease: str, attempts: int, lease_ms: int, max_attempts: int,
          now: int) -> Job:
    """The job leased to a worker on its ``attempts``-th try (invariant "a final
    job is only acked": check :attr:`Job.final` first)."""
    return _change(job, now, state=_next(job, "take"), lease=lease, lease_ms=lease_ms,
                   attempts=attempts, max_attempts=max_attempts, progress=None,
                   message=None, error=None)


def check_lease(job: Job, lease: str) -> None:
    """Invariant "the lease owns the job", for a running job.

    Raises:
        Conflict: the job is not running, or ``lease`` is not its lease.
    """
    if job.state is not State.RUNNING:
        raise Conflict(f"the job is {job.state.value}", field="lease", state=job.state.value)
    if job.lease != lease:
        raise Conflict("the lease is stale: the job was taken again", field="lease",
                       state=job.state.value)


def progressed(job: Job, lease: str, progress: float | None, message: str | None,
               now: int) -> Job:
    """The job with new progress (both values replace the old ones)."""
    check_lease(job, lease)
    return _change(job, now, state=_next(job, "progress"), progress=progress, message=message)


def repeated(job: Job, lease: str, state: State) -> bool:
    """Whether a completion or failure by ``lease`` already made the job ``state``
    (invariant "the lease owns the job")."""
    return job.lease == lease and job.state is state


def completed(job: Job, lease: str, result: Any, now: int) -> Job:
    """The job succeeded with ``result``."""
    check_lease(job, lease)
    return _change(job, now, state=_next(job, "complete"), result=result, finished=now,
                   progress=100.0 if job.progress is not None else None)


def failed(job: Job, lease: str, error: str, retry: bool, now: int) -> Job:
    """The job failed: queued again when ``retry`` and attempts are left
    (invariant "retries while attempts remain")."""
    check_lease(job, lease)
    event = "fail" if not retry else "retry" if job.attempts < job.max_attempts else "exhaust"
    state = _next(job, event)
    return _change(job, now, state=state, error=error,
                   finished=now if state in FINAL else None)


def lost(job: Job, now: int) -> Job:
    """The running job's lease ran out: queued again, or failed when no attempt is left."""
    event = "lose" if job.attempts < job.max_attempts else "exhaust"
    state = _next(job, event)
    error = f"the worker was lost: its lease ran out on attempt {job.attempts}"
    if state is State.FAILED:
        error += " of " + str(job.max_attempts)
    # No lease: a late report of the lost worker is stale, not a repeat
    # (invariant "the lease owns the job").
    return _change(job, now, state=state, error=error, lease=None,
                   finished=now if state in FINAL else None)


def cancelled(job: Job, now: int) -> Job:
    """The job cancelled by an operator (invariant "operators cancel
    unfinished jobs"): final, with no lease.

    Raises:
        Conflict: the job is already final.
    """
    return _change(job, now, state=_next(job, "cancel"), error="cancelled by an operator",
                   lease=None, finished=now)


# -- input checks ------------------------------------------------------------------------


def check_progress(progress: object, message: object) -> tuple[float | None, str | None]:
    """A percentage from 0 to 100 (or none) and a short text (or none).

    Raises:
        InvalidRequest: either is malformed.
    """
    if progress is not None:
        if (isinstance(progress, bool) or not isinstance(progress, int | float)
                or not math.isfinite(progress) or not 0 <= progress <= 100):
            raise InvalidRequest("progress must be a number from 0 to 100", field="progress")
        progress = float(progress)
    if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
        raise InvalidRequest(f"message must be text of at most {MAX_MESSAGE} characters",
                             field="message")
    return progress, message


def check_error(error: object) -> str:
    """A failure's error text.

    Raises:
        InvalidRequest: it is not text of 1 to ``MAX_ERROR`` characters.
    """
    if not isinstance(error, str) or not 1 <= len(error) <= MAX_ERROR:
        raise InvalidRequest(f"error must be text of 1 to {MAX_ERROR} characters",
                             field="error")
    return error


# -- the queue message ----------------------------------------------------------------------


def envelope(job_id: str, data: bytes, content_type: str) -> bytes:
    """The queue message of a job: ``data`` is compact JSON text when ``content_type`` is JSON."""
    head = b'{"job":' + _encode(job_id)
    if content_type == JSON:
        return head + b',"data":' + data + b"}"
    return (head + b',"content_type":' + _encode(content_type)
            + b',"data":' + _encode(base64.b64encode(data).decode()) + b"}")


class Envelope(msgspec.Struct, frozen=True):
    job: str
    data: msgspec.Raw
    content_type: str = JSON


_decode_envelope = msgspec.json.Decoder(Envelope).decode


def open_envelope(message: bytes) -> tuple[str, bytes, str]:
    """``(job id, data, content type)`` of a queue message.

    Raises:
        InvalidRequest: it is no job envelope (someone published to the queue
            topic by hand).
    """
    try:
        env = _decode_envelope(message)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest("not a job envelope", field="data") from None
    if env.content_type == JSON:
        return env.job, bytes(env.data), JSON
    text = _decode_any(env.data)
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        return env.job, base64.b64decode(text, validate=True), env.content_type
    except (binascii.Error, ValueError):
        raise InvalidRequest("job data is not base64", field="data") from None
