"""Where an inbound HTTP/2 byte stream stands: inside a header block or not.

``h2`` holds a HEADERS frame without END_HEADERS, and the CONTINUATION
frames after it, until the block ends, and says nothing meanwhile: a client
could open a block and never end it, holding the connection (and, by
RFC 9113 §6.10, every other stream of it: "a receiver MUST treat the receipt
of any other type of frame or a frame on a different stream as a connection
error") for as long as it likes. :class:`HeaderBlockWatch` follows the frame
boundaries alone (RFC 9113 §4.1: a 9-byte header whose first 24 bits are
the payload's length) so the connection can put a deadline on an open block.

Pure: bytes in, a flag out; no loop, no I/O.
"""

from __future__ import annotations

#: RFC 9113 §3.4: the client connection preface, before the first frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
HEADERS, CONTINUATION = 0x1, 0x9
END_HEADERS = 0x4


class HeaderBlockWatch:
    """Feed it what a client sends, in order; :attr:`open` says whether the
    last frame left a header block unfinished."""

    __slots__ = ("open", "_head", "_skip")

    def __init__(self) -> None:
        #: A HEADERS or CONTINUATION frame without END_HEADERS was the last
        #: frame whose header was read.
        self.open = False
        self._head = b""
        self._skip = len(PREFACE)

    def feed(self, data: bytes) -> bool:
        """Account for ``data``, the next bytes of the stream.

        Returns:
            :attr:`open` after them.
        """
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = data[i:i + FRAME_HEADER - len(self._head)]
            self._head += take
            i += len(take)
            if len(self._head) == FRAME_HEADER:
                head, self._head = self._head, b""
                if head[3] in (HEADERS, CONTINUATION):
                    self.open = not head[4] & END_HEADERS
                self._skip = int.from_bytes(head[:3], "big")
        return self.open


__all__ = ["HeaderBlockWatch", "PREFACE"]
