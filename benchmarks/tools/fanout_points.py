"""WebSocket fan-out at chosen rates: this checkout's harness, any tree's hub.

The ``ws-fanout`` scenario of the suite (one publisher on one WebSocket, 256-byte
messages, every delivery's sequence checked, latency from the scheduled send)
for one N, on the engines and peers named, with the fixed rates given, and its
runs in ``hubbub bench --json`` form (``interleave.py --table`` reads them)::

    .venv/bin/python benchmarks/tools/fanout_points.py OUT.json --runs 1 \\
        --engines memory,sqlite --peers nchan,node,ceiling --rates 50,500,2000

The harness and the load generator are always this checkout's; the hub
processes run whatever ``PYTHONPATH`` names (``PYTHONPATH=OTHER_TREE/src``
runs another tree's hub), so two trees' hubs are measured the same way, runs
alternated by the caller::

    for i in 1 2 3; do for side in old new; do
        PYTHONPATH=$TREE_OF_$side/src .venv/bin/python benchmarks/tools/fanout_points.py \\
            DIR/$side-$i.json --engines memory --rates 50,500,2000
    done; done
    .venv/bin/python benchmarks/tools/interleave.py --table --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
# This checkout's harness, whatever PYTHONPATH says (the hub's children read PYTHONPATH).
sys.path[:0] = [str(BENCHMARKS.parent / "src"), str(BENCHMARKS)]

from hubbub import bench  # noqa: E402
from hubbub.bench.plan import hub  # noqa: E402
from hubbub.bench.runner import run_suite  # noqa: E402
from hubbub.bench.scenarios import SCENARIOS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where the runs go (JSON)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--n", type=int, default=1000, help="subscribers")
    parser.add_argument("--engines", default="memory",
                        help="hub engines, comma-separated; redis:3 for three Redis nodes")
    parser.add_argument("--peers", default="", help="among nchan, pushpin, node, python, ceiling")
    parser.add_argument("--rates", default="50,500,2000", help="fixed rates (msg/s)")
    parser.add_argument("--latency-seconds", type=float, default=bench.FULL.latency_seconds,
                        help="the window of each latency point (half rate and fixed rates)")
    args = parser.parse_args()
    import suite  # benchmarks/suite.py: the peers, as make bench runs them

    known = {"nchan": suite.NCHAN, "pushpin": suite.PUSHPIN, "node": suite.NODE_SOCKETIO,
             "python": suite.PYTHON_SOCKETIO, "ceiling": suite.CEILING}
    peers = [known[name] for name in args.peers.split(",") if name]
    engines = [e for e in args.engines.split(",") if e]
    # "redis:3" is the Redis engine on three nodes (subscribers spread over them).
    servers = [hub(e.split(":")[0], nodes=int(e.split(":")[1]) if ":" in e else 1)
               for e in engines]
    SCENARIOS["ws-fanout"] = replace(SCENARIOS["ws-fanout"], servers=lambda: servers)
    size = replace(bench.FULL, fanout_n=(args.n,), runs=args.runs,
                   fixed_rates=tuple(float(r) for r in args.rates.split(",") if r),
                   latency_seconds=args.latency_seconds)
    results = asyncio.run(run_suite(["ws-fanout"], size, {"ws-fanout": peers}))
    args.out.write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    print(bench.summary(results))


if __name__ == "__main__":
    main()
