"""Resumable uploads from the client: tus 1.0.0 against ``/v1/uploads/``.

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        info = await hub.upload("video.mp4", job="transcode",
                                on_progress=lambda done, total: print(done, total))

Invariants
----------
"fingerprint resumes the upload": The upload URL of a file is remembered in a
small JSON state file, keyed by the file's *fingerprint* (the hub, the absolute
path, size and mtime), as soon as the hub created it. A later call for the same
unchanged file asks the hub (HEAD) where that upload stands and goes on from
there, so a run that was interrupted (Ctrl-C, a lost network, a hub restart)
resumes on the next run. A changed file gets a new fingerprint, hence a new
upload.
"one checksummed PATCH per chunk": Each chunk (``chunk_size`` bytes) goes in
one PATCH with an ``Upload-Checksum`` (sha256) and is streamed from the file,
never read whole into memory. The hub's answer is the offset to go on from.
"retries ask where it stands": Network errors and temporary answers (423, 5xx)
are retried after a HEAD (the hub may have stored part of the chunk), with
backoff, for up to ``retry_for`` seconds without progress; 409 re-reads the
offset at once. Other refusals (400...) are raised as
:mod:`hubbub.protocol.errors`.
"413 halves the chunk": A ``413`` to a PATCH means a body limit on the way (a
proxy's, such as nginx's ``client_max_body_size``): the chunk size is halved,
down to :data:`MIN_CHUNK_SIZE`, and the chunk sent again from the offset the
hub reports; the smaller size is kept for the rest of the file. A ``413`` at
the floor is raised, naming the limit to raise.
"finished uploads are forgotten": A finished upload is forgotten from the state
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from ..protocol import errors, tus
from .backoff import Backoff
from .base import ClientBase
from .errors import error_from_response

#: Bytes per PATCH.
CHUNK_SIZE = 8 << 20
#: The smallest chunk a 413 halves the chunk size to (invariant "413 halves the chunk").
MIN_CHUNK_SIZE = 64 << 10
#: Bytes per read of the file while a PATCH streams it.
READ_SIZE = 256 << 10
TUS_HEADERS = {"Tus-Resumable": tus.VERSION}
log = logging.getLogger("hubbub.client")
Progress = Callable[[int, int], None]


def default_state_file() -> Path:
    """``$XDG_STATE_HOME/hubbub/uploads.json`` (``~/.local/state/hubbub/uploads.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "hubbub" / "uploads.json"


class UploadState:
    """The URL of each unfinished upload, by file fingerprint (invariant
    "fingerprint resumes the upload")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} \
            if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, url: str | None) -> None:
        """Remember (or, with ``None``, forget) a URL; written atomically."""
        data = self._load()
        if url is None:
            data.pop(key, None)
        else:
            data[key] = url
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def fingerprint(base_url: str, path: Path) -> str:
    """What identifies one version of one file sent to one hub (invariant
    "fingerprint resumes the upload")."""
    st = path.stat()
    return f"{base_url} {path.resolve()} {st.st_size} {st.st_mtime_ns}"


def _inspect(base_url: str, file: Path) -> tuple[int, str]:
    if not file.is_file():
        raise errors.UsageError(f"not a file: {file}")
    return file.stat().st_size, fingerprint(base_url, file)


async def upload(
    client: ClientBase,
    path: str | os.PathLike[str],
    *,
    job: str | None = None,
    metadata: dict[str, str] | None = None,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Progress | None = None,
    state_file: Path | None = None,
) -> dict[str, Any]:
    """Upload a file, resuming an earlier interrupted upload of it (see module docs).

    Returns:
        ``{"url", "id", "size", "resumed_from"}``: ``resumed_from`` is the
        offset this call started at (0 for a new upload).
    Raises:
        UsageError: ``path`` is not a readable file, or ``chunk_size`` < 1.
        HubbubError: the hub refused the upload (the class it names).
    """
    file = Path(path)
    if chunk_size < 1:
        raise errors.UsageError("chunk_size must be at least 1")
    size, key = await asyncio.to_thread(_inspect, client.base_url, file)
    state = UploadState(state_file or default_state_file())
    http = client.http
    url, offset = await _resume(http, state.get(key), size)
    if url is None:
        url = await _create(http, file, size, job, metadata)
        state.set(key, url)
        offset = 0
    started = offset
    if on_progress is not None:
        on_progress(offset, size)
    backoff = Backoff(client.backoff)
    deadline = time.monotonic() + client.retry_for
    while offset < size:
        end = min(offset + chunk_size, size)
        try:
            offset = await _patch(http, url, file, offset, end)
        except (httpx.TransportError, OSError, errors.HubbubError) as exc:
            if isinstance(exc, errors.HubbubError) and exc.status == 413:
                chunk_size = _smaller(chunk_size, end - offset, exc)
                offset = await _offset(http, url)
                continue
            if isinstance(exc, errors.HubbubError) and not _retryable(exc):
                raise
            if time.monotonic() > deadline:
                raise
            if not isinstance(exc, errors.Conflict):
                await asyncio.sleep(backoff.next_delay())
            with contextlib.suppress(httpx.TransportError, OSError, errors.Unavailable):
                offset = await _offset(http, url)
            continue
        backoff.reset()
        deadline = time.monotonic() + client.retry_for
        if on_progress is not None:
            on_progress(offset, size)
    state.set(key, None)
    return {"url": url, "id": url.rstrip("/").rsplit("/", 1)[1], "size": size,
            "resumed_from": started}


def _smaller(chunk_size: int, sent: int, exc: errors.HubbubError) -> int:
    """The chunk size to try after a 413 to a PATCH of ``sent`` bytes (invariant
    "413 halves the chunk").

    Raises:
        PayloadTooLarge: ``sent`` was already at the floor.
    """
    if sent <= MIN_CHUNK_SIZE:
        raise errors.PayloadTooLarge(
            f"the hub or a proxy in front of it refuses upload chunks of {sent} bytes "
            f"(413: {exc.message}), even at the smallest chunk size; raise the proxy's "
            "body size limit (nginx: client_max_body_size) to at least 8 MiB",
            field="chunk_size") from exc
    smaller = max(MIN_CHUNK_SIZE, min(chunk_size, sent) // 2)
    log.warning("upload chunks of %d bytes are refused as too large (413); trying %d",
                sent, smaller)
    return smaller


def _retryable(exc: errors.HubbubError) -> bool:
    return exc.temporary or isinstance(exc, errors.Conflict) and exc.code == "conflict"


async def _resume(http: httpx.AsyncClient, url: str | None, size: int) -> tuple[str | None, int]:
    """Where a remembered upload stands, or ``(None, 0)`` when it cannot go on."""
    if url is None:
        return None, 0
    try:
        r = await http.head(url, headers=TUS_HEADERS)
    except httpx.TransportError:
        raise
    if r.status_code != 200 or r.headers.get("upload-length") != str(size):
        return None, 0  # gone, expired or not ours: start afresh
    return url, int(r.headers["upload-offset"])


async def _create(http: httpx.AsyncClient, file: Path, size: int, job: str | None,
                  metadata: dict[str, str] | None) -> str:
    meta = {"filename": file.name, **(metadata or {})}
    kind = mimetypes.guess_type(file.name)[0]
    if kind:
        meta.setdefault("filetype", kind)
    if job is not None:
        meta["job"] = job
    r = await http.post("/v1/uploads/", headers={
        **TUS_HEADERS, "Upload-Length": str(size), "Upload-Metadata": tus.format_metadata(meta)})
    if r.status_code != 201:
        raise await error_from_response(r)
    # tus clients resolve Location against the endpoint (it is a path on hubbub).
    return str(r.url.join(r.headers["location"]))


async def _offset(http: httpx.AsyncClient, url: str) -> int:
    r = await http.head(url, headers=TUS_HEADERS)
    if r.status_code != 200:
        raise await error_from_response(r)
    return int(r.headers["upload-offset"])


def _sha256(file: Path, start: int, end: int) -> bytes:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        f.seek(start)
        left = end - start
        while left:
            block = f.read(min(READ_SIZE, left))
            if not block:
                raise errors.UsageError(f"{file} changed while it was being uploaded")
            digest.update(block)
            left -= len(block)
    return digest.digest()


async def _stream(file: Path, start: int, end: int) -> AsyncIterator[bytes]:
    with file.open("rb") as f:
        f.seek(start)
        left = end - start
        while left:
            block = await asyncio.to_thread(f.read, min(READ_SIZE, left))
            if not block:
                raise errors.UsageError(f"{file} changed while it was being uploaded")
            left -= len(block)
            yield block


async def _patch(http: httpx.AsyncClient, url: str, file: Path, start: int, end: int) -> int:
    digest = await asyncio.to_thread(_sha256, file, start, end)
    r = await http.patch(url, content=_stream(file, start, end), headers={
        **TUS_HEADERS, "Content-Type": tus.OFFSET_STREAM, "Upload-Offset": str(start),
        "Content-Length": str(end - start),
        "Upload-Checksum": tus.format_checksum("sha256", digest)})
    if r.status_code != 204:
        raise await error_from_response(r)
    return int(r.headers["upload-offset"])
