"""Some of the suite's scenarios, for the hub engines and the peers named.

``make bench`` runs every scenario with every server; this runs the scenarios
named (``long-poll``, ``idle-ws``, ``sse-fanout``...; ``fanout_points.py`` is
the one for ``ws-fanout``'s rates and N) with only the engines and peers
given, and writes the runs in ``hubbub bench --json`` form
(``interleave.py --table`` reads them)::

    .venv/bin/python benchmarks/tools/points.py OUT.json long-poll,idle-ws --runs 3 \\
        --engines sqlite,memory --peers nchan,pushpin --idle 10000,18000

As with ``fanout_points.py``, the harness and the load generator are this
checkout's, and the hub processes run whatever ``PYTHONPATH`` names, so two
trees' hubs are measured the same way (``--peers ""`` for the hub alone).
The peers need what ``benchmarks/run`` installs (``benchmarks/.venv``, and
``peers/node_modules`` for Node socket.io).
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
    parser.add_argument("scenarios", help="comma-separated, among " + ", ".join(SCENARIOS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--engines", default="sqlite,memory",
                        help="hub engines, comma-separated (empty: no hub)")
    parser.add_argument("--peers", default="nchan",
                        help="among nchan, pushpin, node, python, ceiling (comma-separated)")
    parser.add_argument("--idle", default="10000",
                        help="idle-ws: connections per variant, comma-separated")
    args = parser.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        parser.error(f"no such scenario: {', '.join(unknown)}")
    import suite  # benchmarks/suite.py: the peers, as make bench runs them

    known = {"nchan": suite.NCHAN, "pushpin": suite.PUSHPIN, "node": suite.NODE_SOCKETIO,
             "python": suite.PYTHON_SOCKETIO, "ceiling": suite.CEILING}
    peers = [known[name] for name in args.peers.split(",") if name]
    servers = [hub(engine) for engine in args.engines.split(",") if engine]
    for name in names:
        SCENARIOS[name] = replace(SCENARIOS[name], servers=lambda: servers)
    size = replace(bench.FULL, runs=args.runs,
                   idle_n=tuple(int(n) for n in args.idle.split(",") if n))
    results = asyncio.run(run_suite(names, size, {name: peers for name in names}))
    args.out.write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    print(bench.summary(results))


if __name__ == "__main__":
    main()
