"""FileBlobs: a :class:`~hubbub.engines.base.BlobStore` in a directory, one file a blob.

Every engine keeps its blobs here: the SQLite engine in ``uploads`` beside
its database, the Redis engine in ``./hubbub-data/uploads`` (a directory
every node shares, set by ``[uploads] dir``), the memory engine in a
temporary directory removed when the store closes.

Invariants
----------
"creation is durable": A blob exists durably once made: its directory entry
    is ``fsync``-ed before :meth:`FileBlobs.create` returns.
"one writer per blob": A writer holds an exclusive ``flock`` on the file,
    taken without waiting (:class:`~hubbub.protocol.errors.Locked`
    otherwise). The kernel drops it when its process dies, so a crashed node
    blocks nobody; on a cluster the directory must support ``flock`` across
    hosts (NFSv4).
"writes outlive cancellation": Every write or sync in a thread gets a
    duplicate of the file descriptor and closes it itself, and is shielded
    from cancellation once asked for, so the file stays open and locked
    (invariant "one writer per blob") until the last write in flight is
    done, even if the request that started it is cancelled meanwhile (a
    cancelled call that never started would leave its duplicate open, and
    the blob locked for good).

Trade-offs
----------
"metadata calls stay inline": Writes, syncs, creation and removal run in
    threads; opening a file, ``flock`` and ``ftruncate`` touch only metadata
    and run on the event loop, which saves a thread hop per lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..protocol.errors import Locked, NotFound
from .base import BlobWriter


def file_blobs(directory: str | None, default: str | None) -> FileBlobs:
    """The store in ``directory`` if given, else in ``default``; with no
    default, in a new temporary directory that :meth:`FileBlobs.close` removes."""
    if directory is not None:
        return FileBlobs(Path(directory))
    if default is not None:
        return FileBlobs(Path(default))
    where = Path(tempfile.gettempdir()) / f"hubbub-uploads-{secrets.token_hex(8)}"
    return FileBlobs(where, temporary=True)


class FileBlobs:
    """Blobs as files ``<directory>/<name>`` (see the module docstring)."""

    def __init__(self, directory: Path, *, temporary: bool = False) -> None:
        self.directory = directory
        self.temporary = temporary
        self._made = False

    def path(self, name: str) -> str:
        return str(self.directory / name)

    async def create(self, name: str) -> None:
        if not self._made:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
            self._made = True
        await asyncio.to_thread(create_file, self.directory / name)

    @contextlib.asynccontextmanager
    async def writer(self, name: str) -> AsyncIterator[BlobWriter]:
        with FileLock(self.directory / name) as fd:
            yield _FileWriter(fd)

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        with FileLock(self.directory / name, missing_ok=True):
            yield

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(unlink, self.directory / name)

    async def close(self) -> None:
        if self.temporary:
            await asyncio.to_thread(shutil.rmtree, self.directory, ignore_errors=True)
            self._made = False


class _FileWriter:
    """The :class:`~hubbub.engines.base.BlobWriter` of a locked file (invariant
    "writes outlive cancellation")."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def truncate(self, size: int) -> None:
        cut_tail(self.fd, size)

    def write(self, data: bytes | bytearray, at: int) -> asyncio.Future[None]:
        return _in_thread(write_at, os.dup(self.fd), data, at)

    async def sync(self) -> None:
        await _in_thread(fdatasync, os.dup(self.fd))


def _in_thread(fn: Callable[..., None], fd: int, *args: Any) -> asyncio.Future[None]:
    """Run ``fn(fd, *args)``, which closes ``fd``, in a thread; cancelling the
    future returned never stops it, nor keeps it from starting (invariant
    "writes outlive cancellation")."""
    return asyncio.shield(asyncio.ensure_future(asyncio.to_thread(fn, fd, *args)))


# -- blocking calls ----------------------------------------------------------------------


def create_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    # The new directory entry must survive a crash too (invariant "creation is durable").
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def fdatasync(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def cut_tail(fd: int, offset: int) -> None:
    """Cut the file to ``offset`` bytes if it is longer."""
    if os.fstat(fd).st_size > offset:
        os.ftruncate(fd, offset)


def write_at(fd: int, data: bytes | bytearray, at: int) -> None:
    """Write all of ``data`` at ``at``, then close ``fd``."""
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
    finally:
        os.close(fd)


class FileLock:
    """An exclusive, non-blocking ``flock`` on a blob's file (invariant "one
    writer per blob"); yields its fd."""

    def __init__(self, path: Path, *, missing_ok: bool = False) -> None:
        self.path = path
        self.fd = -1
        self.missing_ok = missing_ok

    def __enter__(self) -> int:
        try:
            self.fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            if self.missing_ok:
                return -1
            raise NotFound("no such upload", field="id") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise Locked("another request is writing this upload") from None
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the lock
