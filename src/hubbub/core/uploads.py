"""Resumable uploads: bytes in blobs, offsets in engine records (no HTTP).

The tus 1.0.0 door (:mod:`hubbub.transports.uploads`) calls this service; so
could any other. Each upload is one blob of the engine's blob store
(:class:`~hubbub.engines.base.BlobStore`: the file ``<dir>/<id>``) and one
engine record ``upload/<id>`` holding its offset, length, metadata and
expiry (:mod:`hubbub.core.uploads_record`); the service itself does no file I/O::

    up = await hub.uploads.create(length=1 << 20, metadata="filename ZC5iaW4=")
    up = await hub.uploads.append(up.id, 0, chunks)      # an async iterator of bytes
    assert up.done

Invariants
----------
"recorded offset is truth": Bytes are written to the blob first, synced
    (:meth:`BlobWriter.sync`), and only then is the offset advanced in the
    record, so after a crash at any moment (``kill -9``) the recorded offset
    counts bytes that are all stored. Bytes past it (written but not
    committed) are a stale tail: the next append cuts the blob to the
    recorded offset before writing.
"one writer per upload": An append holds the blob's writer lock
    (:meth:`BlobStore.writer`) for its whole length; a second append (or a
    termination) meanwhile is refused with :class:`~hubbub.protocol.errors.Locked`
    (HTTP 423, which tus clients retry). The lock dies with its process, so a
    crashed node blocks nobody (:mod:`hubbub.engines.blobs`, invariant "one
    writer per blob"). Every offset commit is also a compare-and-set on the
    record's version, so a writer that lost the record (terminated, expired)
    commits nothing.
"interrupted appends keep bytes": An append without a checksum commits
    when its body ends or breaks off (and on the way, trade-off "commit every
    checkpoint"), so an interrupted PATCH keeps what arrived.
"checksummed bodies commit whole": An append with a checksum commits once,
    after the digest matched: tus 1.0.0 (checksum) "the Server MUST NOT
    append the bytes" of a body that does not match.
"expired then forgotten": An unfinished upload expires ``expiration``
    seconds after its last write; a finished one ``keep`` seconds after it
    finished (never, when ``keep`` is 0). For ``GONE_MS`` after that it
    answers :class:`~hubbub.protocol.errors.UploadExpired` (410), then the
    record goes and the sweeper (one node, thanks to :meth:`Engine.expire`)
    deletes the blob; after that it is unknown (404).
"progress is a topic": Progress is the topic ``uploads.<id>``: ``created``,
    ``progress`` (every commit), ``completed``, ``job`` (the job it started),
    ``terminated``, ``expired`` events.
"one job per upload": When an upload completes and its metadata names a job
    queue (key ``job``) that the configuration allows, a job is submitted
    with the upload id as its idempotency key, so a retried completion (a
    HEAD after a crash between the last commit and the submission) starts one.

Trade-offs
----------
"commit every checkpoint": An append without a checksum also commits every
    ``CHECKPOINT`` bytes: each commit costs a sync, a record write and a
    progress event, and each byte past the last commit is sent again after a
    crash; 8 MiB keeps both small next to the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import msgspec

from ..config import UPLOADS, UploadsConfig
from ..loop.tasks import cancel_and_wait
from ..protocol.errors import (
    Conflict,
    HubbubError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UploadExpired,
)
from ..protocol.message import JSON
from ..protocol.tus import parse_metadata
from .ports import Publisher
from .uploads_body import BodyWriter
from .uploads_limits import check_append, check_quota, limit_of
from .uploads_record import Stored, Upload, decode, encode, upload_of

log = logging.getLogger("hubbub.uploads")

KIND: Final = "upload/"
#: Bytes an append without a checksum writes between two commits (trade-off
#: "commit every checkpoint").
CHECKPOINT: Final = 8 << 20
#: How long an expired upload still answers 410 before it is forgotten
#: (invariant "expired then forgotten").
GONE_MS: Final = 3600 * 1000
SWEEP_INTERVAL: Final = 30.0
#: Most upload records read to count the bytes in use (``[limits] upload_bytes``).
QUOTA_SCAN: Final = 100_000
_ID_RE = re.compile(r"[0-9a-f]{32}")
#: The metadata key that names a job queue to start on completion (invariant
#: "one job per upload").
JOB_KEY: Final = "job"


class Uploads:
    """Create, resume, finish and remove uploads of one :class:`~hubbub.core.Hub`."""

    def __init__(self, hub: Publisher, config: UploadsConfig) -> None:
        self.hub = hub
        self.config = config
        #: The bytes: the engine's blob store, in ``[uploads] dir`` if set.
        self.blobs = hub.engine.blobs(config.dir)
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start sweeping."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hubbub-uploads")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        await self.blobs.close()

    def _check_open(self) -> None:
        if self.hub.draining:
            raise Unavailable("hub is shutting down")

    def path(self, upload_id: str) -> Path:
        """The file holding an upload's bytes."""
        return Path(self.blobs.path(upload_id))

    # -- records --------------------------------------------------------------------

    def _expiry(self, now: int, done: bool) -> int | None:
        seconds = self.config.keep if done else self.config.expiration
        return now + int(seconds * 1000) if seconds else None

    async def _put(self, upload_id: str, stored: Stored, if_version: int) -> Upload:
        now = self.hub.now()
        gone = None if stored.expires is None else stored.expires + GONE_MS
        record = await self.hub.engine.put(KIND + upload_id, encode(stored), now,
                                           expires=gone, if_version=if_version)
        if record is None:
            raise Conflict("the upload was changed or removed meanwhile", field="id")
        return upload_of(upload_id, stored, record.version)

    async def get(self, upload_id: str) -> Upload:
        """The upload as recorded.

        Raises:
            NotFound: no such upload (or it expired long ago).
            UploadExpired: it expired (invariant "expired then forgotten").
        """
        if _ID_RE.fullmatch(upload_id) is None:
            raise NotFound("no such upload", field="id")
        now = self.hub.now()
        record = await self.hub.engine.get(KIND + upload_id, now)
        if record is None:
            raise NotFound("no such upload", field="id")
        up = upload_of(upload_id, decode(record.value), record.version)
        if up.expires is not None and up.expires <= now:
            raise UploadExpired("the upload expired", field="id")
        return up

    async def scan(self, limit: int = 1000) -> list[Upload]:
        """Uploads as recorded, finished ones included, at most ``limit``
        (for statistics: an upload's id lets its holder write to it)."""
        records = await self.hub.engine.scan(KIND, self.hub.now(), limit)
        return [upload_of(r.key[len(KIND):], decode(r.value), r.version) for r in records]

    # -- creation ---------------------------------------------------------------------

    def _check_job(self, metadata: dict[str, bytes]) -> None:
        queue = metadata.get(JOB_KEY)
        if queue is None:
            return
        allowed = self.config.jobs
        if "*" not in allowed and queue.decode(errors="replace") not in allowed:
            # Said to the client, which is how an operator trying the hub meets
            # it first: name the setting that would allow the queue.
            raise InvalidRequest(
                f"the job queue {queue.decode(errors='replace')!r} is not allowed for "
                "uploads: the hub's [uploads] jobs setting (HUBBUB_UPLOADS__JOBS) must "
                "list it", field="Upload-Metadata")

    async def create(self, length: int | None, metadata: str | None = None, *,
                     owner: str | None = None) -> Upload:
        """Create an upload of ``length`` bytes (``None``: given later).

        Args:
            owner: who makes it (the credential's subject), counted against
                ``[limits] upload_bytes_per_principal``.
        Raises:
            PayloadTooLarge: ``length`` is over ``max_size``, or would take the
                stored uploads past ``[limits] upload_bytes`` (in all, or the
                owner's); ``limit`` names the setting.
            InvalidRequest: malformed metadata, or a job queue not allowed.
            Unavailable: the hub is draining.
        """
        self._check_open()
        if length is not None and length > self.config.max_size:
            raise PayloadTooLarge(f"uploads are limited to {self.config.max_size} bytes",
                                  field="Upload-Length")
        self._check_job(parse_metadata(metadata))
        if length:
            await self._check_quota(length, owner)
        upload_id = secrets.token_hex(16)
        await self.blobs.create(upload_id)
        now = self.hub.now()
        stored = Stored(0, length, now, self._expiry(now, False), metadata or None,
                         owner=owner)
        try:
            up = await self._put(upload_id, stored, 0)
        except BaseException:
            await self.blobs.delete(upload_id)
            raise
        await self._event(up, "created", metadata=up.to_dict()["metadata"])
        if up.done:  # a zero-length upload is complete at once
            await self._event(up, "completed")
            up = await self.start_job(up)
        return up

    async def _check_quota(self, length: int, owner: str | None) -> None:
        """Refuse ``length`` more bytes past ``[limits] upload_bytes`` or, for an
        owner, ``upload_bytes_per_principal`` (:func:`check_quota`); reads the
        store only when one is set."""
        limits = self.hub.config.limits
        if limits.upload_bytes or (owner is not None and limits.upload_bytes_per_principal):
            check_quota(await self.scan(QUOTA_SCAN), length, owner, limits)

    # -- appending ----------------------------------------------------------------------

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        checksum: tuple[str, bytes] | None = None,
        length: int | None = None,
        declared: int | None = None,
    ) -> Upload:
        """Write ``body`` at ``offset`` and advance the upload (invariants
        "recorded offset is truth", "one writer per upload", "interrupted
        appends keep bytes", "checksummed bodies commit whole").

        Args:
            offset: where the client believes the upload stands (``Upload-Offset``).
            body: the bytes; an exception it raises ends the append (bytes
                already committed stay) and is re-raised.
            checksum: ``(algorithm, digest)`` the whole body must match.
            length: the upload's length, when it was deferred until now.
            declared: the body's size, if known (``Content-Length``).
        Returns:
            The upload after the append.
        Raises:
            NotFound, UploadExpired: no such upload, or it expired.
            Conflict: ``offset`` is not the upload's offset; ``extra["offset"]`` is.
            Locked: another append is writing this upload.
            PayloadTooLarge: the body would pass the upload's length or ``max_size``.
            ChecksumMismatch: the body does not match ``checksum``; nothing committed.
            InvalidRequest: ``length`` conflicts with the recorded one.
        """
        self._check_open()
        up = check_append(await self.get(upload_id), offset, length, declared,
                          self.config.max_size)
        async with self.blobs.writer(upload_id) as blob:
            # Another append may have committed between our read and the lock.
            up = check_append(await self.get(upload_id), offset, length, declared,
                          self.config.max_size)
            was_done = up.done
            if length is not None and up.length is None:
                up = await self._commit(up, up.offset, length)
            # A stale tail past the recorded offset goes before anything is written
            # (invariant "recorded offset is truth").
            await blob.truncate(up.offset)
            writer = BodyWriter(blob, up.offset, checksum)
            try:
                up = await self._write(up, writer, body)
            finally:
                with contextlib.suppress(Exception):
                    await writer.drain()  # its error, if any, was raised already or is moot
        if up.done and not was_done:
            await self._event(up, "completed")
        return await self.start_job(up)

    async def _write(self, up: Upload, writer: BodyWriter, body: AsyncIterator[bytes]) -> Upload:
        limit = limit_of(up, None, self.config.max_size)
        committed = up.offset
        try:
            async for chunk in body:
                if writer.end + len(chunk) > limit:
                    raise PayloadTooLarge(f"the body would take the upload past {limit} bytes",
                                          field="body")
                if await writer.feed(chunk) and writer.checksum is None \
                        and writer.end - committed >= CHECKPOINT:
                    await writer.sync()
                    up = await self._commit(up, writer.end)
                    committed = writer.end
        except HubbubError as exc:
            if writer.checksum is None and not isinstance(exc, PayloadTooLarge):
                await self._save_partial(up, writer, committed)
            raise
        except BaseException:
            # The body broke off (client gone, task cancelled): keep what came
            # (invariant "interrupted appends keep bytes").
            if writer.checksum is None:
                await asyncio.shield(self._save_partial(up, writer, committed))
            raise
        await writer.sync()
        writer.verify()
        if writer.end != committed:
            up = await self._commit(up, writer.end)
        return up

    async def _save_partial(self, up: Upload, writer: BodyWriter, committed: int) -> None:
        with contextlib.suppress(HubbubError, OSError):
            await writer.sync()
            if writer.end != committed:
                await self._commit(up, writer.end)

    async def _commit(self, up: Upload, offset: int, length: int | None = None) -> Upload:
        """Record ``offset`` (its bytes are synced), and publish progress."""
        now = self.hub.now()
        total = up.length if up.length is not None else length
        done = total is not None and offset == total
        stored = Stored(offset, total, up.created, self._expiry(now, done),
                         up.metadata_header, now if done else None, up.job, up.owner)
        new = await self._put(up.id, stored, up.version)
        if offset != up.offset:
            self.hub.metrics.upload_bytes += max(0, offset - up.offset)
            await self._event(new, "progress")
        return new

    # -- completion -------------------------------------------------------------------------

    async def status(self, upload_id: str) -> Upload:
        """The upload (as :meth:`get`); a finished one whose job was not yet
        submitted (a crash came between) submits it now (invariant "one job
        per upload")."""
        return await self.start_job(await self.get(upload_id))

    async def start_job(self, up: Upload) -> Upload:
        """Submit the job a finished upload's metadata asks for, once
        (invariant "one job per upload").

        Idempotent: the upload id is the job's idempotency key, and the job id
        is recorded; an upload that asks for no job is returned as it is. A
        submission the jobs service refuses is logged, not raised: the upload
        is complete either way, and the next :meth:`status` tries again.
        """
        queue = up.metadata.get(JOB_KEY)
        jobs = getattr(self.hub, "jobs", None)
        if not up.done or queue is None or up.job is not None or jobs is None:
            return up
        data = _encode_json({"upload": up.to_dict(), "path": str(self.path(up.id)),
                             "url": f"/v1/uploads/{up.id}"})
        try:
            job = await jobs.submit(queue.decode(errors="replace"), data, JSON, key=up.id)
        except HubbubError as exc:
            # The upload itself is done and stays so; the next HEAD tries again.
            log.warning("upload %s: job not submitted: %s", up.id, exc.message)
            return up
        stored = Stored(up.offset, up.length, up.created, up.expires, up.metadata_header,
                         up.completed, str(job.id), up.owner)
        try:
            up = await self._put(up.id, stored, up.version)
        except Conflict:
            return up  # another node recorded it first; the key made it the same job
        await self._event(up, "job", job=up.job, queue=queue.decode(errors="replace"))
        return up

    # -- termination and expiry -----------------------------------------------------------

    async def terminate(self, upload_id: str) -> None:
        """Remove an upload and its bytes (tus termination).

        Raises:
            NotFound, UploadExpired: no such upload.
            Locked: an append is writing it.
        """
        up = await self.get(upload_id)
        async with self.blobs.lock(upload_id):
            if not await self.hub.engine.delete(KIND + upload_id, self.hub.now(),
                                                if_version=up.version):
                raise Conflict("the upload was changed meanwhile; try again", field="id")
            await self.blobs.delete(upload_id)
        await self._event(up, "terminated")

    async def sweep(self) -> int:
        """Delete the blobs of uploads whose records expired; how many
        (invariant "expired then forgotten")."""
        gone = await self.hub.engine.expire(KIND, self.hub.now())
        for record in gone:
            upload_id = record.key[len(KIND):]
            if _ID_RE.fullmatch(upload_id):
                await self.blobs.delete(upload_id)
                up = upload_of(upload_id, decode(record.value), record.version)
                with contextlib.suppress(HubbubError):
                    await self._event(up, "expired")
        return len(gone)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Unavailable:
                pass
            except Exception:
                log.exception("sweeping expired uploads failed")

    async def _event(self, up: Upload, event: str, **extra: Any) -> None:
        body = {"event": event, "id": up.id, "offset": up.offset, "length": up.length, **extra}
        try:
            await self.hub.publish(f"{UPLOADS}.{up.id}", _encode_json(body))
        except Unavailable:
            # The record is the truth and is already written; followers of
            # the topic read the state with HEAD when they resume.
            log.warning("upload %s: %s event not published (hub unavailable)", up.id, event)


def _encode_json(value: Any) -> bytes:
    return msgspec.json.encode(value)
