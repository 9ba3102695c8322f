"""The Python cost of one message on its way to N WebSocket subscribers, in process.

What the WebSocket door does on the event loop's thread for every subscriber
of a message, without the sockets: the fan-out feeds each parked
subscription, the :class:`~hubbub.transports.ws.delivery.Room` flush takes its
events, frames them and hands the bytes to a writer (here a list, where
``hubbub serve``'s writer gathers them for :func:`hubbub.server.writes.write_all`).
The end-to-end benchmarks add the kernel's writes and the load generator to
this; this tool shows the part hubbub's own code decides::

    .venv/bin/python benchmarks/tools/delivery_cost.py --n 1000 --messages 1000

Prints the median, p90 and least time per message from publish to the last
subscriber's bytes handed to the writer (memory engine, one topic).
``PYTHONPATH=OTHER_TREE/src`` measures another tree's hub the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

# This checkout's hub unless PYTHONPATH names another tree's src (A/B runs).
sys.path.append(str(Path(__file__).resolve().parents[2] / "src"))

import uvloop  # noqa: E402

from hubbub.core import Hub  # noqa: E402
from hubbub.engines import open_engine  # noqa: E402
from hubbub.protocol import wire  # noqa: E402
from hubbub.transports.ws.delivery import Outbox, Room, _Sub  # noqa: E402


async def measure(n: int, messages: int) -> list[float]:
    hub = Hub(open_engine("memory://"))
    await hub.start()
    try:
        try:
            room = Room(hub.metrics.ws.sent)
        except TypeError:  # a tree from before the Room took the door's counter
            room = Room()
        written: list[bytes] = []

        def write(data: bytes) -> bool:
            written.append(data)
            return True

        async def frames(data: bytes) -> None:
            written.append(data)

        for _ in range(n):
            sub = await hub.subscribe(["bench.t"])
            assert await sub.next_batch(timeout=0) == []  # live
            conn = Outbox(hub, room, wire.JSON_CODEC, send=frames, frames=frames, write=write)
            s = _Sub(1, sub, sub.cursor)
            if hasattr(conn, "parks"):
                conn.parks(s)
            else:  # a tree from before Outbox.parks (an A/B run of this tool)
                s.conn = conn
            conn.subs[1] = s
            assert sub.park(s.ready)
        payload = b'"' + b"x" * 200 + b'"'
        times = []
        for _ in range(messages):
            written.clear()
            start = time.perf_counter()
            await hub.publish("bench.t", payload)
            while len(written) < n:
                await asyncio.sleep(0)
            times.append(time.perf_counter() - start)
        return sorted(times)
    finally:
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="subscribers")
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    t = uvloop.run(measure(args.n, args.messages))
    k = len(t)
    print(f"N={args.n}, {k} messages: per message p50 {t[k // 2] * 1e3:.3f} ms, "
          f"p90 {t[int(k * 0.9)] * 1e3:.3f} ms, least {t[0] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
