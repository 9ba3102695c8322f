"""``hubbub bench``: the hub under load, measured on this machine.

``hubbub bench [SCENARIO ...] [--quick]`` runs the hub-only scenarios of the
benchmark suite; ``benchmarks/run`` (``make bench``) runs the same scenarios
with the servers a user would otherwise pick next to the hub, through
:func:`run_suite`, and writes ``benchmarks/RESULTS.md``.

Theory of operation
-------------------
A *scenario* (say ``ws-fanout``) has *variants* (``N=100``, ``N=1000``) and
is run against *servers* (the hub on an engine, and peers). One *run* starts
a server on a free loopback port, drives it with the load generator, and
stops it. The load generator is ``benchmarks/loadgen`` (Node, with no dependencies;
its WebSocket fan-out and long-poll clients are C, built on first use): the
server and the generator share the machine's cores, so the generator must
be cheap per delivery, and what each costs is reported.

Invariants
----------
"figures between two marks": Every figure is measured between two marks the
load generator prints (``start``/``end``); the CPU time of the server, of the
generator and of the whole machine is read from ``/proc`` at those instants,
so the CPU share of each (1.0 = one core) covers exactly the measured window,
and so does what anything else on the machine took meanwhile ("other").
"every run is bounded": Every run is bounded in time: the generator gives up
by itself, and past ``RUN_LIMIT`` the orchestrator kills it. A run that fails
is recorded with its reason; the others go on.

Trade-offs
----------
"interleave runs across servers": Runs of one variant on different servers
are interleaved (run 1 of every server, then run 2, ...), so a drift of the
machine spreads over all of them instead of favouring one.
"load the store once": Scenarios that need a loaded store (``history``) load
it once per server and then run every repetition against it.

Figures are reported as the median over runs with the minimum and maximum.

Modules: :mod:`.servers` (the servers under test as processes, the
benchmark's redis-server), :mod:`.procfs` (CPU and memory from ``/proc``),
:mod:`.measure` (the load generator, wrk),
:mod:`.scenarios` (what each scenario runs and reports), :mod:`.runner`
(running them, the summary table); this one is the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import tls
from .measure import parse_wrk
from .plan import FULL, QUICK, Metric, Scenario, Size, hub
from .procfs import Metrics
from .runner import (
    CaseResult,
    figure,
    format_value,
    markdown_table,
    percent,
    run_suite,
    summary,
    tls_table,
)
from .scenarios import SCENARIOS
from .servers import LOADGEN, BenchError, Server


def add_parser(commands: Any) -> None:
    """Add ``bench`` to the ``hubbub`` command's subparsers."""
    bench = commands.add_parser(
        "bench", help="measure the hub under load",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run benchmark scenarios against the hub on this machine and print a\n"
                    "summary table (median over runs, with min-max). Needs Node.js and a\n"
                    "hubbub checkout (benchmarks/loadgen); `make bench` also measures the peers.",
        epilog="scenarios (default: all):\n" + "\n".join(
            f"  {s.name:<13} {s.title}" for s in SCENARIOS.values()))
    bench.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    bench.add_argument("--quick", action="store_true",
                       help="one short run with small N: a smoke test, not a measurement")
    bench.add_argument("--runs", type=int, metavar="N", help="repetitions of every run")
    bench.add_argument("--json", type=Path, metavar="FILE", help="write every run's figures here")
    bench.add_argument("--profile", type=Path, metavar="DIR",
                       help="record a py-spy profile of every hub run into DIR (speedscope)")


def run_command(args: argparse.Namespace) -> int:
    """Carry out ``hubbub bench``; 0 when every run succeeded, 1 otherwise, 2 bad arguments."""
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown or (args.runs is not None and args.runs < 1):
        print(f"hubbub bench: error: unknown scenario {', '.join(unknown)}; choose from "
              f"{', '.join(SCENARIOS)}" if unknown else "hubbub bench: error: --runs must be >= 1",
              file=sys.stderr)
        return 2
    size = QUICK if args.quick else FULL
    if args.runs is not None:
        size = replace(size, runs=args.runs)
    try:
        results = asyncio.run(run_suite(args.scenarios or list(SCENARIOS), size,
                                        profile=args.profile))
    except BenchError as exc:
        print(f"hubbub bench: error: {exc}", file=sys.stderr)
        return 1
    print(summary(results))
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    return 1 if any(r.errors for r in results) else 0


__all__ = [
    "FULL", "LOADGEN", "QUICK", "SCENARIOS", "BenchError", "CaseResult", "Metric", "Metrics",
    "Scenario", "Server", "Size", "add_parser", "figure", "format_value", "hub",
    "markdown_table", "parse_wrk", "percent", "run_command", "run_suite", "summary", "tls",
    "tls_table",
]
