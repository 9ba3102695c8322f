"""WebSocket fan-out with one publisher on one WebSocket, on several engines.

The fan-out of the ``cluster`` scenario (1 publisher keeping WINDOW messages in
flight on one WebSocket, N subscribers of one topic, 256-byte messages, the
suite's warm-up, window and latency phase) run on one node of each engine
named, one fresh hub per engine; one JSON line per run::

    .venv/bin/python benchmarks/tools/fanout_engines.py memory,sqlite,redis 1000 64 [PROFILE_DIR]

The hub is whatever ``hubbub`` imports (``PYTHONPATH=OTHER_TREE/src`` runs
another tree's, load generator included), so runs of two trees interleave.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import hubbub
from hubbub.bench.measure import drive, ensure_loadgen, raise_file_limit
from hubbub.bench.plan import FULL, Run, hub
from hubbub.bench.scenarios import _fanout_spec
from hubbub.bench.servers import TOPIC, serving

KEEP = ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu", "loadgen_cpu", "closed",
        "publish_errors", "mismatches", "undelivered")


async def main(engines: list[str], n: int, window: int, profile: Path | None) -> None:
    ensure_loadgen()
    raise_file_limit(n + 1024)
    for engine in engines:
        async with serving(hub(engine), profile) as served:
            spec = _fanout_spec(Run(served, {}, FULL), n)
            spec |= {"dialect": "hubbub", "url": served.url("ws", "ws"), "topic": TOPIC,
                     "window": window}
            result, _ = await drive(spec, served)
            print(json.dumps({"tree": str(Path(hubbub.__file__).parents[2]), "engine": engine,
                              "n": n, "window": window,
                              **{k: v for k, v in result.items() if k in KEEP}}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]),
                     Path(sys.argv[4]) if len(sys.argv) > 4 else None))
