"""Where a loop pass of a WebSocket fan-out goes, in ``hubbub serve`` under load.

Runs ``fanout_points.py`` (one engine, N subscribers, one fixed rate, which is
the last latency phase) with ``benchmarks/tools/pass_hook`` on the hub's
``PYTHONPATH``: each loop pass's fan-out (feeding the subscriptions) and flush
(framing each parked subscription's messages and writing every connection)
are timed in the hub, wall and thread CPU time. Prints the run's figures and,
over the fixed-rate phase, the percentiles of both parts per pass::

    .venv/bin/python benchmarks/tools/pass_times.py OUT_DIR --engine sqlite --rate 50

``PYTHONPATH=OTHER_TREE/src`` measures another tree's hub the same way (the
hook finds what it times by name). Timing adds two clock reads per part and
pass, nothing per subscriber.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent


def _percentiles(values: list[float]) -> str:
    v = sorted(values)
    at = [v[min(len(v) - 1, int(q * len(v)))] for q in (0.5, 0.9, 0.99)]
    return "p50 {:.2f}, p90 {:.2f}, p99 {:.2f}, max {:.2f}".format(*at, v[-1])


def summarize(events: list[list[float | str]], seconds: float) -> str:
    """The percentiles (ms) of each kind's wall and CPU time per pass, over
    the last ``seconds`` of the events."""
    end = max(float(e[1]) for e in events)
    recent = [e for e in events if float(e[1]) > end - seconds]
    lines = []
    for kind in ("fan-out", "flush", "gc0", "gc1", "gc2"):
        mine = [e for e in recent if e[0] == kind]
        if not mine:
            continue
        wall = [float(e[2]) * 1e3 for e in mine]
        cpu = [float(e[3]) * 1e3 for e in mine]
        items = statistics.median(int(e[4]) for e in mine)
        lines.append(f"{kind}: {len(mine)} times ({items:g} items each, median); "
                     f"wall ms {_percentiles(wall)}; CPU ms {_percentiles(cpu)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a folder for the run and the timings")
    parser.add_argument("--engine", default="sqlite")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50, help="the fixed rate (msg/s)")
    parser.add_argument("--seconds", type=float, default=12,
                        help="the latency phases' seconds (the summary covers all but one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("passes-*.json"):
        old.unlink()
    hub_path = [str(TOOLS / "pass_hook"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in hub_path if p),
           "HUBBUB_PASS_TIMES": str(args.out.resolve())}
    subprocess.run([sys.executable, str(TOOLS / "fanout_points.py"), str(args.out / "run.json"),
                    "--engines", args.engine, "--n", str(args.n), "--rates", f"{args.rate:g}",
                    "--latency-seconds", str(args.seconds)], env=env, check=True)
    for path in sorted(args.out.glob("passes-*.json")):
        print(f"{path.name}, the last {args.seconds - 1:g} s (the {args.rate:g} msg/s phase):")
        print(summarize(json.loads(path.read_text()), args.seconds - 1))


if __name__ == "__main__":
    main()
