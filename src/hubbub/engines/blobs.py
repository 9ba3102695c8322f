"""Upload bytes in files: blocking calls that run in threads (:mod:`hubbub.core.uploads`).

Each upload is one file ``<dir>/<id>``; these are the file-system calls its
service makes: create a file durably, write at an offset, cut a stale tail,
``fdatasync``, lock with ``flock``, unlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..protocol.errors import Locked, NotFound


def create_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    # The new directory entry must survive a crash too.
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
    """Cut the file to ``offset`` bytes if it is longer (Rule 1 of :mod:`hubbub.core.uploads`)."""
    if os.fstat(fd).st_size > offset:
        os.ftruncate(fd, offset)


def write_at(fd: int, data: bytearray, at: int) -> None:
    """Write all of ``data`` at ``at``, then close ``fd``."""
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
    finally:
        os.close(fd)


class FileLock:
    """An exclusive, non-blocking ``flock`` on an upload's file (Rule 2 of
    :mod:`hubbub.core.uploads`); yields its fd."""

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
