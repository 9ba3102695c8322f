"""Many sockets written at once, on two cores.

Theory of operation
-------------------
A publish may answer ten thousand long polls at once, each with a write of
the same bytes to its own socket (:func:`hubbub.server.whole.respond_all`), and
the WebSocket door's flush of a loop pass writes every connection with news
(:meth:`hubbub.server.state.ServerState.gathered_writes`). What such a crowd costs is the kernel's work
for each write (the TCP send path and, over loopback, the receiver's too:
6 to 15 µs a write), and uvloop's ``transport.write`` holds the GIL through
its ``write()`` system call, so the loop's thread makes them one by one on
one core. :func:`write_all` makes them with :func:`os.write`, which lets go of
the GIL for the system call, from the loop's thread and a helper thread at
once: each takes the next chunk of sockets until none is left, then the
loop's thread waits for the helper. Measured with 10,000 long polls on 2
cores (``hubbub serve`` and ``benchmarks/loadgen/longpoll.c``), the p99 of the
wake-up went from 126-159 ms to 77-88 ms on the memory engine (three runs
each) and from 128-134 ms to 73-79 ms on SQLite (two runs each).

The helper thread is a :class:`WriteHelper` the server owns: started and
stopped with it (:class:`hubbub.server.state.ServerState` ``helper``), and
handed to :func:`write_all` by whoever writes a crowd.

Invariants
----------
"direct only when nothing waits": A transport is written directly only if it
    has a socket and no TLS (:func:`socket_fd`, asked once when the
    connection is made: the bytes go to the socket as they are), is open
    (``is_closing()``: a closed socket's number may be another's by now), and
    has nothing buffered (``get_write_buffer_size()``: nothing it holds can
    be overtaken).
"the rest through the transport": Whatever was not written directly
    (another transport, a short write, a full socket buffer, an error) goes
    through ``transport.write`` afterwards, the rest of its bytes in order:
    the transport then buffers it, or meets the error itself and closes as
    it always does.
"written whole, counted whole": A target's ``wrote()`` counts what went
    through its transport and watches a socket that did not take it all; a
    direct write the socket took whole left nothing buffered, so it is only
    added to ``written``.
"the loop waits for the helper": Nothing else runs on these sockets
    meanwhile: the loop's thread stays in :func:`write_all` until the helper
    is done.
"one thread per socket": The caller names each transport at most once (two
    threads writing one socket would interleave its bytes): join a
    connection's data first.

Trade-offs
----------
"split only big crowds": Fewer than :data:`SPLIT_AT` writes, a process
    allowed one CPU, or no started helper, are written through
    ``transport.write`` alone: below that the helper's wake-up costs more
    than it saves.
"the loop's share halves, not always the time": Split, the loop's thread
    spends half the CPU on a crowd's writes; the wall time falls only when
    the second core has room for the helper. With the readers of the
    sockets on the same two cores (``benchmarks/tools/write_cost.py``: 1,000
    writes of 300 bytes, a process reading the other ends), the loop's
    thread spent 6.9-8.1 ms split and 12.3-12.5 ms alone, but the writes took
    12.5-12.9 ms either way (2-core AMD EPYC); the 10,000 long polls above,
    whose clients had nothing else to do, took less time too.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

#: The fewest writes split over two threads (trade-off "split only big crowds").
SPLIT_AT = 512
#: Sockets a thread takes at a time.
CHUNK = 64

#: (index, bytes already written) of the writes left to ``transport.write``
#: (invariant "the rest through the transport").
Left = list[tuple[int, int]]

#: The CPUs this process may run on (trade-off "split only big crowds").
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class WriteHelper:
    """The second thread of :func:`write_all`, owned by a server: made by
    :meth:`start` (none for a process allowed one CPU: trade-off "split only big crowds") and ended by
    :meth:`stop`."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self.pool is None and _CPUS >= 2:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="hubbub-writer")

    def stop(self) -> None:
        """End the thread (after the write it is making, if any)."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class Target(Protocol):
    """A connection :func:`write_all` writes: its transport, its socket's
    number (:func:`socket_fd`, taken once, when it connected), and its count
    of bytes written."""

    transport: Any
    fd: int
    written: int

    def wrote(self, n: int) -> None:
        """Count ``n`` bytes written through the transport; watch a socket that
        did not take them all."""


def socket_fd(transport: Any) -> int:
    """The number of ``transport``'s socket, to write its bytes to directly,
    or -1 when they must go through the transport (TLS encrypts them; a
    transport with no socket of its own): invariant "direct only when nothing
    waits". Asked once per connection, when it is made."""
    if transport.get_extra_info("ssl_object") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def _fd(target: Target) -> int:
    """``target``'s socket to write to directly now, or -1 (invariant "direct
    only when nothing waits")."""
    transport = target.transport
    if transport.is_closing() or transport.get_write_buffer_size():
        return -1
    return target.fd


def _write_chunks(fds: list[int], data: Sequence[bytes], take: Callable[[], int]) -> Left:
    """Write the chunks ``take()`` hands out until there are none left."""
    left: Left = []
    write, n = os.write, len(fds)
    while (start := take() * CHUNK) < n:
        for i in range(start, min(start + CHUNK, n)):
            fd, d = fds[i], data[i]
            try:
                done = write(fd, d) if fd >= 0 else 0
            except OSError:  # a full buffer, or a gone client: the transport's to handle
                done = 0
            if done < len(d):
                left.append((i, done))
    return left


def write_all(targets: Sequence[Target], data: Sequence[bytes],
              helper: WriteHelper | None = None) -> None:
    """Write ``data[i]`` to ``targets[i]`` and count it, for every ``i``, over
    two threads (the loop's and ``helper``'s, if it is started) when there
    are many (see the module docstring; each target at most once)."""
    n = len(targets)
    pool = None if helper is None else helper.pool
    if n < SPLIT_AT or pool is None:
        for target, d in zip(targets, data, strict=True):
            target.transport.write(d)
            target.wrote(len(d))
        return
    fds = [_fd(t) for t in targets]
    take = itertools.count().__next__  # atomic under the GIL: each chunk goes to one thread
    helped = pool.submit(_write_chunks, fds, data, take)
    left = _write_chunks(fds, data, take)
    left += helped.result()
    for i, done in left:  # each target at most once
        target, d = targets[i], data[i]
        target.transport.write(d[done:] if done else d)
        fds[i] = -2  # counted here, through its wrote(): not again below
        target.wrote(len(d))
    for target, d, fd in zip(targets, data, fds, strict=True):
        if fd >= 0:  # invariant "written whole, counted whole": nothing buffered, nothing to watch
            target.written += len(d)


__all__ = ["CHUNK", "SPLIT_AT", "Target", "WriteHelper", "socket_fd", "write_all"]
