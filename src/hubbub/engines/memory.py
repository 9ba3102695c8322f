"""MemoryEngine: topic logs in this process, for tests and ephemeral use.

Nothing survives the process; a new engine has a new store epoch, so cursors
from an earlier process are reported as gaps, never silently reused.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..protocol.cursor import new_epoch
from ..protocol.errors import NotFound
from ..protocol.leases import (
    Outcome,
    Pending,
    State,
    dead_letter_payload,
    dead_letter_topic,
    new_lease_id,
    parse_lease_id,
    take,
)
from ..protocol.message import JSON, Message
from .base import (
    DEFAULT_KEY_TTL_MS,
    AppendRequest,
    AppendResult,
    BlobStore,
    Claim,
    EpochInfo,
    ErrorListener,
    GroupInfo,
    Lease,
    Listener,
    Record,
    Retention,
    TopicInfo,
    record_kind,
)
from .blobs import file_blobs


@dataclass(slots=True)
class _Log:
    """One topic's log. Retained messages are ``buf[head:]``: trimming moves
    ``head`` and compacts the list only now and then, so a full topic does not
    shift its whole history on every append."""

    name: str
    epoch: str
    start_seq: int
    created: int
    buf: list[Message] = field(default_factory=list)
    head: int = 0
    last_offset: int = 0
    last_seq: int = 0
    trim_offset: int = 0
    trim_seq: int = 0

    def __len__(self) -> int:
        return len(self.buf) - self.head

    def info(self) -> TopicInfo:
        first = self.buf[self.head].offset if len(self) else self.last_offset + 1
        return TopicInfo(
            self.name, self.epoch, first, self.last_offset, self.last_seq, self.start_seq,
            self.trim_offset, self.trim_seq, self.created,
        )

    def at(self, offset: int) -> Message | None:
        """The retained message at ``offset``, if any."""
        if not len(self):
            return None
        i = self.head + offset - self.buf[self.head].offset
        return self.buf[i] if self.head <= i < len(self.buf) else None

    def after_offset(self, offset: int, limit: int) -> list[Message]:
        if not len(self):
            return []
        start = self.head + max(0, offset + 1 - self.buf[self.head].offset)
        return self.buf[start : start + limit]

    def before_offset(self, offset: int, limit: int) -> list[Message]:
        if not len(self):
            return []
        end = self.head + max(0, min(len(self), offset - self.buf[self.head].offset))
        return self.buf[max(self.head, end - limit) : end]

    def after_seq(self, seq: int, limit: int) -> list[Message]:
        i = bisect.bisect_right(self.buf, seq, lo=self.head, key=lambda m: m.seq)
        return self.buf[i : i + limit]

    def older_than(self, cutoff: int) -> int:
        """How many retained messages are older than ``cutoff`` (ms)."""
        return bisect.bisect_left(self.buf, cutoff, lo=self.head, key=lambda m: m.time) - self.head

    def trim_to(self, keep_from: int) -> int:
        """Drop the first ``keep_from`` retained messages; returns how many were dropped."""
        if keep_from <= 0:
            return 0
        dropped = self.buf[self.head + keep_from - 1]
        self.trim_offset, self.trim_seq = dropped.offset, dropped.seq
        self.head += keep_from
        if self.head >= 1024 and self.head * 2 >= len(self.buf):
            del self.buf[: self.head]
            self.head = 0
        return keep_from


@dataclass(slots=True)
class _Group:
    name: str
    patterns: tuple[str, ...]
    delivered_seq: int
    created: int
    pending: dict[int, Pending] = field(default_factory=dict)  # by seq

    def info(self) -> GroupInfo:
        return GroupInfo(
            self.name, self.patterns, self.delivered_seq, len(self.pending), self.created
        )


class MemoryEngine:
    """An :class:`~hubbub.engines.base.Engine` kept in process memory."""

    durable = False

    def __init__(self, *, key_ttl_ms: int = DEFAULT_KEY_TTL_MS) -> None:
        self.store_epoch = new_epoch()
        self._logs: dict[str, _Log] = {}
        self._epochs: dict[str, str] = {}  # topic epoch -> topic
        self._keys: dict[tuple[str, str], tuple[Message, int]] = {}
        self._seq = 0
        self._listeners: list[Listener] = []
        self._key_ttl_ms = key_ttl_ms
        self._groups: dict[str, _Group] = {}
        self._records: dict[str, Record] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def blobs(self, directory: str | None = None) -> BlobStore:
        """Files in a temporary directory, removed when the store closes (records
        vanish with the process, so uploads do too), unless ``directory``."""
        return file_blobs(directory, None)

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        results: list[AppendResult] = []
        new: list[Message] = []
        for req in requests:
            if req.key is not None:
                hit = self._keys.get((req.topic, req.key))
                if hit is not None and now - hit[1] < self._key_ttl_ms:
                    results.append(AppendResult(hit[0], duplicate=True))
                    continue
            log = self._logs.get(req.topic)
            if log is None:
                log = self._new_log(req.topic, now)
            self._seq += 1
            log.last_offset += 1
            log.last_seq = self._seq
            msg = Message(
                req.topic, log.epoch, log.last_offset, self._seq, now,
                os.urandom(8).hex(), req.data, req.content_type,
            )
            log.buf.append(msg)
            if req.max_messages is not None and len(log) > req.max_messages:
                log.trim_to(len(log) - req.max_messages)
            if req.key is not None:
                self._keys[(req.topic, req.key)] = (msg, now)
            results.append(AppendResult(msg))
            new.append(msg)
        if new:
            for listener in self._listeners:
                try:
                    listener(new)
                except Exception as exc:  # the messages are stored: report, don't fail
                    asyncio.get_running_loop().call_exception_handler(
                        {"message": "hubbub listener failed", "exception": exc}
                    )
        return results

    def _new_log(self, topic: str, now: int) -> _Log:
        epoch = new_epoch()
        log = self._logs[topic] = _Log(topic, epoch, self._seq, now)
        self._epochs[epoch] = topic
        return log

    async def read(self, topic: str, after_offset: int, limit: int) -> list[Message]:
        log = self._logs.get(topic)
        if log is None or limit <= 0:
            return []
        return log.after_offset(after_offset, limit)

    async def read_before(self, topic: str, before_offset: int, limit: int) -> list[Message]:
        log = self._logs.get(topic)
        if log is None or limit <= 0:
            return []
        return log.before_offset(before_offset, limit)

    async def read_seq(
        self, topics: Sequence[str] | None, after_seq: int, limit: int
    ) -> list[Message]:
        logs = self._logs.values() if topics is None else [
            log for t in dict.fromkeys(topics) if (log := self._logs.get(t)) is not None
        ]
        out: list[Message] = []
        for log in logs:
            out.extend(log.after_seq(after_seq, limit))
        out.sort(key=lambda m: m.seq)
        return out[:limit]

    async def topic(self, name: str) -> TopicInfo | None:
        log = self._logs.get(name)
        return None if log is None else log.info()

    async def topics(self) -> list[TopicInfo]:
        return [self._logs[name].info() for name in sorted(self._logs)]

    async def delete_topic(self, name: str) -> bool:
        if self._logs.pop(name, None) is None:
            return False
        for k in [k for k in self._keys if k[0] == name]:
            del self._keys[k]
        return True

    async def lookup_epoch(self, epoch: str) -> EpochInfo | None:
        if epoch == self.store_epoch:
            return EpochInfo(None, True)
        topic = self._epochs.get(epoch)
        if topic is None:
            return None
        log = self._logs.get(topic)
        return EpochInfo(topic, log is not None and log.epoch == epoch)

    async def head_seq(self) -> int:
        return self._seq

    async def trim(self, retention: Callable[[str], Retention], now: int) -> int:
        removed = 0
        for log in self._logs.values():
            r = retention(log.name)
            drop = 0
            if r.max_messages is not None:
                drop = max(drop, len(log) - r.max_messages)
            if r.max_age_ms is not None:
                cutoff = now - r.max_age_ms
                drop = max(drop, log.older_than(cutoff))
            removed += log.trim_to(drop)
        expired = [k for k, (_, t) in self._keys.items() if now - t >= self._key_ttl_ms]
        for k in expired:
            del self._keys[k]
        return removed

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_error_listener(self, listener: ErrorListener) -> None:
        return None  # this engine's feed is in-process: it cannot break

    # -- consumer groups ---------------------------------------------------------

    def _group(self, name: str) -> _Group:
        g = self._groups.get(name)
        if g is None:
            raise NotFound(f"no group {name!r}", field="group")
        return g

    async def group(self, name: str) -> GroupInfo | None:
        g = self._groups.get(name)
        return None if g is None else g.info()

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        g = self._groups.get(name)
        if g is None:
            g = self._groups[name] = _Group(name, tuple(patterns), start_seq, now)
        return g.info()

    async def delete_group(self, name: str) -> bool:
        return self._groups.pop(name, None) is not None

    async def claim(
        self,
        name: str,
        topics: Sequence[str],
        horizon: int,
        max_messages: int,
        lease_ms: int,
        max_deliver: int,
        now: int,
    ) -> Claim:
        g = self._group(name)
        leases: list[Lease] = []
        dead: list[AppendRequest] = []
        for seq in sorted(s for s, e in g.pending.items() if e.due(now)):
            if len(leases) >= max_messages:
                break
            entry = g.pending[seq]
            log = self._logs.get(entry.topic)
            msg = None if log is None else log.at(entry.offset)
            if msg is None:  # trimmed from the log while pending
                del g.pending[seq]
                continue
            if take(entry, now, lease_ms, max_deliver) is State.DEAD:
                del g.pending[seq]
                payload = dead_letter_payload(name, msg, entry.attempts, entry.last_error)
                dead.append(AppendRequest(dead_letter_topic(name), payload, JSON))
                continue
            assert entry.lease_id is not None
            leases.append(Lease(entry.lease_id, msg, entry.attempts, entry.deadline))
        room = max_messages - len(leases)
        if room > 0 and horizon > g.delivered_seq:
            fresh = await self.read_seq(topics, g.delivered_seq, room)
            for msg in fresh:
                if msg.seq > horizon:
                    break
                lease_id = new_lease_id(msg.seq)
                g.pending[msg.seq] = Pending(
                    msg.seq, msg.topic, msg.offset, 1, lease_id, now + lease_ms
                )
                leases.append(Lease(lease_id, msg, 1, now + lease_ms))
                g.delivered_seq = msg.seq
            if len(fresh) < room:
                g.delivered_seq = max(g.delivered_seq, horizon)
        stored = await self.append(dead, now) if dead else []
        next_due = min((e.deadline for e in g.pending.values()), default=None)
        return Claim(leases, stored, next_due)

    async def settle(
        self,
        name: str,
        lease_ids: Sequence[str],
        action: Literal["ack", "nack", "extend"],
        now: int,
        *,
        delay_ms: int = 0,
        lease_ms: int = 0,
        error: str | None = None,
    ) -> list[Outcome]:
        g = self._group(name)
        out: list[Outcome] = []
        for lease_id in lease_ids:
            entry = g.pending.get(parse_lease_id(lease_id))
            if entry is None or entry.lease_id is None:
                out.append(Outcome.UNKNOWN if entry is None else Outcome.EXPIRED)
                continue
            if entry.lease_id != lease_id:
                out.append(Outcome.EXPIRED)
                continue
            if action == "ack":
                del g.pending[entry.seq]
            elif action == "nack":
                entry.lease_id, entry.deadline = None, now + delay_ms
                entry.last_error = error
            else:
                entry.deadline = now + lease_ms
            out.append(Outcome.OK)
        return out

    # -- records -------------------------------------------------------------------

    def _live(self, key: str, now: int) -> Record | None:
        record_kind(key)
        r = self._records.get(key)
        if r is not None and r.expires is not None and r.expires <= now:
            return None
        return r

    async def get(self, key: str, now: int) -> Record | None:
        return self._live(key, now)

    async def put(
        self,
        key: str,
        value: bytes,
        now: int,
        *,
        expires: int | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        live = self._live(key, now)
        if if_version is not None and (live.version if live else 0) != if_version:
            return None
        r = self._records[key] = Record(key, value, (live.version if live else 0) + 1, expires)
        return r

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        live = self._live(key, now)
        if live is None or (if_version is not None and live.version != if_version):
            return False
        del self._records[key]
        return True

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        keys = sorted(k for k in self._records if k.startswith(prefix))
        live = (self._live(k, now) for k in keys)
        return [r for r in live if r is not None][:limit]

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        gone = sorted(
            (r for k, r in self._records.items()
             if k.startswith(prefix) and r.expires is not None and r.expires <= now),
            key=lambda r: r.key,
        )[:limit]
        for r in gone:
            del self._records[r.key]
        return gone
