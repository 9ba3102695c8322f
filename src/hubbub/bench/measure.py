"""The measuring instruments: the load generator (its C clients built on
first use), wrk, and the limits of the machine they need. The servers they
measure are in :mod:`.servers`; what ``/proc`` says, in :mod:`.procfs`.

Here :mod:`hubbub.bench` keeps its invariant "figures between two marks":
the load generator prints marks (``start``, ``end``, ``held``) and
:func:`drive` samples ``/proc`` at each, for the server, the generator and
the whole machine. A server may be several
processes: hub nodes sharing one store, and the store's own process (Redis);
the CPU of all of them is the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .procfs import Metrics, Sample, cpu_share, cpu_shares, sample
from .servers import LOADGEN, BenchError, Served

RUN_LIMIT = 180.0


def _generator(spec: Mapping[str, Any]) -> list[str]:
    """The command that runs ``spec``: Node's ``main.mjs``, or one of the C
    clients (built on first use): ``loadgen/longpoll.c`` for the ``longpoll``
    mode, ``loadgen/fanout.c`` for fan-out over WebSockets; the Python
    clients of :mod:`.pyload` for the ``py-`` modes (TLS and its plaintext twin)."""
    if spec["mode"] == "longpoll":
        return [str(c_client("longpoll")), spec["poll_url"], spec["publish_url"], str(spec["n"]),
                str(spec["size"]), str(spec["settle"]), str(spec["timeout_ms"])]
    if spec["mode"] == "fanout" and "sse_url" not in spec:
        subs = ",".join(spec["sub_urls"]) if spec.get("sub_urls") else "-"
        rates = ",".join(f"{r:g}" for r in spec.get("latency_rates", (0,)))
        return [str(c_client("fanout")), spec["dialect"], spec["url"], subs, spec["topic"],
                *(str(spec[k]) for k in ("n", "size", "window", "warmup", "seconds",
                                         "latency_seconds")),
                rates, str(spec.get("paced_min", 0)), str(RUN_LIMIT - 10)]
    if spec["mode"].startswith("py-"):
        return [sys.executable, "-m", "hubbub.bench.pyload",
                json.dumps({"timeout_s": RUN_LIMIT - 10, **spec})]
    node = shutil.which("node")
    if node is None:
        raise BenchError("node is not installed (the load generator needs Node.js 18 or later)")
    return [node, str(LOADGEN / "main.mjs"), json.dumps({"timeout_s": RUN_LIMIT - 10, **spec})]


#: The load generator's clients written in C, for the scenarios whose rates a
#: Node client could not keep up with (see each file's header).
C_CLIENTS = ("longpoll", "fanout")


def c_client(name: str) -> Path:
    """The C client ``name``, compiled from ``loadgen/NAME.c`` with the
    system's C compiler into ``loadgen/build/`` when missing or older than
    its source (or ``loadgen/common.h``)."""
    source = LOADGEN / f"{name}.c"
    binary = LOADGEN / "build" / name
    newest = max(source.stat().st_mtime, (LOADGEN / "common.h").stat().st_mtime)
    if binary.is_file() and binary.stat().st_mtime >= newest:
        return binary
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise BenchError(f"the {name} client needs a C compiler (cc; set CC to another)")
    binary.parent.mkdir(exist_ok=True)
    built = subprocess.run([cc, "-O2", "-o", str(binary), str(source), "-lm"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise BenchError(f"could not build the {name} client: {built.stderr[-500:]}")
    return binary


async def drive(spec: Mapping[str, Any], served: Served) -> tuple[Metrics, dict[str, Sample]]:
    """Run the load generator with ``spec``; its result and a sample at each of its marks."""
    proc = await asyncio.create_subprocess_exec(
        *_generator(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, limit=1 << 20)
    assert proc.stdout is not None and proc.stderr is not None
    marks: dict[str, Sample] = {}
    outcome: dict[str, Any] = {}
    try:
        async with asyncio.timeout(RUN_LIMIT):
            async for line in proc.stdout:
                event = json.loads(line)
                if "mark" in event:
                    at = sample([*served.pids, proc.pid])
                    if "cpu_s" in event:  # its own word: it may be gone from /proc by now
                        at = replace(at, cpu={**at.cpu, proc.pid: float(event["cpu_s"])})
                    marks[event["mark"]] = at
                else:
                    outcome = event
            stderr = (await proc.stderr.read()).decode(errors="replace")
            await proc.wait()
    except TimeoutError:
        raise BenchError(f"the load generator ran past {RUN_LIMIT:g} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    if "result" not in outcome:
        raise BenchError(outcome.get("error") or f"the load generator failed: {stderr[-500:]}")
    result: Metrics = outcome["result"]
    if "start" in marks and "end" in marks:
        first, last = marks["start"], marks["end"]
        result |= cpu_shares(first, last, served.pids, cpu_share(first, last, proc.pid),
                             served.store_pid)
    # Fan-out's paced phases ("half", "at500", ...), in percent.
    for name, first in marks.items():
        end = marks.get(f"{name}-end")
        if end is None:
            continue
        paced = cpu_shares(first, end, served.pids, cpu_share(first, end, proc.pid))
        prefix = "half_rate_" if name == "half" else f"{name}_"
        result[f"{prefix}server_cpu"] = 100 * paced["server_cpu"]
        result[f"{prefix}loadgen_cpu"] = 100 * paced["loadgen_cpu"]
    return per_core_second(result), marks


#: Rates that are also given per server core-second (``<key>`` -> ``<key>_per_core_s``
#: with the ``_per_s`` dropped): what a server does with the CPU it takes.
PER_CORE = ("deliveries_per_s", "requests_per_s")


def per_core_second(result: Metrics) -> Metrics:
    """Add each rate of :data:`PER_CORE` per server core-second (the server's
    CPU over the same window, every process of it, the store's included)."""
    cores = result.get("server_cpu")
    if cores:
        for key in PER_CORE:
            if key in result:
                result[key.removesuffix("_per_s") + "_per_core_s"] = result[key] / cores
    return result


# -- wrk ------------------------------------------------------------------------------
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_ERRORS = re.compile(
    r"Non-2xx or 3xx responses: (\d+)"
    r"|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> Metrics:
    """Requests per second, p99 (ms) and errors from the output of ``wrk --latency``."""
    rate, p99 = _WRK_RATE.search(output), _WRK_P99.search(output)
    if rate is None or p99 is None:
        raise BenchError(f"unexpected wrk output: {output[-300:]}")
    errors = sum(int(n) for m in _WRK_ERRORS.finditer(output) for n in m.groups() if n)
    return {"requests_per_s": float(rate.group(1)),
            "p99_ms": float(p99.group(1)) * _TO_MS[p99.group(2)], "errors": errors}


def run_measured(argv: list[str], limit: float) -> tuple[str, float]:
    """Run ``argv`` to its end (killed past ``limit`` s): its output and CPU seconds."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        timer = threading.Timer(limit, proc.kill)
        timer.start()
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}: {output[-300:]}")
    return output, usage.ru_utime + usage.ru_stime


def raise_file_limit(needed: int) -> None:
    """Raise the open-file limit to its hard maximum (children inherit it), and
    the hard maximum itself to ``needed`` where allowed (as root, up to the
    kernel's ``fs.nr_open``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft, hard = needed, needed
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(f"hubbub bench: warning: the open-file limit is {hard}, below the {needed} "
              "some scenarios need", file=sys.stderr)


def ensure_loadgen() -> None:
    """Check that the load generator can run: it needs a checkout and Node.js,
    and nothing from npm (its WebSocket and HTTP clients are its own), and a C
    compiler for its C clients."""
    if not (LOADGEN / "main.mjs").is_file() or shutil.which("node") is None:
        raise BenchError(f"the load generator needs {LOADGEN} (a hubbub checkout) and Node.js")
    for name in C_CLIENTS:
        c_client(name)
