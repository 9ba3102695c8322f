"""Loaded by every Python process whose ``PYTHONPATH`` names this folder
(``pass_times.py`` puts it there): in a ``hubbub serve`` process, it times each
loop pass's fan-out (``FanOut._deliver``), the flush of the parked
WebSocket subscriptions with their writes (``Room._flush_all``) and each
collection of the garbage collector (``gc0`` to ``gc2``), wall and thread
CPU time, and writes them every second to
``$HUBBUB_PASS_TIMES/passes-PID.json`` as ``[kind, start, wall, cpu, items]``.
Other processes are left alone. A measuring aid, not part of the hub.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

OUT = os.environ.get("HUBBUB_PASS_TIMES")


def _install(out: Path) -> None:
    from hubbub.core import fanout
    from hubbub.transports.ws import delivery

    events: list[tuple[str, float, float, float, int]] = []
    clock, cpu = time.perf_counter, time.thread_time
    flush_all = delivery.Room._flush_all
    deliver = fanout.FanOut._deliver

    def timed_flush_all(subs: list[Any]) -> None:
        t, c = clock(), cpu()
        flush_all(subs)
        events.append(("flush", t, clock() - t, cpu() - c, len(subs)))

    def timed_deliver(self: fanout.FanOut, batch: list[Any]) -> None:
        t, c = clock(), cpu()
        deliver(self, batch)
        events.append(("fan-out", t, clock() - t, cpu() - c, len(batch)))

    started: dict[str, float] = {}

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"], started["c"] = clock(), cpu()
        elif "t" in started:
            t, c = started.pop("t"), started.pop("c")
            events.append((f"gc{info['generation']}", t, clock() - t, cpu() - c,
                           int(info["collected"])))

    gc.callbacks.append(collected)
    delivery.Room._flush_all = staticmethod(timed_flush_all)  # type: ignore[method-assign]
    fanout.FanOut._deliver = timed_deliver  # type: ignore[method-assign]
    path = out / f"passes-{os.getpid()}.json"

    def dump() -> None:
        while True:
            time.sleep(1)
            path.write_text(json.dumps(events[:]))

    threading.Thread(target=dump, daemon=True, name="pass-times").start()


if OUT and sys.argv[1:2] == ["serve"]:
    _install(Path(OUT))
