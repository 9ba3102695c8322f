"""Job records: names, ids and the record a job's state lives in (no HTTP).

The part of :class:`~hubbub.core.jobs.Jobs` below both of its sides: the
topic, group and record names of a queue and a job, the checks of ids and
seconds, and reading, writing and telling a job's record.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Final

import msgspec

from ..config import JOB_QUEUES, JOBS, JobsConfig
from ..protocol.errors import (
    InvalidRequest,
    InvalidTopic,
    NotFound,
    Unavailable,
)
from ..protocol.jobstate import (
    Job,
    decode,
    encode,
)
from ..protocol.message import JSON
from .auth import JOB_GROUP_PREFIX
from .ports import Publisher

log = logging.getLogger("hubbub.jobs")

QUEUE_PREFIX: Final = JOB_QUEUES + "."
STATUS_PREFIX: Final = JOBS + "."
GROUP_PREFIX: Final = JOB_GROUP_PREFIX
RECORD_PREFIX: Final = "job/"
WATCH_PREFIX: Final = "joblease/"
#: Seconds between two sweeps for lost leases (:mod:`hubbub.core.jobs`,
#: invariant "lost leases are swept").
SWEEP_INTERVAL: Final = 1.0
#: Sweeps between two removals of expired job records (:mod:`hubbub.core.jobs`,
#: invariant "finished jobs expire").
EXPIRE_EVERY: Final = 30
#: Tries of a compare-and-set that keeps meeting concurrent changes.
CAS_TRIES: Final = 8
_QUEUE_RE = re.compile(r"[A-Za-z0-9_\-:@]{1,59}")
_ID_RE = re.compile(r"[0-9a-f]{32}")
KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")


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


def new_job_id(queue: str, key: str | None, owner: str | None = None) -> str:
    """A new job's id: random, or derived from its queue and idempotency key,
    and the key's owner when there is one (so principals never share keys)."""
    if key is None:
        return secrets.token_hex(16)
    scope = f"{queue}\0{key}" if owner is None else f"{queue}\0{key}\0{owner}"
    return hashlib.sha256(scope.encode(errors="surrogateescape")).hexdigest()[:32]


def state_key(job: Job) -> str:
    return f"{job.created}.v{job.version}"


def check_seconds(value: object, field: str, low: float, high: float) -> float:
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



class JobRecords:
    """A job's record: read, written by compare-and-set, told on its topic."""

    hub: Publisher

    @property
    def config(self) -> JobsConfig:
        return self.hub.config.jobs

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
        """Store ``new`` if the record still has ``old_version``; tell it
        (:mod:`hubbub.core.jobs`, invariant "the record is the truth")."""
        record = await self.hub.engine.put(
            RECORD_PREFIX + new.id, encode(new), self.hub.now(),
            expires=self._expiry(new), if_version=old_version)
        if record is None:
            return None
        new = msgspec.structs.replace(new, version=record.version)
        await self._tell(new)
        return new

    async def _tell(self, job: Job) -> None:
        await self.hub.publish(status_topic(job.id), job.document(), JSON, state_key(job))



__all__ = ["CAS_TRIES", "KEY_RE", "JobRecords", "Taken", "check_id", "check_seconds",
           "group_name", "new_job_id", "queue_topic", "state_key", "status_topic",
           "validate_queue"]
