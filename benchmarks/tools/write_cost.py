"""The kernel's part of a fan-out: N socket writes, on one thread and on two.

What :func:`hubbub.server.writes.write_all` does for a loop pass's flush: one
write of the same frame to each of N loopback TCP connections, either through
the transports on the loop's thread alone or split between it and the server's
helper thread. The client ends are read by another process, as the load
generator reads them in the end-to-end benchmarks, so it takes its share of the
two cores as it does there::

    .venv/bin/python benchmarks/tools/write_cost.py --n 1000 --rounds 200

Prints, for each way, the median and p99 wall time of the N writes and the median CPU
time of the loop's thread during them (the helper's is not counted), for rounds
alternated between the two ways. ``delivery_cost.py`` measures the Python part
of the same pass, without sockets; ``PYTHONPATH=OTHER_TREE/src`` measures
another tree's ``write_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This checkout's hub unless PYTHONPATH names another tree's src (A/B runs).
sys.path.append(str(Path(__file__).resolve().parents[2] / "src"))

import uvloop  # noqa: E402

from hubbub.server import writes  # noqa: E402

#: The client ends' reader: another process, reading every socket as it can.
READER = r"""
import os, select, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
poller = select.epoll()
for c in clients:
    c.setblocking(False)
    poller.register(c.fileno(), select.EPOLLIN)
print("connected", flush=True)
while True:
    for fd, _ in poller.poll():
        try:
            if not os.read(fd, 1 << 16):
                poller.unregister(fd)
        except BlockingIOError:
            pass
"""


class _Keep(asyncio.Protocol):
    def __init__(self, kept: list[Any]) -> None:
        self.kept = kept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.kept.append(transport)


class _Target:
    """A connection as ``write_all`` takes it (:class:`hubbub.server.writes.Target`)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.fd = writes.socket_fd(transport)
        self.written = 0

    def wrote(self, n: int) -> None:
        self.written += n


async def measure(n: int, rounds: int, size: int) -> dict[str, list[tuple[float, float]]]:
    transports: list[Any] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Keep(transports), "127.0.0.1", 0,
                                      backlog=n + 16)
    port = server.sockets[0].getsockname()[1]
    reader = await asyncio.create_subprocess_exec(sys.executable, "-c", READER, str(port), str(n),
                                                  stdout=asyncio.subprocess.PIPE)
    helper = writes.WriteHelper()
    helper.start()
    try:
        assert reader.stdout is not None
        async with asyncio.timeout(60):
            await reader.stdout.readline()
            while len(transports) < n:
                await asyncio.sleep(0.01)
        data = [b"x" * size] * n
        # A tree from before write_all took its connections took their transports.
        targets = ([_Target(t) for t in transports] if hasattr(writes, "socket_fd")
                   else transports)
        ways: dict[str, writes.WriteHelper | None] = {"two threads": helper, "one thread": None}
        times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, given in ways.items():
                wall, cpu = time.perf_counter(), time.thread_time()
                writes.write_all(targets, data, given)
                times[way].append((time.perf_counter() - wall, time.thread_time() - cpu))
                await asyncio.sleep(0.02)  # the reader drains the sockets
        return times
    finally:
        helper.stop()
        reader.kill()
        await reader.wait()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="connections")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=300, help="bytes per write")
    args = parser.parse_args()
    times = uvloop.run(measure(args.n, args.rounds, args.size))
    if args.n < writes.SPLIT_AT:
        print(f"(fewer than SPLIT_AT = {writes.SPLIT_AT} writes: both ways are one thread)")
    for way, samples in times.items():
        walls = sorted(w * 1e3 for w, _ in samples)
        wall, p99 = statistics.median(walls), walls[min(len(walls) - 1, len(walls) * 99 // 100)]
        cpu = statistics.median(c for _, c in samples) * 1e3
        print(f"{way}: {args.n} writes of {args.size} bytes, wall median {wall:.2f} ms, "
              f"p99 {p99:.2f} ms, loop thread's CPU {cpu:.2f} ms ({len(samples)} rounds)")


if __name__ == "__main__":
    main()
