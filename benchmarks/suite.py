"""The benchmark suite: hubbub and its peers, side by side, in one run.

    benchmarks/run [--quick] [--runs N] [SCENARIO ...]      (make bench ARGS=...)

``benchmarks/run`` installs the peers and the load generator, then runs this
file with hubbub's own interpreter. The scenarios, the runs and the summary
are those of ``hubbub bench`` (:mod:`hubbub.bench`); this file adds the peers
a user would otherwise pick, the targets of the suite, and the report:
``RESULTS.md`` (figures, ratios hubbub/peer, targets met, versions, machine),
``results.json`` (every run) and ``fanout.png`` (the chart).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from hubbub import bench
from hubbub.bench import CaseResult, Server
from hubbub.bench.measure import c_client
from hubbub.config import Config
from peers.push_servers import NCHAN, PUSHPIN

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
PEER_PYTHON = HERE / ".venv" / "bin" / "python"
#: The uvicorn settings of the Python peers: the fastest uvicorn offers
#: (uvloop, httptools, sans-I/O websockets).
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
           "--lifespan", "on", "--no-access-log", "--log-level", "warning"]


def uvicorn_app(name: str, app: str, python: Path) -> Server:
    def argv(port: int, scratch: Path) -> list[str]:
        return [str(python), "-m", "uvicorn", app, "--app-dir", str(PEERS_DIR),
                "--host", "127.0.0.1", "--port", str(port), *UVICORN]

    doors = {"ws": "/socket.io/?EIO=4&transport=websocket", "sse": "/events",
             "publish": "/publish"}
    return Server(name, argv, doors, dialect="socketio")


PYTHON_SOCKETIO = uvicorn_app("python-socketio", "socketio_app:app", PEER_PYTHON)
NODE_SOCKETIO = Server(
    "node socket.io", lambda port, _: ["node", str(PEERS_DIR / "socketio-server.mjs"), str(port)],
    PYTHON_SOCKETIO.doors, dialect="socketio", python=False)
SSE_STARLETTE = uvicorn_app("sse-starlette", "sse_app:app", PEER_PYTHON)
# The ceiling runs on hubbub's own interpreter: the very uvicorn and Starlette the hub runs on.
STARLETTE_HELLO = uvicorn_app("starlette hello POST", "hello_app:app", Path(sys.executable))

# The reference Node tus server on its defaults (endpoint /files/, files in scratch/files).
TUS_SERVER = Server(
    "@tus/server", lambda port, scratch: ["node", str(PEERS_DIR / "tus-server.mjs"), str(port),
                                          str(scratch / "files")],
    {"upload": "/files/", "upload_files": "files"}, dialect="tus", python=False)

#: The least a WebSocket fan-out server can do (loadgen/ceiling.c): the load
#: generator's capacity, checked in the same run.
CEILING = Server("ceiling (trivial C server)",
                 lambda port, _: [str(c_client("ceiling")), str(port)],
                 {"ws": "/pub/{topic}", "ws_sub": "/sub/{topic}"}, dialect="raw", python=False)

PEERS: dict[str, list[Server]] = {
    "ws-fanout": [NCHAN, PUSHPIN, PYTHON_SOCKETIO, NODE_SOCKETIO, CEILING],
    "sse-fanout": [NCHAN, PUSHPIN, SSE_STARLETTE],
    "http-publish": [STARLETTE_HELLO],
    "long-poll": [NCHAN, PUSHPIN],
    "idle-ws": [NCHAN, PUSHPIN, PYTHON_SOCKETIO, NODE_SOCKETIO],
    "upload": [TUS_SERVER],
}
#: Per scenario: the figure that ratios compare.
PRIMARY = {"ws-fanout": "deliveries_per_core_s", "sse-fanout": "deliveries_per_s",
           "http-publish": "requests_per_s", "long-poll": "p99_ms", "idle-ws": "kb_per_conn",
           "upload": "mb_per_s"}


# -- targets ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A target of the suite: a figure of the hub, alone or as a ratio to a peer's."""

    text: str
    scenario: str
    key: str
    test: Callable[[float], bool]
    server: str = "hubbub (memory)"
    peer: str | None = None
    variant: str = ""  # a prefix: "N=1000", "10000"
    unit: str = "x"

    def cases(self, results: Sequence[CaseResult]) -> list[CaseResult | None]:
        def find(server: str) -> CaseResult | None:
            return next((c for c in results if (c.scenario, c.server) == (self.scenario, server)
                         and c.variant.startswith(self.variant) and c.values(self.key)), None)

        return [find(self.server)] + ([find(self.peer)] if self.peer else [])

    def row(self, results: Sequence[CaseResult]) -> list[str]:
        cases = self.cases(results)
        if any(c is None for c in cases):
            return [self.text, "not measured", "-"]
        values = [c.values(self.key) for c in cases if c is not None]
        medians = [statistics.median(v) for v in values]
        value = medians[0] / medians[1] if self.peer else medians[0]
        shown = f"{value:.2f}x" if self.peer else f"{bench.format_value(value, self.unit)} {self.unit}"
        met = "**met**" if self.test(value) else "not met"
        # Runs of the two servers that overlap make a ratio near its bound a toss-up.
        if self.peer and min(values[0]) <= max(values[1]) and min(values[1]) <= max(values[0]):
            met += " (the runs' ranges overlap)"
        return [self.text, shown, met]


SQLITE, MEMORY, REDIS, REDIS3 = ("hubbub (sqlite)", "hubbub (memory)", "hubbub (redis)",
                                 "hubbub (redis, 3 nodes)")

TARGETS = [
    Target("WS fan-out N=1000, 1 publisher on 1 WS: SQLite >= 0.8x memory deliveries/s",
           "ws-fanout", "deliveries_per_s", lambda r: r >= 0.8, server=SQLITE, peer=MEMORY,
           variant="N=1000"),
    Target("WS fan-out N=1000: Redis (1 node) >= 0.5x memory deliveries/s", "ws-fanout",
           "deliveries_per_s", lambda r: r >= 0.5, server=REDIS, peer=MEMORY, variant="N=1000"),
    Target("WS fan-out N=1000: SQLite >= 20x node socket.io deliveries per server core-second",
           "ws-fanout", "deliveries_per_core_s", lambda r: r >= 20, server=SQLITE,
           peer="node socket.io", variant="N=1000"),
    Target("WS fan-out N=1000: 3 Redis nodes >= 0.8x 1 node deliveries per CPU-second "
           "(nodes and Redis)", "ws-fanout", "deliveries_per_core_s", lambda r: r >= 0.8,
           server=REDIS3, peer=REDIS, variant="N=1000"),
    Target("WS fan-out N=1000 p99 at half load < 50 ms (SQLite)", "ws-fanout", "p99_ms",
           lambda v: v < 50, server=SQLITE, variant="N=1000", unit="ms"),
    Target("WS fan-out N=1000: SQLite >= nchan deliveries per server core-second", "ws-fanout",
           "deliveries_per_core_s", lambda r: r >= 1.0, server=SQLITE, peer="nchan",
           variant="N=1000"),
    Target("WS fan-out N=1000: memory >= nchan deliveries per server core-second", "ws-fanout",
           "deliveries_per_core_s", lambda r: r >= 1.0, peer="nchan", variant="N=1000"),
    Target("10k long polls: p99 wake-up <= nchan's (SQLite)", "long-poll", "p99_ms",
           lambda r: r <= 1.0, server=SQLITE, peer="nchan", variant="10000"),
    Target("100k idle WS: memory/conn <= 10 KB", "idle-ws", "kb_per_conn", lambda v: v <= 10,
           variant="100000 conns", unit="KB"),
    Target("100k idle WS: a publish to each topic reaches its subscriber, p99 < 1 s",
           "idle-ws", "wake_p99_ms", lambda v: v < 1000, variant="100000 conns", unit="ms"),
    Target("WS fan-out N=1000 >= node socket.io deliveries/s", "ws-fanout", "deliveries_per_s",
           lambda r: r >= 1.0, peer="node socket.io", variant="N=1000"),
    Target("the load generator's capacity (the trivial C server) >= 1.5x hubbub's best "
           "(memory) deliveries/s, N=1000", "ws-fanout", "deliveries_per_s",
           lambda r: r >= 1.5, server=CEILING.name, peer=MEMORY, variant="N=1000"),
    Target("WS fan-out N=1000 >= 3x python-socketio deliveries/s", "ws-fanout",
           "deliveries_per_s", lambda r: r >= 3.0, peer="python-socketio", variant="N=1000"),
    Target("WS fan-out N=1000 p99 at half load < 50 ms", "ws-fanout", "p99_ms",
           lambda v: v < 50, variant="N=1000", unit="ms"),
    Target("SSE N=1000 >= 3x sse-starlette deliveries/s", "sse-fanout", "deliveries_per_s",
           lambda r: r >= 3.0, peer="sse-starlette", variant="N=1000"),
    Target("HTTP publish on SQLite >= 60% of Starlette hello POST", "http-publish",
           "requests_per_s", lambda r: r >= 0.6, server="hubbub (sqlite)",
           peer="starlette hello POST"),
    Target("HTTP publish on memory >= 80% of Starlette hello POST", "http-publish",
           "requests_per_s", lambda r: r >= 0.8, peer="starlette hello POST"),
    Target("10k long polls, p99 wake-up < 100 ms (SQLite)", "long-poll", "p99_ms",
           lambda v: v < 100, server="hubbub (sqlite)", variant="10000", unit="ms"),
    Target("10k long polls, p99 wake-up < 100 ms (memory)", "long-poll", "p99_ms",
           lambda v: v < 100, variant="10000", unit="ms"),
    Target("idle WS memory/conn <= half of python-socketio's", "idle-ws", "kb_per_conn",
           lambda r: r <= 0.5, peer="python-socketio", variant="10000 conns"),
    Target("idle WS memory/conn < 15 KB", "idle-ws", "kb_per_conn", lambda v: v < 15,
           variant="10000 conns", unit="KB"),
    Target("history replay >= 200k msg/s over WS (SQLite)", "history", "ws_msgs_per_s",
           lambda v: v >= 200_000, server="hubbub (sqlite)", variant="1,000,000",
           unit="msg/s"),
    Target("history replay >= 200k msg/s over WS (memory)", "history", "ws_msgs_per_s",
           lambda v: v >= 200_000, variant="1,000,000", unit="msg/s"),
    Target("tus upload 512 MiB in 8 MiB chunks >= @tus/server MB/s (SQLite)", "upload",
           "mb_per_s", lambda r: r >= 1.0, server="hubbub (sqlite)", peer="@tus/server",
           variant="512"),
    Target("tus upload 512 MiB >= 60% of the disk's write speed (dd)", "upload", "mb_per_s",
           lambda r: r >= 0.6, server="hubbub (sqlite)", peer="disk write (dd)",
           variant="512"),
]


def targets_table(results: Sequence[CaseResult]) -> str:
    rows = [target.row(results) for target in TARGETS]
    return bench.markdown_table(["target", "measured (median)", "met?"], rows)


#: Latencies are compared only where both servers run below this share of their maximum.
COMPARABLE_LOAD = 0.7


def _ms(case: CaseResult, key: str) -> str:
    value = case.median(key)
    return "-" if value is None else bench.format_value(value, "ms")


def latency_curve(results: Sequence[CaseResult]) -> str:
    """WebSocket fan-out's latency against rate (p50/p99, every sample, from the
    scheduled send), per server, then hubbub's p99 over each peer's at the rates
    where both ran below COMPARABLE_LOAD of their own maximum."""
    rates = bench.FULL.fixed_rates
    cases = [c for c in results if c.scenario == "ws-fanout" and c.runs
             and any(c.values(f"at{r:g}_load") for r in rates)]
    rows = []
    for case in cases:
        cells = [f"{_ms(case, 'p50_ms')} / {_ms(case, 'p99_ms')} ms at "
                 f"{bench.format_value(case.median('half_rate_msgs_per_s'), '/s')} msg/s"]
        for r in rates:
            load = case.median(f"at{r:g}_load")
            if case.values(f"at{r:g}_p99_ms"):
                cells.append(f"{_ms(case, f'at{r:g}_p50_ms')} / {_ms(case, f'at{r:g}_p99_ms')} ms "
                             f"({bench.percent(load)} of its max)")
            else:
                cells.append("-" if load is None else f"not run ({load:.1f}x its max)")
        rows.append([case.variant, case.server, *cells])
    table = bench.markdown_table(["variant", "server", "half of its own max",
                                  *(f"{r:g} msg/s" for r in rates)], rows)
    verdicts = []
    for ours in (c for c in cases if c.server.startswith("hubbub")):
        for peer in (c for c in cases if not c.server.startswith("hubbub")
                     and c.server != CEILING.name and c.variant == ours.variant):
            for r in rates:
                key, load = f"at{r:g}_p99_ms", f"at{r:g}_load"
                a, b = ours.median(key), peer.median(key)
                if (a is None or b is None or (ours.median(load) or 1) >= COMPARABLE_LOAD
                        or (peer.median(load) or 1) >= COMPARABLE_LOAD):
                    continue
                verdict = "at or below" if a <= b else "**above**"
                verdicts.append(f"- {ours.variant} at {r:g} msg/s: {ours.server} p99 "
                                f"{bench.format_value(a, 'ms')} ms, {verdict} {peer.server}'s "
                                f"{bench.format_value(b, 'ms')} ms")
    return table + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


# -- the report ------------------------------------------------------------------------


def comparison_table(results: Sequence[CaseResult]) -> str:
    """Every figure, plus the ratio hubbub/peer of the primary figure, per variant."""
    rows = []
    for case in results:
        scenario = bench.SCENARIOS[case.scenario]
        key = PRIMARY.get(case.scenario)
        peers = [c for c in results if (c.scenario, c.variant) == (case.scenario, case.variant)
                 and not c.server.startswith("hubbub")]
        ratios = []
        if key and case.server.startswith("hubbub"):
            ratios = [f"{_ratio(case.median(key), p.median(key)) or 0:.2f}x vs {p.server}"
                      for p in peers if p.median(key)]
        figures = "; ".join(f"{m.label} **{bench.figure(case, m)}** {m.unit}"
                            for m in scenario.metrics)
        rows.append([case.scenario, case.variant, case.server, figures,
                     "<br>".join(ratios) or "",
                     *(bench.percent(case.median(k)) for k in ("server_cpu", "loadgen_cpu",
                                                               "other_cpu")),
                     f"{len(case.runs)}/{len(case.runs) + len(case.errors)}"])
    return bench.markdown_table(["scenario", "variant", "server", "median (min-max)",
                                 "hubbub/peer", "server CPU", "loadgen CPU", "other CPU", "runs ok"],
                                rows)


def _version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def versions() -> list[tuple[str, str]]:
    git = _version(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"])
    ours = [(name, metadata.version(name)) for name in
            ("starlette", "uvloop", "httptools", "h2", "websockets", "msgspec")]
    peer_code = ("import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in "
                 "('python-socketio', 'python-engineio', 'sse-starlette', 'broadcaster', "
                 "'uvicorn', 'starlette')))")
    node_pkgs = []
    for where, name in ((PEERS_DIR, "socket.io"), (bench.LOADGEN, "ws")):
        manifest = where / "node_modules" / name / "package.json"
        if manifest.is_file():
            node_pkgs.append(f"{name}@{json.loads(manifest.read_text())['version']}")
    return [
        ("hubbub", f"{metadata.version('hubbub')} ({git})"),
        ("Python", platform.python_version()),
        ("hubbub's stack", " ".join(f"{n}=={v}" for n, v in ours)),
        ("Python peers (benchmarks/.venv)", _version([str(PEER_PYTHON), "-c", peer_code])),
        ("Node", _version(["node", "--version"])),
        ("Node packages", " ".join(node_pkgs)),
        ("wrk", _version(["wrk", "--version"])),
        ("nginx (nchan)", _version(["nginx", "-v"]) + ", " + _version(
            ["dpkg-query", "-W", "-f", "libnginx-mod-nchan ${Version}", "libnginx-mod-nchan"])),
        ("Pushpin", _version(["pushpin", "--version"])),
        ("hubbub's settings", "the shipped defaults (an empty hubbub.toml): "
                              f"{Config().server}, {Config().defaults}"),
    ]


def _spin(seconds: float) -> float:
    """Loop iterations per second of one busy loop."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n / seconds


def machine() -> list[tuple[str, str]]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    # Two busy loops at once against one alone: how much of a second core a
    # second busy process really gets on this (virtual) machine.
    alone = _spin(1.0)
    with multiprocessing.Pool(2) as pool:
        both = sum(pool.map(_spin, [1.0, 1.0]))
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", f"{mem / 1024 / 1024:.0f} GiB"),
        ("kernel", platform.release()),
        ("two busy processes vs one", f"{both / alone:.2f}x the work of one (2.00 would be "
                                      "two full cores)"),
    ]


def write_report(out: Path, results: Sequence[CaseResult], command: str, started: float,
                 size: bench.Size, env: list[tuple[str, str]]) -> None:
    elapsed = time.monotonic() - started
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kv = bench.markdown_table(["", ""], env)
    text = f"""# hubbub benchmark results

Measured {when} by `{command}` ({elapsed / 60:.0f} min), {size.runs} run(s) per figure,
every server on this one machine, driven by the same load generator over loopback.
Figures are medians over the runs with (min-max); ratios are hubbub/peer medians of
the same run of the suite. How each figure is measured: [README.md](README.md).
Do not compare these figures with figures measured on another machine.

## Targets

{targets_table(results)}

## Figures

{comparison_table(results)}

## WebSocket fan-out latency against rate

p50 / p99 over every delivery, each from its message's scheduled send (open
loop), at half of each server's own maximum and at the same fixed rates for
every server (a rate is not run where it is over 90% of the server's maximum).
Below: hubbub's p99 against each peer's where both ran below
{COMPARABLE_LOAD:.0%} of their own maximum.

{latency_curve(results)}

Server CPU and loadgen CPU are the cores each process used during the measured
window (100% = one core; the machine has {os.cpu_count()}); other CPU is what the
rest of the machine used meanwhile (the kernel's network work on behalf of both,
and any other process: compare it across rows before trusting a difference).

![WebSocket fan-out: deliveries per second against N](fanout.png)

## Machine and versions

{kv}
"""
    busy = [(c.median("other_cpu") or 0.0, c) for c in results]
    if busy and max(busy, key=lambda b: b[0])[0] > 0.5:
        worst, case = max(busy, key=lambda b: b[0])
        text += (f"\n**The machine was not quiet**: other processes used up to "
                 f"{bench.percent(worst)} of a core during a measured window ({case.scenario} "
                 f"{case.variant} {case.server}); figures of such rows are lower, and latencies "
                 "higher, than on a quiet machine.\n")
    tls = bench.tls_table(results)
    if tls:
        text += ("\n## TLS against plaintext\n\nThe `tls` scenario: each door over TLS next to "
                 "plaintext, in the same run, both rows driven by the same Python clients "
                 "(README.md says why); the ratio to read is the one per server "
                 f"core-second.\n\n{tls}\n")
    failures = [f"- {c.scenario} {c.variant} {c.server}: {e}" for c in results for e in c.errors]
    if failures:
        text += "\n## Failed runs\n\n" + "\n".join(failures) + "\n"
    (out / "RESULTS.md").write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"among {', '.join(bench.SCENARIOS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="one short run with small N")
    parser.add_argument("--runs", type=int, metavar="N", help="repetitions of every run")
    parser.add_argument("--out", type=Path, help="where the report goes (default: benchmarks/, "
                        "or benchmarks/scratch/quick with --quick)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy profiles of the hub's runs into DIR")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(bench.SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}")
    size = bench.QUICK if args.quick else bench.FULL
    if args.runs:
        size = replace(size, runs=args.runs)
    out = args.out or (HERE / "scratch" / "quick" if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env = machine() + versions()
    results = asyncio.run(bench.run_suite(args.scenarios or list(bench.SCENARIOS), size, PEERS,
                                          profile=args.profile))
    print(bench.summary(results))
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    subprocess.run([str(PEER_PYTHON), str(HERE / "tools" / "chart.py"), str(out / "results.json"),
                    str(out / "fanout.png")], check=False)
    command = "benchmarks/run " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(out, results, command.strip(), started, size, env)
    print(f"\nwrote {out / 'RESULTS.md'}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
