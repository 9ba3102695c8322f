"""What the Redis engine reads back from Redis, turned into hubbub's types (pure).

No I/O here: replies of the scripts in :mod:`hubbub.engines.redis_scripts`
come in as redis-py hands them over (RESP2: lists of bytes and ints), and
:class:`~hubbub.protocol.message.Message`, :class:`~hubbub.engines.base.TopicInfo` and
errors go out.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from redis.exceptions import (
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..protocol.errors import Unavailable
from ..protocol.message import Message
from .base import TopicInfo
from .redis_scripts import FRAME

_FRAME = struct.Struct(FRAME)
_EPOCH = struct.Struct(">H")
#: Error replies that say "not now", not "never": the store is unavailable.
_TRANSIENT_REPLIES: Final = ("BUSY", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN",
                             "LOADING")
_CTYPES: dict[bytes, str] = {}


def ctype(raw: bytes) -> str:
    """A content type's text; they repeat, so each is decoded once (a bounded cache)."""
    c = _CTYPES.get(raw)
    if c is None:
        c = raw.decode()
        if len(_CTYPES) < 256:
            _CTYPES[raw] = c
    return c


def message(topic: str, epoch: str, entry: list[Any]) -> Message:
    """A message from a stream entry ``[b"OFFSET-SEQ", [t, TIME, i, ID, c, TYPE, d, DATA]]``."""
    offset, _, seq = entry[0].partition(b"-")
    f = entry[1]
    return Message(topic, epoch, int(offset), int(seq), int(f[1]), f[3].decode(), f[7],
                   ctype(f[5]))


def decode_frame(frame: bytes) -> tuple[list[Message], str]:
    """The messages of a fan-out frame, and the store epoch it was sent from.

    A frame is ``>H`` + the store epoch, then per message the fixed part
    :data:`~hubbub.engines.redis_scripts.FRAME` and the variable-length fields.
    """
    (n,) = _EPOCH.unpack_from(frame)
    epoch, pos = frame[2:2 + n].decode(), 2 + n
    view = memoryview(frame)
    msgs = []
    while pos < len(frame):
        offset, seq, time, lt, le, li, lc, ld = _FRAME.unpack_from(frame, pos)
        pos += _FRAME.size
        topic = frame[pos:pos + lt].decode()
        pos += lt
        m_epoch = frame[pos:pos + le].decode()
        pos += le
        mid = frame[pos:pos + li].decode()
        pos += li
        ct = ctype(frame[pos:pos + lc])
        pos += lc
        data = bytes(view[pos:pos + ld])
        pos += ld
        msgs.append(Message(topic, m_epoch, offset, seq, time, mid, data, ct))
    return msgs, epoch


def topic_info(name: str, f: list[Any]) -> TopicInfo | None:
    """A TopicInfo from the fields ``INFO_FIELDS`` of a topic hash (``None``: no topic).

    Retained offsets are ``trim_offset + 1 .. last_offset``: trims only ever
    remove a topic's oldest messages.
    """
    if f[0] is None:
        return None
    last, trim = int(f[1]), int(f[4])
    return TopicInfo(name, f[0].decode(), trim + 1, last, int(f[2]), int(f[3]), trim,
                     int(f[5]), int(f[6]))


def unavailable(e: BaseException) -> Exception:
    """Store trouble becomes :class:`Unavailable`; anything else (a bug) stays as it is."""
    transient = isinstance(e, RedisConnectionError | RedisTimeoutError | BusyLoadingError
                           | OutOfMemoryError | ReadOnlyError | OSError)
    if not transient and isinstance(e, ResponseError):
        transient = str(e).startswith(_TRANSIENT_REPLIES)
    if not transient:
        return e if isinstance(e, Exception) else RuntimeError(str(e))
    err = Unavailable("store is unavailable")
    err.__cause__ = e
    return err
