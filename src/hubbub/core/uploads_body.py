"""The body of an append, written to its blob (:mod:`hubbub.core.uploads`).

Trade-offs
----------
"write while receiving": One block (``WRITE_BUFFER`` bytes) is written and
    hashed, in threads, while the next one is received: the network and the
    disk work at the same time, for one block of memory more per append.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Final

from ..engines.base import BlobWriter
from ..protocol.errors import ChecksumMismatch

#: Bytes gathered from the body before one write to the blob.
WRITE_BUFFER: Final = 1 << 20


class BodyWriter:
    """Writes a body at an offset in buffered blocks, hashing it on the way
    (trade-off "write while receiving").

    A block handed to the blob goes on being written, and keeps the blob
    locked (:mod:`hubbub.core.uploads`, invariant "one writer per upload"),
    even if the request is cancelled meanwhile (:meth:`BlobWriter.write`).
    """

    def __init__(self, blob: BlobWriter, offset: int,
                 checksum: tuple[str, bytes] | None) -> None:
        self.blob = blob
        self.end = offset  # bytes written (buffered ones included)
        self.checksum = checksum
        self._hash = hashlib.new(checksum[0]) if checksum else None
        self._buffer = bytearray()
        self._at = offset  # where the buffer goes
        self._pending: asyncio.Future[Any] | None = None

    async def feed(self, chunk: bytes) -> bool:
        """Take a chunk; whether a block was handed to the blob."""
        self._buffer += chunk
        self.end += len(chunk)
        if len(self._buffer) < WRITE_BUFFER:
            return False
        await self._flush()
        return True

    async def _flush(self) -> None:
        await self.drain()
        if self._buffer:
            data, self._buffer = self._buffer, bytearray()
            at, self._at = self._at, self._at + len(data)
            written = self.blob.write(data, at)
            if self._hash is None:
                self._pending = written
            else:
                self._pending = asyncio.gather(written, asyncio.to_thread(self._hash.update, data))

    async def drain(self) -> None:
        """Wait for the block in flight; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def sync(self) -> None:
        """Write out the buffer and make every written byte durable."""
        await self._flush()
        await self.drain()
        await self.blob.sync()

    def verify(self) -> None:
        """Raise :class:`ChecksumMismatch` unless the body matched its checksum."""
        if self.checksum is not None and self._hash is not None \
                and self._hash.digest() != self.checksum[1]:
            raise ChecksumMismatch("the body does not match Upload-Checksum",
                                   field="Upload-Checksum")
